package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestDescribe(t *testing.T) {
	for _, tt := range []struct {
		info *debug.BuildInfo
		want string
	}{
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "devel (go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "4709577d3a1f0123456789"}, {Key: "vcs.modified", Value: "false"}}},
			"v1.2.0 (commit 4709577d3a1f, go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8",
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}},
			"devel (commit abc-dirty, go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261130141434-a7ffcbe926d5+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "a7ffcbe926d504ee"}, {Key: "vcs.modified", Value: "true"}}},
			"devel (commit a7ffcbe926d5-dirty, go1.26.8)"},
	} {
		if got := describe(tt.info); got != tt.want {
			t.Errorf("describe = %q, want %q", got, tt.want)
		}
	}
	if s := String(); !strings.Contains(s, "go1") {
		t.Errorf("String() = %q names no Go version", s)
	}
}

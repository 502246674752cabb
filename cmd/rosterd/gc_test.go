package main

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestGCTunerStartsOnlyWhenAskedAndGOGCUnset: --gc-headroom-mib 0 and a
// GOGC in the environment each leave the collector to Go.
func TestGCTunerStartsOnlyWhenAskedAndGOGCUnset(t *testing.T) {
	logger := hclog.NewNullLogger()
	if tu := startGCTuner(&flags{gcHeadroomMiB: 0}, logger); tu != nil {
		tu.Stop()
		t.Fatal("a tuner started with --gc-headroom-mib 0")
	}
	tu := startGCTuner(&flags{gcHeadroomMiB: 64}, logger)
	if tu == nil {
		t.Fatal("no tuner with --gc-headroom-mib 64")
	}
	// 64 MiB over a live heap of at least the 4 MiB minimum: at most 1600.
	if got := tu.Current(); got <= 100 || got > 1600 {
		t.Errorf("GOGC %d at start, want 101 to 1600", got)
	}
	tu.Stop()
	t.Setenv("GOGC", "200")
	if tu := startGCTuner(&flags{gcHeadroomMiB: 64}, logger); tu != nil {
		tu.Stop()
		t.Fatal("a tuner started with GOGC set")
	}
}

// TestVersionFlag: rosterd --version prints one line naming the build and
// starts nothing.
func TestVersionFlag(t *testing.T) {
	cmd := newCommand()
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.HasPrefix(s, "rosterd ") || !strings.Contains(s, "go1") || strings.Count(s, "\n") != 1 {
		t.Fatalf("--version printed %q", s)
	}
}

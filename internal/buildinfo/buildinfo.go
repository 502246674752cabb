// Package buildinfo describes the running binary: its module version and
// the commit it was built from, as the Go toolchain recorded them.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// String is what --version prints: the module version (or "devel"), the
// commit with "-dirty" when the checkout had changes, and the Go version,
// e.g. "devel (commit 4709577d3a1f-dirty, go1.26.8)".
func String() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (" + runtime.Version() + ")"
	}
	return describe(info)
}

func describe(info *debug.BuildInfo) string {
	version := info.Main.Version
	// A pseudo-version ("v0.0.0-DATE-COMMIT", "+dirty" when modified)
	// repeats the commit named below: only a tag is worth printing.
	if version == "" || version == "(devel)" || strings.HasPrefix(version, "v0.0.0-") || strings.HasSuffix(version, "+dirty") {
		version = "devel"
	}
	var rev string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	goVersion := info.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	if rev == "" {
		return fmt.Sprintf("%s (%s)", version, goVersion)
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return fmt.Sprintf("%s (commit %s, %s)", version, rev, goVersion)
}

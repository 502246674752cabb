package main

import (
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-registry/roster/internal/gctune"
)

// defaultGCHeadroomMiB is --gc-headroom-mib's default: a node whose live
// heap is under 128 MiB may grow by 128 MiB between collections. Measured
// against Go's default (docs/performance.md, Levers): fewer collections, more
// registrations per second for the same CPU.
const defaultGCHeadroomMiB = 128

// startGCTuner starts the collector's headroom tuner unless it is turned
// off or GOGC in the environment says the operator tunes the collector.
func startGCTuner(f *flags, logger hclog.Logger) *gctune.Tuner {
	if f.gcHeadroomMiB == 0 {
		return nil
	}
	if v, ok := os.LookupEnv("GOGC"); ok {
		logger.Info("GOGC is set in the environment; --gc-headroom-mib is ignored", "GOGC", v)
		return nil
	}
	return gctune.Start(uint64(f.gcHeadroomMiB) << 20)
}

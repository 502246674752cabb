package chaos

import (
	"io"
	"time"
)

// Config is one chaos run.
type Config struct {
	// Duration of the workload, from the end of warm-up to the start of the
	// final settle.
	Duration time.Duration
	// Seed of every random choice the harness makes (faults, keys, timing).
	Seed uint64
	// Nodes in the initial cluster (process clusters; Docker is always 3).
	Nodes int
	// Target is "process" (rosterd processes this harness starts) or
	// "docker" (the compose cluster via scripts/docker-cluster.sh).
	Target string
	// Netns for process clusters: "auto" puts each node in a network
	// namespace when it can (partitions and a slow network need it), "on"
	// requires it, "off" runs on loopback.
	Netns string
	// Results directory: history.json, report.txt, porcupine.html on a
	// violation, nodes/*.log.
	Results string
	// Rosterd is the server binary (process clusters).
	Rosterd string
	// RepoRoot locates scripts/docker-cluster.sh.
	RepoRoot string
	// LogLevel of rosterd.
	LogLevel string
	// LogStore is rosterd's --raft-log-store; empty leaves rosterd's
	// default.
	LogStore string
	// SnapshotThreshold and TrailingLogs of every process node: small, so a
	// follower that was down catches up by installing a snapshot.
	SnapshotThreshold int
	TrailingLogs      int
	// Clients doing register/deregister/get on the checked key space.
	Clients int
	// Services and IDs span the key space (Services × IDs instance keys).
	Services, IDs int
	// Watchers on different nodes.
	Watchers int
	// Leased instances, each with a heartbeating owner, and their TTL.
	Leased int
	TTL    time.Duration
	// Streamed leased instances, each renewed by its owner over KeepAlive
	// streams (negative: none). Leased plus Streamed stays below rosterd's
	// self-preservation minimum of 10 leases, so expiries are never held.
	Streamed int
	// Faults to choose from ("all" or names; see FaultNames).
	Faults []string
	// Scenario "random" injects random faults; "stale-read" repeats the
	// deposed-leader read scenario (pause the leader, write through the new
	// one, resume, read from the old one at once).
	Scenario string
	// Warmup before the first fault and Settle after the last heal.
	Warmup, Settle time.Duration
	// LinearizableTimeout bounds checker L.
	LinearizableTimeout time.Duration
	// AllowSkips: a run whose checkers pass but skipped W or X (server
	// without Watch or Heartbeat) exits 0 instead of ExitIncomplete.
	AllowSkips bool
	// Out receives progress and the report.
	Out io.Writer
}

// Exit statuses of a run.
const (
	ExitPass       = 0
	ExitFail       = 1 // a checker found a violation or could not decide
	ExitHarness    = 2 // the harness could not run (setup, no leader, ...)
	ExitIncomplete = 4 // no violation, but W or X were skipped
)

func (c *Config) defaults() {
	if c.Duration <= 0 {
		c.Duration = 2 * time.Minute
	}
	if c.Nodes <= 0 {
		c.Nodes = 3
	}
	if c.Target == "" {
		c.Target = "process"
	}
	if c.Netns == "" {
		c.Netns = "auto"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.SnapshotThreshold <= 0 {
		c.SnapshotThreshold = 256
	}
	if c.TrailingLogs <= 0 {
		c.TrailingLogs = 64
	}
	if c.Clients <= 0 {
		c.Clients = 5
	}
	if c.Services <= 0 {
		c.Services = 2
	}
	if c.IDs <= 0 {
		c.IDs = 8
	}
	if c.Watchers <= 0 {
		c.Watchers = 3
	}
	if c.Leased < 0 {
		c.Leased = 0
	} else if c.Leased == 0 {
		c.Leased = 4
	}
	if c.Streamed < 0 {
		c.Streamed = 0
	} else if c.Streamed == 0 {
		c.Streamed = 4
	}
	if c.TTL <= 0 {
		c.TTL = 8 * time.Second
	}
	if c.Scenario == "" {
		c.Scenario = "random"
	}
	if c.Warmup <= 0 {
		c.Warmup = 5 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 5 * time.Second
	}
	if c.LinearizableTimeout <= 0 {
		c.LinearizableTimeout = 3 * time.Minute
	}
	if len(c.Faults) == 0 {
		c.Faults = []string{"all"}
	}
}

// Command roster-chaos runs Roster's chaos test: a rosterd cluster under a
// recorded workload while it injects crashes, pauses, partitions, a slow
// network, snapshot catch-up, membership changes and a slow watcher, then
// judges the history with checkers L (linearizability), W (watch
// invariants), D (durability and state hashes), X (lease safety) and R
// (linearizable reads never go back in time, across nodes and keys).
//
// It prints the faults it injected, operation counts and one verdict line,
// keeps history.json, report.txt, porcupine.html (on a violation) and every
// node's log in the results directory, and exits 0 on PASS, 1 on FAIL, 2
// when it could not run, and 4 when no checker failed but W or X were
// SKIPPED because the server lacks Watch or Heartbeat (0 with
// --allow-skips). scripts/chaos.sh builds the binaries and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/roster-registry/roster/internal/chaos"
)

func main() {
	os.Exit(run())
}

func run() int {
	var cfg chaos.Config
	var faults string
	fs := flag.NewFlagSet("roster-chaos", flag.ContinueOnError)
	fs.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "how long faults are injected (plus warm-up, settle and checking)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0: from the clock; printed, so a run can be repeated)")
	fs.IntVar(&cfg.Nodes, "nodes", 3, "nodes in the process cluster (Docker is always 3)")
	fs.StringVar(&cfg.Target, "target", "process", "process: rosterd processes started here; docker: the compose cluster (scripts/docker-cluster.sh)")
	fs.StringVar(&cfg.Netns, "netns", "auto", "process target: auto|on|off: run each node in its own network namespace (needed for partitions and slow network; needs root, ip, iptables)")
	fs.StringVar(&cfg.Results, "results", "", "results directory (default results/chaos-<timestamp>)")
	fs.StringVar(&cfg.Rosterd, "rosterd", "", "rosterd binary (default: rosterd next to this program, else on PATH)")
	fs.StringVar(&cfg.RepoRoot, "repo", "", "repository root, for scripts/docker-cluster.sh (default: git rev-parse --show-toplevel)")
	fs.StringVar(&faults, "faults", "all", "comma-separated faults: all or "+strings.Join(chaos.FaultNames, ","))
	fs.StringVar(&cfg.Scenario, "scenario", "random", "random, or stale-read: repeat the deposed-leader read scenario")
	fs.IntVar(&cfg.Clients, "clients", 5, "recorded clients")
	fs.IntVar(&cfg.Watchers, "watchers", 3, "watchers (plus one slow watcher)")
	fs.IntVar(&cfg.Leased, "leased", 4, "TTL instances kept alive by heartbeats (negative: none)")
	fs.IntVar(&cfg.Streamed, "streamed", 4, "TTL instances kept alive over KeepAlive streams, as the Go SDK does (negative: none)")
	fs.DurationVar(&cfg.TTL, "ttl", 8*time.Second, "TTL of the leased instances (long against the 1s election timeout)")
	fs.DurationVar(&cfg.Warmup, "warmup", 5*time.Second, "workload before the first fault")
	fs.DurationVar(&cfg.Settle, "settle", 5*time.Second, "workload after the last heal")
	fs.DurationVar(&cfg.LinearizableTimeout, "check-timeout", 3*time.Minute, "bound on checker L (running out is a failure)")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "rosterd log level")
	fs.StringVar(&cfg.LogStore, "raft-log-store", "", "rosterd --raft-log-store of every process node: wal or bolt (default: rosterd's)")
	fs.BoolVar(&cfg.AllowSkips, "allow-skips", false, "exit 0 when W or X were SKIPPED (server without Watch or Heartbeat) and nothing failed")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.Faults = strings.Split(faults, ",")
	// rosterd holds expiries back (self-preservation) once a group has 10
	// leases, and checker X cannot judge held expiries.
	if n := max(cfg.Leased, 0) + max(cfg.Streamed, 0); n >= 10 {
		fmt.Fprintf(os.Stderr, "roster-chaos: --leased plus --streamed is %d; keep it under 10, rosterd's self-preservation minimum, or expiries are held and checker X cannot judge them\n", n)
		return 2
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano() % 1_000_000_000)
	}
	if cfg.Results == "" {
		cfg.Results = filepath.Join("results", "chaos-"+time.Now().Format("20060102-150405"))
	}
	if cfg.RepoRoot == "" {
		if out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output(); err == nil {
			cfg.RepoRoot = strings.TrimSpace(string(out))
		} else {
			cfg.RepoRoot = "."
		}
	}
	if cfg.Target == "process" && cfg.Rosterd == "" {
		if self, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(self), "rosterd"); fileExists(p) {
				cfg.Rosterd = p
			}
		}
		if cfg.Rosterd == "" {
			p, err := exec.LookPath("rosterd")
			if err != nil {
				fmt.Fprintln(os.Stderr, "roster-chaos: no rosterd binary: pass --rosterd (scripts/chaos.sh builds one)")
				return 2
			}
			cfg.Rosterd = p
		}
	}
	if abs, err := filepath.Abs(cfg.Rosterd); err == nil && cfg.Rosterd != "" {
		cfg.Rosterd = abs
	}
	cfg.Out = os.Stdout

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	out, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "roster-chaos: %v\n", err)
		fmt.Printf("results: %s\nverdict: ERROR (the harness could not complete the run: %v)\n", cfg.Results, err)
		return chaos.ExitHarness
	}
	return out.Code
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

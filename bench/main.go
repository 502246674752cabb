// Command bench measures Roster side by side with etcd 3.6 on one machine:
// it starts a 3-process etcd cluster (this binary re-executed as each
// member, through etcd's embed package, real data dirs, loopback ports)
// and a 3-process Roster cluster (rosterd), runs the same workloads on
// both, and prints each figure for both with the ratio Roster / etcd.
//
// It is its own module so that the main module never depends on etcd.
//
//	cd bench && go run . --rosterd ../bin/rosterd
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "etcd-member" {
		if err := runEtcdMember(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "etcd-member:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runner holds the flags of one comparison run.
type runner struct {
	rosterd      string
	rosterdFlags string
	phase        time.Duration
	writers      []int
	keys         int
	conns        int
	watchers     int
	watchWrites  int
	prevInstance bool
	ownStreams   bool
	reads        int
	memKeys      int
	rounds       int
	only         string
	jsonPath     string
	stderr       io.Writer
}

func (b *runner) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "bench: "+format+"\n", args...)
}

// figure is one line of the comparison.
type figure struct {
	Name   string  `json:"figure"`
	Unit   string  `json:"unit"`
	Etcd   float64 `json:"etcd"`
	Roster float64 `json:"roster"`
	// Ratio is Roster / etcd.
	Ratio float64 `json:"ratio"`
	// Better says which way is better: "higher" or "lower".
	Better string `json:"better"`
}

// report is what -json writes.
type report struct {
	Started  time.Time         `json:"started"`
	Machine  map[string]string `json:"machine"`
	Versions map[string]string `json:"versions"`
	Settings map[string]string `json:"settings"`
	Figures  []figure          `json:"figures"`
	Details  map[string]any    `json:"details"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	b := &runner{stderr: stderr}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&b.rosterd, "rosterd", "", "rosterd binary (default ../bin/rosterd or bin/rosterd)")
	fs.StringVar(&b.rosterdFlags, "rosterd-flags", "", "extra rosterd flags for every node, space-separated")
	fs.DurationVar(&b.phase, "phase", 5*time.Second, "duration of each write phase")
	writers := fs.String("writers", "1,64,256", "concurrent writers of the write phases, comma-separated")
	fs.IntVar(&b.keys, "keys", 1000, "distinct records the write phases touch")
	fs.IntVar(&b.conns, "conns", 8, "client connections per node")
	fs.IntVar(&b.watchers, "watchers", 1000, "watchers of the watch phase, spread over every node")
	fs.IntVar(&b.watchWrites, "watch-writes", 100, "writes of the watch phase, each awaited by every watcher")
	fs.BoolVar(&b.prevInstance, "prev-instance", false, "Roster's watchers ask for each event's prev_instance too (etcd's do not ask for prev_kv either way)")
	fs.BoolVar(&b.ownStreams, "own-streams", false, "each of Roster's watchers opens a Watch stream of its own; off, the watchers of one connection share its Go SDK client's WatchMany stream (as etcd's share their client's watch stream)")
	fs.IntVar(&b.reads, "reads", 200, "write-then-read pairs of the read-after-write phase, per node")
	fs.IntVar(&b.memKeys, "mem-keys", 50000, "records loaded by the memory phase")
	fs.IntVar(&b.rounds, "rounds", 5, "leaders killed by the failover phase")
	fs.StringVar(&b.only, "only", "", "run only these phases: comma-separated of read,write,lease,spread,watch,memory,failover")
	fs.StringVar(&b.jsonPath, "json", "", "also write the report as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, w := range strings.Split(*writers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 1 || n > 10000 {
			return fmt.Errorf("-writers %q: want numbers 1-10000", *writers)
		}
		b.writers = append(b.writers, n)
	}
	if b.rosterd == "" {
		for _, c := range []string{"../bin/rosterd", "bin/rosterd"} {
			if _, err := os.Stat(c); err == nil {
				b.rosterd = c
				break
			}
		}
		if b.rosterd == "" {
			return fmt.Errorf("no rosterd found: build it (go build -o bin/rosterd ./cmd/rosterd at the repository root) or give -rosterd")
		}
	}
	if abs, err := filepath.Abs(b.rosterd); err == nil {
		b.rosterd = abs
	}
	base, err := os.MkdirTemp("", "roster-vs-etcd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)

	rep := report{Started: time.Now().UTC(), Machine: machine(), Versions: versions(b.rosterd), Details: map[string]any{},
		Settings: map[string]string{
			"phase": b.phase.String(), "writers": *writers, "keys": fmt.Sprint(b.keys), "conns_per_node": fmt.Sprint(b.conns),
			"watchers": fmt.Sprint(b.watchers), "watch_writes": fmt.Sprint(b.watchWrites), "watch_prev_instance": fmt.Sprint(b.prevInstance), "watch_own_streams": fmt.Sprint(b.ownStreams), "reads": fmt.Sprint(b.reads),
			"mem_keys": fmt.Sprint(b.memKeys), "rounds": fmt.Sprint(b.rounds), "rosterd_flags": b.rosterdFlags,
			"etcd":   "embed defaults (heartbeat 100ms, election 1000ms), 3 processes, one data dir each",
			"roster": "rosterd defaults, 3 processes, --initial-cluster",
		}}
	b.logf("load average at start: %s", rep.Machine["loadavg_start"])

	// Both clusters run for the whole comparison, but only one at a time:
	// the other's processes are stopped (SIGSTOP) while a phase runs, and
	// the two take turns phase by phase, so a change in the machine's load
	// falls on both alike.
	var systems []system
	defer func() {
		for _, s := range systems {
			resumeAll(s)
			s.close()
		}
	}()
	for _, sysName := range []string{"etcd", "roster"} {
		b.logf("starting a 3-process %s cluster", sysName)
		var s system
		if sysName == "etcd" {
			s, err = startEtcd(ctx, base, b.conns)
		} else {
			var rs *rosterSystem
			rs, err = startRoster(ctx, base, b.rosterd, b.conns, strings.Fields(b.rosterdFlags))
			if err == nil {
				rs.prevInstance = b.prevInstance
				rs.ownStreams = b.ownStreams
			}
			s = rs
		}
		if err != nil {
			return err
		}
		systems = append(systems, s)
		pauseAll(s)
	}
	results := map[string]map[string]any{"etcd": {}, "roster": {}}
	for i, ph := range b.phaseList() {
		if !b.want(ph.group) {
			continue
		}
		order := systems
		if i%2 == 1 {
			order = []system{systems[1], systems[0]}
		}
		for _, s := range order {
			resumeAll(s)
			if err := settle(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s.name(), err)
			}
			b.logf("%s: %s (load average %s)", s.name(), ph.name, loadavg())
			v, err := ph.run(ctx, s)
			pauseAll(s)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", s.name(), ph.name, err)
			}
			results[s.name()][ph.key] = v
		}
	}
	rep.Details["etcd"], rep.Details["roster"] = results["etcd"], results["roster"]
	rep.Machine["loadavg_end"] = loadavg()
	rep.Figures = figures(results["etcd"], results["roster"])
	printReport(stdout, rep)
	if b.jsonPath != "" {
		out, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(b.jsonPath, append(out, '\n'), 0o644)
	}
	return nil
}

func (b *runner) want(phase string) bool {
	if b.only == "" {
		return true
	}
	for _, p := range strings.Split(b.only, ",") {
		if strings.TrimSpace(p) == phase {
			return true
		}
	}
	return false
}

// phase is one workload, run on each system in turn.
type phase struct {
	group string // what -only names
	key   string // its key in the results
	name  string
	run   func(ctx context.Context, s system) (any, error)
}

// phaseList is every workload, in an order that keeps each from
// disturbing the next: reads first on a small state, failover last.
func (b *runner) phaseList() []phase {
	ps := []phase{{"read", "read", fmt.Sprintf("read after write, %d pairs per node", b.reads), func(ctx context.Context, s system) (any, error) {
		return b.runReadAfterWrite(ctx, s, b.reads)
	}}}
	for _, kind := range []struct {
		name          string
		lease, spread bool
	}{{"write", false, false}, {"lease", true, false}, {"spread", false, true}} {
		for _, w := range b.writers {
			ps = append(ps, phase{kind.name, fmt.Sprintf("%s_%d", kind.name, w), fmt.Sprintf("%s, %d writers, %s", kind.name, w, b.phase),
				func(ctx context.Context, s system) (any, error) {
					st, err := b.runWrites(ctx, s, w, kind.lease, kind.spread, b.phase)
					if err == nil {
						b.logf("%s: %.0f/s p50 %.2fms p99 %.2fms, %d errors %s", s.name(), st.OpsPerS, st.P50, st.P99, st.Errors, st.FirstError)
					}
					return st, err
				}})
		}
	}
	return append(ps,
		phase{"watch", "watch", fmt.Sprintf("watch, %d watchers, %d writes", b.watchers, b.watchWrites), func(ctx context.Context, s system) (any, error) {
			return b.runWatch(ctx, s, b.watchers, b.watchWrites)
		}},
		phase{"memory", "memory", fmt.Sprintf("memory, %d records", b.memKeys), func(ctx context.Context, s system) (any, error) {
			return b.runMemory(ctx, s, b.memKeys)
		}},
		phase{"failover", "failover", fmt.Sprintf("failover, %d rounds", b.rounds), func(ctx context.Context, s system) (any, error) {
			return b.runFailover(ctx, s, b.rounds)
		}},
	)
}

// pauseAll stops every live member's process (SIGSTOP).
func pauseAll(s system) {
	for _, m := range s.members() {
		if m.alive() {
			_ = m.cmd.Process.Signal(syscall.SIGSTOP)
		}
	}
}

// resumeAll continues every stopped member (SIGCONT).
func resumeAll(s system) {
	for _, m := range s.members() {
		if m.alive() {
			_ = m.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
}

// settle waits, after a resume, until the cluster has a leader that takes
// a write, and a second more for timers that fired during the pause.
func settle(ctx context.Context, s system) error {
	if err := waitLeader(ctx, s); err != nil {
		return err
	}
	time.Sleep(time.Second)
	if err := waitLeader(ctx, s); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		l, err := s.leader(ctx)
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = s.write(cctx, l, 0, 0, 0, false)
			cancel()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no write succeeded within 1m of resuming: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// figures pairs up the two systems' results.
func figures(e, r map[string]any) []figure {
	var out []figure
	add := func(name, unit, better string, ev, rv float64) {
		f := figure{Name: name, Unit: unit, Etcd: ev, Roster: rv, Better: better}
		if ev != 0 {
			f.Ratio = rv / ev
		}
		out = append(out, f)
	}
	var keys []string
	for k := range e {
		keys = append(keys, k)
	}
	order := func(k string) string {
		for i, p := range []string{"read", "write_", "lease_", "spread_", "watch", "memory", "failover"} {
			if strings.HasPrefix(k, p) {
				n := strings.TrimLeft(k[len(p):], "_")
				v, _ := strconv.Atoi(n)
				return fmt.Sprintf("%d-%06d", i, v)
			}
		}
		return k
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if order(keys[j]) < order(keys[i]) {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	for _, k := range keys {
		rv, ok := r[k]
		if !ok {
			continue
		}
		switch ev := e[k].(type) {
		case readStats:
			rs := rv.(readStats)
			add("linearizable read on the leader right after a write, p50", "ms", "lower", ev.LeaderP50, rs.LeaderP50)
			add("linearizable read on a follower right after a write, p50", "ms", "lower", ev.FollowerP50, rs.FollowerP50)
		case writeStats:
			ws := rv.(writeStats)
			what := map[string]string{"write": "register / put to the leader", "lease": "register with TTL / put with lease, to the leader",
				"spread": "register / put spread over all nodes"}
			kind, n, _ := strings.Cut(k, "_")
			add(fmt.Sprintf("%s, %s writers: throughput", what[kind], n), "ops/s", "higher", ev.OpsPerS, ws.OpsPerS)
			add(fmt.Sprintf("%s, %s writers: p50", what[kind], n), "ms", "lower", ev.P50, ws.P50)
			add(fmt.Sprintf("%s, %s writers: p99", what[kind], n), "ms", "lower", ev.P99, ws.P99)
		case watchStats:
			ws := rv.(watchStats)
			add("watch: last watcher has the write, p50", "ms", "lower", ev.LastP50, ws.LastP50)
			add("watch: last watcher has the write, p99", "ms", "lower", ev.LastP99, ws.LastP99)
			add("watch: each delivery, p50", "ms", "lower", ev.EachP50, ws.EachP50)
		case memoryStats:
			ms := rv.(memoryStats)
			add("resident memory per record (anon RSS delta, largest member)", "bytes", "lower", ev.BytesPerKey, ms.BytesPerKey)
			add("live heap per record (after a forced collection, largest member)", "bytes", "lower", ev.HeapBytesPerKey, ms.HeapBytesPerKey)
		case failoverStats:
			fs := rv.(failoverStats)
			add("kill -9 leader → next write ok, median", "ms", "lower", ev.MedianMS, fs.MedianMS)
			add("kill -9 leader → next write ok, max", "ms", "lower", ev.MaxMS, fs.MaxMS)
		}
	}
	return out
}

func printReport(w io.Writer, rep report) {
	fmt.Fprintf(w, "machine: %s CPUs, %s; load average %s at start, %s at end\n",
		rep.Machine["cpus"], rep.Machine["kernel"], rep.Machine["loadavg_start"], rep.Machine["loadavg_end"])
	fmt.Fprintf(w, "versions: etcd %s, roster %s, %s\n", rep.Versions["etcd"], rep.Versions["roster"], rep.Versions["go"])
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tETCD\tROSTER\tROSTER/ETCD")
	for _, f := range rep.Figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f×\n", f.Name, num(f.Etcd, f.Unit), num(f.Roster, f.Unit), f.Ratio)
	}
	tw.Flush()
}

func num(v float64, unit string) string {
	switch unit {
	case "ops/s":
		return fmt.Sprintf("%.0f/s", v)
	case "bytes":
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func machine() map[string]string {
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return map[string]string{"cpus": fmt.Sprint(runtime.NumCPU()), "kernel": kernel, "loadavg_start": loadavg()}
}

func versions(rosterd string) map[string]string {
	v := map[string]string{"go": runtime.Version(), "etcd": "unknown", "roster": "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "go.etcd.io/etcd/server/v3" {
				v["etcd"] = strings.TrimPrefix(d.Version, "v")
			}
		}
	}
	if out, err := versionOf(rosterd); err == nil {
		v["roster"] = out
	}
	return v
}

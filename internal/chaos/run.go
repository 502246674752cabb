package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/roster-registry/roster/internal/checker"
)

// Outcome is what a run concluded.
type Outcome struct {
	Code    int
	Verdict string // the verdict line
	Report  checker.Report
	Results string
	Ops     int
}

// Run performs one chaos run: start the cluster, warm up, inject faults,
// heal, settle, take final reads, check, report. The error is for the
// harness failing to run, never for a violation (see Outcome.Code).
func Run(ctx context.Context, cfg Config) (Outcome, error) {
	cfg.defaults()
	out := Outcome{Code: ExitHarness, Results: cfg.Results}
	if err := os.MkdirAll(cfg.Results, 0o755); err != nil {
		return out, err
	}
	runLog, err := os.Create(filepath.Join(cfg.Results, "run.log"))
	if err != nil {
		return out, err
	}
	defer runLog.Close()
	var logMu sync.Mutex
	rec := newRecorder()
	var w io.Writer = runLog
	if cfg.Out != nil {
		w = io.MultiWriter(runLog, cfg.Out)
	}
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(w, "[%7.2fs] %s\n", time.Since(rec.base).Seconds(), fmt.Sprintf(format, args...))
	}
	logf("roster-chaos: target %s, seed %d, duration %s, results %s", cfg.Target, cfg.Seed, cfg.Duration, cfg.Results)

	var c *cluster
	if cfg.Target == "docker" {
		c, err = newDockerCluster(&cfg, logf)
	} else {
		c, err = newProcessCluster(&cfg, logf)
	}
	if err != nil {
		return out, err
	}
	defer c.close()
	if c.topo != nil {
		logf("process cluster in network namespaces (subnet %s.0/24): partitions and slow network enabled", c.topo.subnet)
	} else if !c.docker {
		logf("process cluster on loopback: partitions SKIPPED (%s)", c.noPartition)
	}
	if err := c.bootstrap(); err != nil {
		return out, err
	}
	l, err := c.waitLeader(ctx, 60*time.Second)
	if err != nil {
		return out, fmt.Errorf("cluster did not elect a leader: %w", err)
	}
	logf("cluster up: %d nodes, leader %s", len(c.members()), l.id)

	wl, err := newWorkload(&cfg, c, rec)
	if err != nil {
		return out, err
	}
	defer wl.close()
	seed := func(i uint64) *rand.Rand { return rand.New(rand.NewPCG(cfg.Seed, i)) }

	clientCtx, stopClients := context.WithCancel(ctx)
	leaseCtx, stopLeases := context.WithCancel(ctx)
	watchCtx, stopWatches := context.WithCancel(ctx)
	defer stopClients()
	defer stopLeases()
	defer stopWatches()
	var clients, leases, watches sync.WaitGroup
	for i := 0; i < cfg.Watchers; i++ {
		watches.Add(1)
		go func() {
			defer watches.Done()
			wl.watcher(watchCtx, seed(100+uint64(i)), fmt.Sprintf("w%d", i+1), i, false)
		}()
	}
	watches.Add(1)
	go func() {
		defer watches.Done()
		wl.watcher(watchCtx, seed(199), "w-slow", cfg.Watchers, true)
	}()
	// Two more sharing one WatchMany stream, as the Go SDK's watches do.
	watches.Add(1)
	go func() {
		defer watches.Done()
		wl.manyWatcher(watchCtx, seed(198), []string{"wm1", "wm2"}, cfg.Watchers+1)
	}()
	for i := 0; i < cfg.Clients; i++ {
		clients.Add(1)
		go func() {
			defer clients.Done()
			wl.client(clientCtx, seed(uint64(i)))
		}()
	}
	for i := 0; i < readPairClients; i++ {
		clients.Add(1)
		go func() {
			defer clients.Done()
			wl.readPairs(clientCtx, seed(300+uint64(i)))
		}()
	}
	for i := 0; i < cfg.Leased; i++ {
		leases.Add(1)
		go func() {
			defer leases.Done()
			wl.leaseOwner(leaseCtx, seed(200+uint64(i)), fmt.Sprintf("l%d", i))
		}()
	}
	for i := 0; i < cfg.Streamed; i++ {
		leases.Add(1)
		go func() {
			defer leases.Done()
			wl.streamOwner(leaseCtx, seed(250+uint64(i)), fmt.Sprintf("k%d", i))
		}()
	}
	if cfg.Leased+cfg.Streamed > 0 {
		leases.Add(1)
		go func() {
			defer leases.Done()
			wl.leaseReader(leaseCtx, seed(299))
		}()
	}

	logf("warm-up %s", cfg.Warmup)
	sleep(ctx, cfg.Warmup)
	f := &faulter{cfg: &cfg, c: c, w: wl, rec: rec, r: seed(999), log: logf}
	f.run(ctx, time.Now().Add(cfg.Duration))

	logf("heal: partitions and slow network removed, paused nodes resumed, killed nodes restarted")
	if err := c.heal(); err != nil {
		rec.problem("heal: %v", err)
	}
	for _, err := range c.reviveAll() {
		rec.problem("revive: %v", err)
	}
	if _, err := c.waitLeader(ctx, 60*time.Second); err != nil {
		rec.problem("after heal: %v", err)
	}
	logf("settle %s", cfg.Settle)
	sleep(ctx, cfg.Settle)
	stopClients()
	clients.Wait()

	final := finalReads(ctx, c, wl, rec, logf)
	stopLeases()
	leases.Wait()
	waitWatchers(ctx, wl, final, logf)
	stopWatches()
	watches.Wait()

	if ctx.Err() != nil {
		return out, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return judge(&cfg, c, wl, rec, logf, w)
}

// finalReads waits for every member to apply the same index, then reads
// every service linearizably on every node (recorded as gets and as final
// lists) and collects the state hashes at one common applied index. It
// returns the highest revision a final list reflects.
func finalReads(ctx context.Context, c *cluster, wl *workload, rec *recorder, logf func(string, ...any)) uint64 {
	members := c.members()
	waitSameIndex(ctx, c, members, logf, rec)
	services := append(append([]string(nil), wl.services...), leasedService)
	client := wl.clientID()
	var top uint64
	for _, n := range members {
		for _, svc := range services {
			for attempt := 0; attempt < 10; attempt++ {
				op, resp := wl.get(ctx, client, n, svc, 5*time.Second)
				if resp == nil {
					time.Sleep(300 * time.Millisecond)
					continue
				}
				snap := checker.Snapshot{Namespace: namespace, Service: svc, Revision: op.Revision,
					Call: op.Call, Return: op.Return, Instances: map[string]string{}}
				for id, v := range op.Observed {
					snap.Instances[checker.InstanceKey(namespace, svc, id)] = v
				}
				rec.mu.Lock()
				rec.h.Final = append(rec.h.Final, snap)
				rec.mu.Unlock()
				top = max(top, op.Revision)
				break
			}
		}
	}
	// Hashes at one common applied index: leases may still move the index,
	// so poll until every node reports the same one.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var hashes []checker.NodeHash
		for _, n := range members {
			st, err := c.status(ctx, n, true)
			if err != nil {
				break
			}
			hashes = append(hashes, checker.NodeHash{Node: n.id, AppliedIndex: st.HashIndex, Hash: st.StateHash})
		}
		same := len(hashes) == len(members)
		for _, h := range hashes {
			same = same && h.AppliedIndex == hashes[0].AppliedIndex && h.Hash != ""
		}
		if same {
			rec.mu.Lock()
			rec.h.NodeHashes = hashes
			rec.mu.Unlock()
			logf("state hashes of %d nodes at applied index %d: %s", len(hashes), hashes[0].AppliedIndex, hashes[0].Hash)
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			rec.problem("state hashes: nodes never reported the same applied index within 30s (last: %v)", hashes)
			rec.mu.Lock()
			rec.h.NodeHashes = hashes
			rec.mu.Unlock()
			break
		}
		time.Sleep(150 * time.Millisecond)
	}
	return top
}

func waitSameIndex(ctx context.Context, c *cluster, members []*node, logf func(string, ...any), rec *recorder) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var idx []uint64
		for _, n := range members {
			if st, err := c.status(ctx, n, false); err == nil {
				idx = append(idx, st.AppliedIndex)
			}
		}
		same := len(idx) == len(members)
		for _, i := range idx {
			same = same && i == idx[0]
		}
		if same {
			logf("all %d members applied index %d", len(members), idx[0])
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			rec.problem("members did not converge on one applied index within 60s: %v", idx)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitWatchers gives every watcher time to receive everything up to the
// final lists' revision, so W can compare its replay with them.
func waitWatchers(ctx context.Context, wl *workload, top uint64, logf func(string, ...any)) {
	if wl.noWatch.Load() {
		return
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		behind := []string{}
		for name, last := range wl.lastRevisions() {
			if last < top {
				behind = append(behind, fmt.Sprintf("%s@%d", name, last))
			}
		}
		if len(behind) == 0 {
			logf("every watcher reached revision %d", top)
			return
		}
		time.Sleep(200 * time.Millisecond)
		if time.Now().After(deadline) {
			logf("watchers still behind revision %d: %v", top, behind)
		}
	}
}

// judge saves the history, runs the checkers and prints the report.
func judge(cfg *Config, c *cluster, wl *workload, rec *recorder, logf func(string, ...any), w io.Writer) (Outcome, error) {
	out := Outcome{Code: ExitHarness, Results: cfg.Results}
	rec.mu.Lock()
	h := rec.h
	rec.mu.Unlock()
	if !wl.noWatch.Load() {
		wl.watchMu.Lock()
		for _, s := range wl.streams {
			h.Watches = append(h.Watches, *s)
		}
		wl.watchMu.Unlock()
	}
	if wl.noHeartbeat.Load() {
		// Without a lease manager nothing expires; absences of never-acked
		// registrations would only be noise.
		h.Expiries = nil
	}
	out.Ops = len(h.Ops)
	histPath := filepath.Join(cfg.Results, "history.json")
	if err := h.Save(histPath); err != nil {
		return out, err
	}
	logf("history saved: %s (%d ops, %d watchers, %d final lists, %d expiry observations)",
		histPath, len(h.Ops), len(h.Watches), len(h.Final), len(h.Expiries))
	logf("checking (porcupine bound %s)", cfg.LinearizableTimeout)
	start := time.Now()
	rep := checker.CheckAll(&h, checker.Options{
		LinearizableTimeout: cfg.LinearizableTimeout,
		VisualizationPath:   filepath.Join(cfg.Results, "porcupine.html"),
		LeaseSlack:          250 * time.Millisecond,
	})
	logf("checked in %s", time.Since(start).Round(time.Millisecond))

	var skips []string
	results := rep.Results()
	if wl.noWatch.Load() {
		results[1] = checker.Result{Checker: "W", Verdict: "skipped", Short: "W SKIPPED (server has no Watch)",
			Summary: "SKIPPED: the server answered Watch with Unimplemented; no watch invariant was checked"}
		skips = append(skips, "W")
	}
	if wl.noHeartbeat.Load() {
		results[3] = checker.Result{Checker: "X", Verdict: "skipped", Short: "X SKIPPED (server has no Heartbeat)",
			Summary: "SKIPPED: the server answered Heartbeat with Unimplemented; no lease expiry was checked"}
		skips = append(skips, "X")
	}
	rec.mu.Lock()
	problems := append([]string(nil), rec.problems...)
	hashProblem := false
	for _, p := range problems {
		hashProblem = hashProblem || strings.HasPrefix(p, "state hashes")
	}
	rec.mu.Unlock()
	if hashProblem && results[2].OK() {
		results[2].Verdict = checker.VerdictUnknown
		results[2].Short = "D unknown (no common applied index for hashes)"
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n=== roster-chaos report: target %s, seed %d, duration %s\n", cfg.Target, cfg.Seed, cfg.Duration)
	b.WriteString("faults injected (times since start):\n")
	rec.mu.Lock()
	faultCounts := map[string]int{}
	for _, f := range rec.faults {
		fmt.Fprintf(&b, "  %7.2fs-%7.2fs %-18s %s\n", f.At.Seconds(), f.End.Seconds(), f.Name, f.Detail)
		faultCounts[f.Name]++
	}
	rec.mu.Unlock()
	var names []string
	for n := range faultCounts {
		names = append(names, n)
	}
	sort.Strings(names)
	var fc []string
	for _, n := range names {
		fc = append(fc, fmt.Sprintf("%s=%d", n, faultCounts[n]))
	}
	fmt.Fprintf(&b, "fault counts: %s\n", strings.Join(fc, " "))
	b.WriteString("operations by kind and outcome:\n")
	b.WriteString(rec.countsReport())
	fmt.Fprintf(&b, "watch: %d streams, %d stream errors (resumed), %d slow-watcher cut-offs\n",
		len(h.Watches), wl.watchErrs.Load(), wl.slowCuts.Load())
	if len(problems) > 0 {
		b.WriteString("notes:\n")
		for _, p := range problems {
			fmt.Fprintf(&b, "  %s\n", p)
		}
	}
	failed := false
	parts := []string{}
	for _, res := range results {
		fmt.Fprintf(&b, "%s: %s\n", res.Checker, res.Summary)
		parts = append(parts, res.Short)
		if res.Verdict == "skipped" {
			continue
		}
		if !res.OK() {
			failed = true
			for _, d := range res.Details {
				fmt.Fprintf(&b, "  %s\n", d)
			}
			if res.Dropped > 0 {
				fmt.Fprintf(&b, "  ... and %d more\n", res.Dropped)
			}
			if res.Visualization != "" {
				fmt.Fprintf(&b, "  visualization: %s\n", res.Visualization)
			}
		}
	}
	word := "PASS"
	out.Code = ExitPass
	switch {
	case failed:
		word, out.Code = "FAIL", ExitFail
	case len(skips) > 0:
		word = "INCOMPLETE"
		if !cfg.AllowSkips {
			out.Code = ExitIncomplete
		}
	}
	out.Verdict = fmt.Sprintf("verdict: %s (%s)", word, strings.Join(parts, ", "))
	fmt.Fprintf(&b, "results: %s\n%s\n", cfg.Results, out.Verdict)
	out.Report = rep
	_ = os.WriteFile(filepath.Join(cfg.Results, "report.txt"), []byte(b.String()), 0o644)
	_, _ = io.WriteString(w, b.String())
	return out, nil
}

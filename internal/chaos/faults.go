package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/roster-registry/roster/internal/checker"
)

// FaultNames lists every fault the harness can inject, in the order of the
// fault table in RELIABILITY.md (repository root); keep the two in step.
var FaultNames = []string{
	"crash-leader", "crash-follower",
	"pause-leader", "pause-follower", "pause-leader-long", "stale-read",
	"partition-leader", "partition-follower", "partition-bridge",
	"slow-net",
	"snapshot-catchup",
	"disk-corrupt",
	"membership", "remove-partitioned",
	"slow-watcher",
}

// electionWait is comfortably longer than rosterd's election timeout
// (300 ms by default, 1 s with hashicorp/raft's own timers).
const electionWait = 3 * time.Second

// faulter injects faults into the cluster while the workload runs.
type faulter struct {
	cfg *Config
	c   *cluster
	w   *workload
	rec *recorder
	r   *rand.Rand
	log func(string, ...any)
}

// applicable returns the enabled faults this cluster can run, and notes for
// the ones it cannot.
func (f *faulter) applicable() (names []string, skipped []string) {
	enabled := map[string]bool{}
	for _, n := range f.cfg.Faults {
		if n == "all" {
			for _, m := range FaultNames {
				enabled[m] = true
			}
		} else {
			enabled[n] = true
		}
	}
	for _, n := range FaultNames {
		if !enabled[n] {
			continue
		}
		why := ""
		switch n {
		case "partition-leader", "partition-follower", "remove-partitioned":
			why = f.c.canPartition()
		case "partition-bridge", "slow-net":
			if f.c.docker {
				why = "docker network disconnect cuts a node off entirely; bridge partitions and a slow network need network namespaces (process target)"
			} else {
				why = f.c.canPartition()
			}
		case "snapshot-catchup", "disk-corrupt", "membership":
			if f.c.docker {
				why = "process target only (needs flags and data directories of processes the harness starts)"
			}
		case "slow-watcher", "stale-read":
			if f.c.docker && n == "stale-read" {
				why = ""
			}
		}
		if n == "remove-partitioned" && f.c.docker {
			why = "process target only"
		}
		if why != "" {
			skipped = append(skipped, fmt.Sprintf("%s SKIPPED: %s", n, why))
			continue
		}
		names = append(names, n)
	}
	return names, skipped
}

// run injects faults until the deadline.
func (f *faulter) run(ctx context.Context, until time.Time) {
	names, skipped := f.applicable()
	for _, s := range skipped {
		f.log("fault %s", s)
		f.rec.problem("fault %s", s)
	}
	if len(names) == 0 {
		f.log("no applicable faults; the workload runs without faults")
		sleep(ctx, time.Until(until))
		return
	}
	if f.cfg.Scenario == "stale-read" {
		names = []string{"stale-read", "partition-leader"}
		if f.c.canPartition() != "" {
			names = []string{"stale-read"}
		}
	}
	// Cover every applicable fault once in a shuffled order, then random.
	order := append([]string(nil), names...)
	f.r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	if f.c.docker {
		// Partitions are what the Docker run is for: do them first.
		sort.SliceStable(order, func(i, j int) bool {
			return strings.HasPrefix(order[i], "partition") && !strings.HasPrefix(order[j], "partition")
		})
	}
	for i := 0; ctx.Err() == nil && time.Until(until) > 5*time.Second; i++ {
		name := names[f.r.IntN(len(names))]
		if i < len(order) {
			name = order[i]
		}
		start := time.Now()
		f.log("fault %s: start", name)
		detail, err := f.inject(ctx, name)
		if err != nil {
			detail = fmt.Sprintf("%s; ERROR: %v", detail, err)
			f.rec.problem("fault %s: %v", name, err)
			f.recover(ctx)
		}
		f.rec.fault(start, name, detail)
		f.log("fault %s: %s (%.1fs)", name, detail, time.Since(start).Seconds())
		sleep(ctx, time.Duration(1500+f.r.IntN(2500))*time.Millisecond)
	}
}

// recover heals and revives everything after a fault went wrong.
func (f *faulter) recover(ctx context.Context) {
	if err := f.c.heal(); err != nil {
		f.log("recover: heal: %v", err)
	}
	for _, err := range f.c.reviveAll() {
		f.log("recover: %v", err)
	}
	_, _ = f.c.waitLeader(ctx, 30*time.Second)
}

func (f *faulter) leaderAndFollower(ctx context.Context) (*node, *node, error) {
	l, err := f.c.waitLeader(ctx, 20*time.Second)
	if err != nil {
		return nil, nil, err
	}
	var fs []*node
	for _, n := range f.c.serving() {
		if n != l {
			fs = append(fs, n)
		}
	}
	if len(fs) == 0 {
		return l, nil, errors.New("no serving follower")
	}
	return l, fs[f.r.IntN(len(fs))], nil
}

func (f *faulter) hold(ctx context.Context, lo, hi time.Duration) time.Duration {
	d := lo + time.Duration(f.r.Int64N(int64(hi-lo)+1))
	sleep(ctx, d)
	return d
}

func (f *faulter) inject(ctx context.Context, name string) (string, error) {
	l, fo, err := f.leaderAndFollower(ctx)
	if err != nil {
		return "precondition", err
	}
	switch name {
	case "crash-leader", "crash-follower":
		n := l
		if name == "crash-follower" {
			n = fo
		}
		if err := f.c.kill(n); err != nil {
			return "kill -9 " + n.id, err
		}
		d := f.hold(ctx, time.Second, 5*time.Second)
		return fmt.Sprintf("kill -9 %s, restarted after %s", n.id, d.Round(time.Millisecond)), f.c.restart(n)

	case "pause-leader", "pause-follower":
		n := l
		if name == "pause-follower" {
			n = fo
		}
		if err := f.c.pause(n); err != nil {
			return "SIGSTOP " + n.id, err
		}
		d := f.hold(ctx, electionWait, 2*electionWait)
		return fmt.Sprintf("SIGSTOP %s for %s, then SIGCONT", n.id, d.Round(time.Millisecond)), f.c.resume(n)

	case "pause-leader-long":
		return f.pauseLeaderLong(ctx, l)

	case "stale-read":
		return f.staleRead(ctx, l)

	case "partition-leader", "partition-follower":
		n := l
		if name == "partition-follower" {
			n = fo
		}
		var pairs [][2]*node
		for _, m := range f.c.members() {
			if m != n {
				pairs = append(pairs, [2]*node{n, m})
			}
		}
		if err := f.c.partition(pairs, []*node{n}); err != nil {
			return "partition " + n.id, err
		}
		d := f.hold(ctx, electionWait, 3*electionWait)
		how := "iptables in its namespace; clients still reach it"
		if f.c.docker {
			how = "docker network disconnect; clients cannot reach it either"
		}
		return fmt.Sprintf("%s cut off from the other nodes (minority, %s) for %s; healed", n.id, how, d.Round(time.Millisecond)), f.c.heal()

	case "partition-bridge":
		ms := f.c.members()
		if len(ms) < 3 {
			return "bridge", errors.New("fewer than 3 members")
		}
		bridge := ms[f.r.IntN(len(ms))]
		var others []*node
		for _, m := range ms {
			if m != bridge {
				others = append(others, m)
			}
		}
		var pairs [][2]*node
		for i := range others {
			for j := i + 1; j < len(others); j++ {
				pairs = append(pairs, [2]*node{others[i], others[j]})
			}
		}
		if err := f.c.partition(pairs, nil); err != nil {
			return "bridge", err
		}
		d := f.hold(ctx, electionWait, 3*electionWait)
		return fmt.Sprintf("bridge through %s (leader %s): the others cannot reach each other, for %s; healed", bridge.id, l.id, d.Round(time.Millisecond)), f.c.heal()

	case "slow-net":
		n := fo
		if f.r.IntN(2) == 0 {
			n = l
		}
		how, err := f.c.topo.slow(n.id, f.r)
		if err != nil {
			return "slow " + n.id, err
		}
		d := f.hold(ctx, 4*time.Second, 10*time.Second)
		return fmt.Sprintf("%s: %s for %s; cleared", n.id, how, d.Round(time.Millisecond)), f.c.heal()

	case "snapshot-catchup":
		return f.snapshotCatchup(ctx, l, fo)

	case "disk-corrupt":
		return f.diskCorrupt(ctx, fo)

	case "membership":
		return f.membership(ctx, l)

	case "remove-partitioned":
		return f.removePartitioned(ctx, fo)

	case "slow-watcher":
		before := f.w.slowCuts.Load()
		f.w.slowMode.Store(true)
		burst := f.fill(ctx, 1000)
		d := f.hold(ctx, 4*time.Second, 8*time.Second)
		f.w.slowMode.Store(false)
		return fmt.Sprintf("watcher w-slow sleeps 100ms per message for %s while %d extra writes land; cut off as slow %d times (it resumes)",
			d.Round(time.Millisecond), burst, f.w.slowCuts.Load()-before), nil
	}
	return name, fmt.Errorf("unknown fault %q", name)
}

// pauseLeaderLong stops the leader for longer than the TTL while the lease
// owners go on renewing, over KeepAlive streams too: the streams connected
// to it queue their renewals, a newer leader expires those instances, and
// when the old leader resumes it must not acknowledge what was queued
// (checker X judges every acknowledged renewal from its send time). The
// detail says what became of the renewals sent to it while it was stopped.
func (f *faulter) pauseLeaderLong(ctx context.Context, l *node) (string, error) {
	streams := f.w.streamsOn(l)
	if err := f.c.pause(l); err != nil {
		return "SIGSTOP " + l.id, err
	}
	from := f.rec.now()
	lo, hi := longPause(f.cfg.TTL)
	d := f.hold(ctx, lo, hi)
	to := f.rec.now()
	if err := f.c.resume(l); err != nil {
		return "SIGCONT " + l.id, err
	}
	// Let the resumed node answer what it had queued, and the owners see it.
	sleep(ctx, 2*time.Second)
	stop, cont := "SIGSTOP", "SIGCONT"
	if f.c.docker {
		stop, cont = "docker pause", "docker unpause"
	}
	return fmt.Sprintf("%s leader %s for %s (TTL %s, %d KeepAlive streams on it), then %s; stream renewals sent to it while stopped: %s",
		stop, l.id, d.Round(time.Millisecond), f.cfg.TTL, streams, cont, f.w.streamRenewals(l, from, to)), nil
}

// staleRead is the deposed-leader scenario: pause the leader past the
// election timeout, write through the new leader, resume the old one and
// read from it at once, from several clients. A node that serves a
// linearizable read from local state answers without the write.
func (f *faulter) staleRead(ctx context.Context, old *node) (string, error) {
	if err := f.c.pause(old); err != nil {
		return "SIGSTOP " + old.id, err
	}
	deadline := time.Now().Add(15 * time.Second)
	var nl *node
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if nl = f.c.leader(ctx); nl != nil && nl != old {
			break
		}
		nl = nil
		time.Sleep(100 * time.Millisecond)
	}
	if nl == nil {
		_ = f.c.resume(old)
		return fmt.Sprintf("SIGSTOP %s: no new leader", old.id), errors.New("no new leader within 15s")
	}
	client := f.w.clientID()
	writes := 0
	for i := 0; i < 6; i++ {
		svc := f.w.services[f.r.IntN(len(f.w.services))]
		id := fmt.Sprintf("i%d", f.r.IntN(f.cfg.IDs))
		var op checker.Op
		if f.r.IntN(3) == 0 {
			op = f.w.deregister(ctx, client, nl, svc, id)
		} else {
			op = f.w.register(ctx, client, nl, svc, id, 0)
		}
		if op.Outcome == checker.OutcomeOK {
			writes++
		}
	}
	if err := f.c.resume(old); err != nil {
		return "SIGCONT " + old.id, err
	}
	// Read from the old leader at once, from fresh clients (one call each
	// in flight), several rounds.
	served, refused := 0, 0
	for round := 0; round < 3; round++ {
		done := make(chan bool, 2*len(f.w.services))
		for _, svc := range f.w.services {
			for k := 0; k < 2; k++ {
				go func() {
					_, resp := f.w.get(ctx, f.w.clientID(), old, svc, readTimeout)
					done <- resp != nil
				}()
			}
		}
		for i := 0; i < cap(done); i++ {
			if <-done {
				served++
			} else {
				refused++
			}
		}
	}
	return fmt.Sprintf("SIGSTOP leader %s, %d writes acknowledged by new leader %s, SIGCONT, %d immediate reads from %s answered, %d refused",
		old.id, writes, nl.id, served, old.id, refused), nil
}

// fill writes n instances outside the checked namespace as fast as it can
// (unrecorded: nothing checks them, they only move the Raft log along).
func (f *faulter) fill(ctx context.Context, n int) int {
	ok := 0
	for i := 0; i < n && ctx.Err() == nil; i++ {
		nd := f.c.pick(f.r)
		cctx, cancel := context.WithTimeout(ctx, writeTimeout)
		_, err := nd.reg.Register(cctx, fillRequest(i))
		cancel()
		if err == nil {
			ok++
		}
	}
	return ok
}

// snapshotCatchup stops a follower, writes more than the snapshot threshold
// plus trailing logs, and restarts it: the leader no longer has the entries
// it missed and must send a snapshot.
func (f *faulter) snapshotCatchup(ctx context.Context, l, fo *node) (string, error) {
	if err := f.c.kill(fo); err != nil {
		return "kill " + fo.id, err
	}
	before, _ := f.c.status(ctx, l, false)
	n := f.fill(ctx, 2*(f.cfg.SnapshotThreshold+f.cfg.TrailingLogs))
	// The leader snapshots on its own schedule (--snapshot-interval 1s).
	sleep(ctx, 2500*time.Millisecond)
	after, _ := f.c.status(ctx, l, false)
	logBefore := fileSize(fo.logPath)
	if err := f.c.restart(fo); err != nil {
		return "restart " + fo.id, err
	}
	// Wait until it has caught up.
	deadline := time.Now().Add(30 * time.Second)
	caught := false
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, err := f.c.status(ctx, fo, false)
		lst, lerr := f.c.status(ctx, l, false)
		if err == nil && lerr == nil && st.AppliedIndex >= lst.CommitIndex-min(lst.CommitIndex, 5) {
			caught = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	installed := logMentions(fo.logPath, logBefore, "installed remote snapshot")
	detail := fmt.Sprintf("kill -9 follower %s, %d writes (leader index %d→%d), restart; caught up: %v; snapshot install in its log: %v",
		fo.id, n, before.GetAppliedIndex(), after.GetAppliedIndex(), caught, installed)
	if !installed {
		f.rec.problem("snapshot-catchup: no snapshot install seen in %s's log", fo.id)
	}
	if !caught {
		return detail, errors.New("follower did not catch up within 30s")
	}
	return detail, nil
}

// diskCorrupt stops a follower, truncates its newest snapshot, and
// restarts it: it must either fall back (older snapshot, or the leader
// sends a new one) and converge, or refuse to start with a clear error. A
// refused node is wiped, removed and joined again as a new member.
func (f *faulter) diskCorrupt(ctx context.Context, fo *node) (string, error) {
	if err := f.c.kill(fo); err != nil {
		return "kill " + fo.id, err
	}
	snaps, _ := filepath.Glob(filepath.Join(fo.dataDir, "snapshots", "*", "state.bin"))
	target := ""
	what := ""
	if len(snaps) > 0 {
		sort.Strings(snaps)
		target = snaps[len(snaps)-1]
		fi, _ := os.Stat(target)
		if err := os.Truncate(target, fi.Size()/2); err != nil {
			return "truncate", err
		}
		what = fmt.Sprintf("truncated %s to half (%d bytes)", rel(fo.dataDir, target), fi.Size()/2)
	} else if segs, _ := filepath.Glob(filepath.Join(fo.dataDir, "wal", "*.wal")); len(segs) > 0 {
		// The WAL log store: garble the newest segment past its header.
		sort.Strings(segs)
		target = segs[len(segs)-1]
		fh, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			return "open " + rel(fo.dataDir, target), err
		}
		_, err = fh.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 1024)), 64)
		fh.Close()
		if err != nil {
			return "corrupt " + rel(fo.dataDir, target), err
		}
		what = fmt.Sprintf("overwrote 4KiB of %s past its header", rel(fo.dataDir, target))
	} else {
		target = filepath.Join(fo.dataDir, "raft.db")
		fh, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			return "open raft.db", err
		}
		// Garble bytes past bolt's meta pages.
		_, err = fh.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 1024)), 3*4096)
		fh.Close()
		if err != nil {
			return "corrupt raft.db", err
		}
		what = "overwrote 4KiB of raft.db past its meta pages"
	}
	logBefore := fileSize(fo.logPath)
	if err := f.c.restart(fo); err != nil {
		return what, err
	}
	select {
	case <-fo.p.exited:
	case <-time.After(8 * time.Second):
	}
	if fo.p.alive() {
		return fmt.Sprintf("%s of stopped follower %s; it restarted and serves (the final hashes check its state)", what, fo.id), nil
	}
	tail := logTail(fo.logPath, logBefore, 3)
	if logMentions(fo.logPath, logBefore, "panic:") {
		f.rec.problem("FINDING disk-corrupt: %s panicked on restart after %s instead of refusing with a clear error (see %s)", fo.id, what, fo.logPath)
	}
	f.c.mu.Lock()
	fo.up = false
	f.c.mu.Unlock()
	detail := fmt.Sprintf("%s of stopped follower %s; it refused to start: %q", what, fo.id, tail)
	if err := f.c.remove(ctx, fo.id); err != nil {
		return detail, err
	}
	if err := f.joinVoter(ctx, fo); err != nil {
		return detail, err
	}
	return detail + "; wiped, removed and joined again", nil
}

// membership adds the spare slot as a voter, removes the leader, and wipes
// the removed node, which becomes the next spare: the cluster keeps its size.
func (f *faulter) membership(ctx context.Context, l *node) (string, error) {
	var spare *node
	for _, n := range f.c.nodes {
		f.c.mu.Lock()
		free := !n.member && !n.up
		f.c.mu.Unlock()
		if free {
			spare = n
			break
		}
	}
	if spare == nil {
		return "membership", errors.New("no spare slot")
	}
	if err := f.joinVoter(ctx, spare); err != nil {
		return "join " + spare.id, err
	}
	sleep(ctx, time.Second)
	if err := f.c.remove(ctx, l.id); err != nil {
		return fmt.Sprintf("added %s; remove leader %s", spare.id, l.id), err
	}
	f.c.mu.Lock()
	l.member = false
	f.c.mu.Unlock()
	nl, _ := f.c.waitLeader(ctx, 20*time.Second)
	if err := f.c.kill(l); err != nil {
		return "kill removed " + l.id, err
	}
	_ = os.RemoveAll(l.dataDir)
	ids, _ := f.c.voters(ctx)
	return fmt.Sprintf("joined %s as a voter, removed leader %s (new leader %s), stopped and wiped it; voters now %v",
		spare.id, l.id, idOf(nl), ids), nil
}

// removePartitioned cuts a follower off, removes it from the configuration
// while it is cut off, heals, then wipes it and joins it again.
func (f *faulter) removePartitioned(ctx context.Context, fo *node) (string, error) {
	var pairs [][2]*node
	for _, m := range f.c.members() {
		if m != fo {
			pairs = append(pairs, [2]*node{fo, m})
		}
	}
	if err := f.c.partition(pairs, []*node{fo}); err != nil {
		return "partition " + fo.id, err
	}
	sleep(ctx, electionWait)
	if err := f.c.remove(ctx, fo.id); err != nil {
		_ = f.c.heal()
		return "remove " + fo.id, err
	}
	f.c.mu.Lock()
	fo.member = false
	f.c.mu.Unlock()
	sleep(ctx, time.Second)
	if err := f.c.heal(); err != nil {
		return "heal", err
	}
	// A removed node that is healed must not disrupt the cluster; give it
	// a moment to try, then wipe it and bring it back as a new member.
	sleep(ctx, 2*time.Second)
	if err := f.c.kill(fo); err != nil {
		return "kill " + fo.id, err
	}
	if err := f.joinVoter(ctx, fo); err != nil {
		return "join " + fo.id, err
	}
	ids, _ := f.c.voters(ctx)
	return fmt.Sprintf("cut off %s, removed it while cut off, healed, wiped and joined it again; voters now %v", fo.id, ids), nil
}

// joinVoter starts n with a fresh data directory joining the cluster and
// waits until the leader lists it as a voter: autopilot stages it as a
// non-voter and promotes it once it has been healthy for the
// stabilization time (10 s by default), so the wait allows for that.
func (f *faulter) joinVoter(ctx context.Context, n *node) error {
	if err := f.c.join(n); err != nil {
		return err
	}
	const within = 60 * time.Second
	deadline := time.Now().Add(within)
	for {
		ids, err := f.c.voters(ctx)
		if err == nil && contains(ids, n.id) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not a voter within %v (voters %v, %v)", n.id, within, ids, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func idOf(n *node) string {
	if n == nil {
		return "none"
	}
	return n.id
}

func rel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil {
		return r
	}
	return p
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logMentions reports whether the log written after offset mentions word.
func logMentions(path string, offset int64, word string) bool {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return false
	}
	return strings.Contains(strings.ToLower(string(b[offset:])), word)
}

func logTail(path string, offset int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return lastLines(string(b[offset:]), n)
}

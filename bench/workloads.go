package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// percentile of sorted durations, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

// writeStats is one closed-loop write phase.
type writeStats struct {
	OpsPerS float64 `json:"ops_per_s"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Errors  int64   `json:"errors"`
	// FirstError is the first failed write's error.
	FirstError string `json:"first_error,omitempty"`
}

// runWrites runs writers concurrent writers, each with one write in
// flight, to the leader (or spread over every node) for d.
func (b *runner) runWrites(ctx context.Context, s system, writers int, lease, spread bool, d time.Duration) (writeStats, error) {
	leader, err := s.leader(ctx)
	if err != nil {
		return writeStats{}, err
	}
	if lease {
		if err := s.grantLeases(ctx, b.keys); err != nil {
			return writeStats{}, err
		}
	}
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		seq, failed atomic.Int64
		firstErr    atomic.Value
		lat         = make([][]time.Duration, writers)
		wg          sync.WaitGroup
	)
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := leader
			if spread {
				node = w % len(s.members())
			}
			// No call starts after the run's deadline, even before the
			// run's own timer marks it done.
			deadline, _ := runCtx.Deadline()
			over := func() bool { return runCtx.Err() != nil || !time.Now().Before(deadline) }
			for !over() {
				n := int(seq.Add(1))
				// A call has a deadline of its own, not the run's: one
				// still out when the run ends finishes and counts, on both
				// systems alike. Tied to the run's end, a Roster write
				// would have been answered "outcome unknown" a little
				// before it (a server answers before its caller's
				// deadline) and counted as failing, where etcd's fails at
				// the deadline itself and was not counted.
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				_, err := s.write(cctx, node, w, n%b.keys, n, lease)
				dt := time.Since(t0)
				ccancel()
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				lat[w] = append(lat[w], dt)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	st := writeStats{OpsPerS: float64(len(all)) / elapsed.Seconds(), P50: percentile(all, 0.5), P99: percentile(all, 0.99), Errors: failed.Load()}
	if e, ok := firstErr.Load().(string); ok {
		st.FirstError = e
	}
	return st, nil
}

// watchStats is one watch fan-out phase.
type watchStats struct {
	Writes  int     `json:"writes"`
	LastP50 float64 `json:"last_watcher_p50_ms"`
	LastP99 float64 `json:"last_watcher_p99_ms"`
	EachP50 float64 `json:"delivery_p50_ms"`
	EachP99 float64 `json:"delivery_p99_ms"`
}

// runWatch opens watchers streams spread over every node (over conns
// connections per node), then makes writes writes to the leader one at a
// time, each awaited by every watcher. Latencies count from the write's
// acknowledgement.
func (b *runner) runWatch(ctx context.Context, s system, watchers, writes int) (watchStats, error) {
	leader, err := s.leader(ctx)
	if err != nil {
		return watchStats{}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type arrival struct {
		rev uint64
		at  time.Time
	}
	// Each watcher keeps its own arrivals and its own highest revision
	// seen; the writer waits for a round (one write) to be claimed by
	// every watcher. No lock is shared between watchers: with one, every
	// arrival would wait for the others' and for the writer's scan, and
	// the last watcher's time would measure the harness as much as the
	// system.
	type round struct {
		rev     uint64
		claimed []atomic.Bool
		left    atomic.Int64
		done    chan struct{}
	}
	var (
		seen    = make([]atomic.Uint64, watchers)
		got     = make([][]arrival, watchers)
		cur     atomic.Pointer[round]
		ready   sync.WaitGroup
		wg      sync.WaitGroup
		errOnce sync.Once
		werr    error
	)
	claim := func(r *round, i int) {
		if r != nil && seen[i].Load() >= r.rev && r.claimed[i].CompareAndSwap(false, true) && r.left.Add(-1) == 0 {
			close(r.done)
		}
	}
	ready.Add(watchers)
	for i := range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			once := sync.Once{}
			err := s.watch(wctx, i%len(s.members()), i/len(s.members()), func() { once.Do(ready.Done) }, func(revs []uint64) {
				now := time.Now()
				hi := seen[i].Load()
				for _, r := range revs {
					got[i] = append(got[i], arrival{r, now})
					hi = max(hi, r)
				}
				// Seen is stored before the round is read, and the writer
				// stores the round before it reads seen: one of the two
				// claims this watcher's part.
				seen[i].Store(hi)
				claim(cur.Load(), i)
			})
			once.Do(ready.Done)
			if err != nil && wctx.Err() == nil {
				errOnce.Do(func() { werr = err })
				seen[i].Store(^uint64(0))
				claim(cur.Load(), i)
			}
		}()
	}
	ready.Wait()
	waitAll := func(rev uint64) bool {
		r := &round{rev: rev, claimed: make([]atomic.Bool, watchers), done: make(chan struct{})}
		r.left.Store(int64(watchers))
		cur.Store(r)
		for i := range watchers {
			claim(r, i)
		}
		timer := time.NewTimer(30 * time.Second)
		defer timer.Stop()
		select {
		case <-r.done:
			return true
		case <-timer.C:
			return false
		case <-wctx.Done():
			return false
		}
	}
	acks := map[uint64]time.Time{}
	for n := 0; n <= writes; n++ {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		rev, err := s.write(cctx, leader, 0, n%b.keys, n, false)
		ack := time.Now()
		ccancel()
		if err != nil {
			return watchStats{}, fmt.Errorf("write: %w", err)
		}
		if n > 0 {
			// The first write only proves every stream live.
			acks[rev] = ack
		}
		if !waitAll(rev) {
			return watchStats{}, fmt.Errorf("revision %d did not reach every watcher within 30s (%v)", rev, werr)
		}
	}
	cancel()
	wg.Wait()
	var each, lasts []time.Duration
	last := map[uint64]time.Duration{}
	for _, g := range got {
		for _, a := range g {
			ack, ok := acks[a.rev]
			if !ok {
				continue
			}
			d := max(a.at.Sub(ack), 0)
			each = append(each, d)
			last[a.rev] = max(last[a.rev], d)
		}
	}
	for _, d := range last {
		lasts = append(lasts, d)
	}
	slices.Sort(each)
	slices.Sort(lasts)
	return watchStats{Writes: writes, LastP50: percentile(lasts, 0.5), LastP99: percentile(lasts, 0.99),
		EachP50: percentile(each, 0.5), EachP99: percentile(each, 0.99)}, nil
}

// readStats is the read-after-write phase.
type readStats struct {
	LeaderP50   float64 `json:"leader_read_p50_ms"`
	FollowerP50 float64 `json:"follower_read_p50_ms"`
	FollowerP99 float64 `json:"follower_read_p99_ms"`
}

// runReadAfterWrite writes record 0 on the leader, then at once reads it
// linearizably on a follower; and the same with the read on the leader.
func (b *runner) runReadAfterWrite(ctx context.Context, s system, n int) (readStats, error) {
	leader, err := s.leader(ctx)
	if err != nil {
		return readStats{}, err
	}
	follower := (leader + 1) % len(s.members())
	measure := func(node int) ([]time.Duration, error) {
		var out []time.Duration
		for i := range n {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := s.write(cctx, leader, 0, 0, i, false)
			if err == nil {
				t0 := time.Now()
				err = s.read(cctx, node, 0)
				out = append(out, time.Since(t0))
			}
			cancel()
			if err != nil {
				return nil, err
			}
		}
		slices.Sort(out)
		return out, nil
	}
	l, err := measure(leader)
	if err != nil {
		return readStats{}, err
	}
	f, err := measure(follower)
	if err != nil {
		return readStats{}, err
	}
	return readStats{LeaderP50: percentile(l, 0.5), FollowerP50: percentile(f, 0.5), FollowerP99: percentile(f, 0.99)}, nil
}

// memoryStats is the memory phase.
type memoryStats struct {
	Keys        int     `json:"keys"`
	BytesPerKey float64 `json:"bytes_per_key"`
	// PerNode: anon RSS delta per key of each member.
	PerNode []float64 `json:"per_node_bytes_per_key"`
	// HeapBytesPerKey: the growth of the live Go heap, measured right
	// after a forced collection, per key; the largest member's.
	HeapBytesPerKey float64 `json:"heap_bytes_per_key"`
	// HeapPerNode: the same for each member.
	HeapPerNode []float64 `json:"per_node_heap_bytes_per_key"`
	// FilePerNode: the growth of each member's resident pages of mapped
	// files (RssFile) per key: data kept in the page cache, outside the
	// anon RSS.
	FilePerNode []float64 `json:"per_node_file_bytes_per_key"`
}

// runMemory loads n new records with 64 writers and reports, per record,
// the growth of every member's anon RSS and of its live heap; each figure
// is the largest member's.
//
// The anon RSS is what the operating system sees, but it also says when
// each Go heap last collected: with the default GOGC a heap holds up to
// twice its live objects before a collection, and freed pages go back to
// the system only slowly. The live heap is read right after a collection
// forced on every member (liveHeap), before and after the load, so it
// counts only what the records keep alive.
//
// Every member is restarted first and the phase waits until each has
// applied the whole log again, so it starts from processes that hold the
// state and none of the garbage of the phases before: otherwise the figure
// says where an earlier phase left each heap (a collection during the load
// can even shrink it) more than what the records cost.
func (b *runner) runMemory(ctx context.Context, s system, n int) (memoryStats, error) {
	for _, m := range s.members() {
		m.kill()
	}
	for _, m := range s.members() {
		if err := m.start(); err != nil {
			return memoryStats{}, err
		}
	}
	if err := settle(ctx, s); err != nil {
		return memoryStats{}, err
	}
	leader, err := s.leader(ctx)
	if err != nil {
		return memoryStats{}, err
	}
	if err := caughtUp(ctx, s, leader); err != nil {
		return memoryStats{}, err
	}
	var before, heapBefore, fileBefore []int64
	for i, m := range s.members() {
		f, err := fileRSS(m.pid())
		if err != nil {
			return memoryStats{}, err
		}
		fileBefore = append(fileBefore, f)
		h, err := s.liveHeap(ctx, i)
		if err != nil {
			return memoryStats{}, err
		}
		heapBefore = append(heapBefore, h)
		v, err := anonRSS(m.pid())
		if err != nil {
			return memoryStats{}, err
		}
		before = append(before, v)
	}
	const offset = 10_000_000 // keys apart from the other phases'
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= n || ctx.Err() != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := s.write(cctx, leader, w, offset+k, 0, false)
				cancel()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return memoryStats{}, err
	}
	if err := caughtUp(ctx, s, leader); err != nil {
		return memoryStats{}, err
	}
	st := memoryStats{Keys: n}
	for i, m := range s.members() {
		v, err := anonRSS(m.pid())
		if err != nil {
			return memoryStats{}, err
		}
		per := float64(v-before[i]) / float64(n)
		st.PerNode = append(st.PerNode, per)
		f, err := fileRSS(m.pid())
		if err != nil {
			return memoryStats{}, err
		}
		st.FilePerNode = append(st.FilePerNode, float64(f-fileBefore[i])/float64(n))
		st.BytesPerKey = max(st.BytesPerKey, per)
		// After the RSS: the forced collection would shrink it.
		h, err := s.liveHeap(ctx, i)
		if err != nil {
			return memoryStats{}, err
		}
		hper := float64(h-heapBefore[i]) / float64(n)
		st.HeapPerNode = append(st.HeapPerNode, hper)
		st.HeapBytesPerKey = max(st.HeapBytesPerKey, hper)
	}
	if st.BytesPerKey <= 0 {
		return memoryStats{}, fmt.Errorf("%s: no member's anon RSS grew with %d records (%v bytes a record): the load is too small to measure; raise -mem-keys", s.name(), n, st.PerNode)
	}
	return st, nil
}

// caughtUp waits until every member has applied what the leader has, then
// gives the memory 3 s to settle.
func caughtUp(ctx context.Context, s system, leader int) error {
	la, err := s.applied(ctx, leader)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for i := range s.members() {
		for {
			a, err := s.applied(ctx, i)
			if err == nil && a >= la {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s: member %d did not catch up with the leader", s.name(), i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(3 * time.Second)
	return nil
}

// failoverStats is the failover phase.
type failoverStats struct {
	RoundsMS []float64 `json:"rounds_ms"`
	MedianMS float64   `json:"median_ms"`
	MaxMS    float64   `json:"max_ms"`
}

// runFailover kills the leader with kill -9 rounds times, timing each
// until a write to a survivor succeeds, and restarts the killed member.
func (b *runner) runFailover(ctx context.Context, s system, rounds int) (failoverStats, error) {
	var st failoverStats
	var times []time.Duration
	for r := range rounds {
		if err := waitLeader(ctx, s); err != nil {
			return st, err
		}
		leader, err := s.leader(ctx)
		if err != nil {
			return st, err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = s.write(cctx, leader, 0, 0, r, false)
		cancel()
		if err != nil {
			return st, fmt.Errorf("write before the kill: %w", err)
		}
		m := s.members()[leader]
		m.kill()
		// A write is sent to a survivor every 20 ms, each with its own
		// 2 s limit, without waiting for the one before: a system whose
		// followers hold a write until there is a leader is timed as
		// finely as one that fails it at once.
		took, err := firstWrite(ctx, s, leader, r)
		if err != nil {
			return st, err
		}
		times = append(times, took)
		st.RoundsMS = append(st.RoundsMS, float64(took)/float64(time.Millisecond))
		b.logf("%s failover round %d/%d: %s", s.name(), r+1, rounds, took.Round(time.Millisecond))
		if err := m.start(); err != nil {
			return st, err
		}
		if err := waitLeader(ctx, s); err != nil {
			return st, err
		}
		// The restarted member catches up before the next round.
		nl, err := s.leader(ctx)
		if err != nil {
			return st, err
		}
		target, err := s.applied(ctx, nl)
		if err != nil {
			return st, err
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			a, err := s.applied(ctx, leader)
			if err == nil && a >= target {
				break
			}
			if time.Now().After(deadline) {
				return st, fmt.Errorf("%s did not catch up after its restart", m.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	slices.Sort(times)
	st.MedianMS = percentile(times, 0.5)
	st.MaxMS = percentile(times, 1)
	return st, nil
}

// firstWrite sends a write to a survivor of the killed leader every 20 ms
// until one succeeds and returns how long after the kill that one was sent
// and acknowledged.
func firstWrite(ctx context.Context, s system, killed, r int) (time.Duration, error) {
	t0 := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ok := make(chan time.Duration, 1)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := 0; ; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, ccancel := context.WithTimeout(wctx, 2*time.Second)
			defer ccancel()
			if _, err := s.write(cctx, (killed+1+i%2)%3, i, 0, r, false); err == nil {
				select {
				case ok <- time.Since(t0):
				default:
				}
			}
		}()
		select {
		case d := <-ok:
			return d, nil
		case <-wctx.Done():
			return 0, fmt.Errorf("no write within 2m of killing the leader")
		case <-tick.C:
		}
	}
}

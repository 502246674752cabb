package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/store"
)

// waitFor waits for ch to yield, failing the test after a deadline.
func waitFor[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// readyLeader polls, as what, until one of nodes other than except (nil
// for none) leads with its barrier through, and returns it.
func readyLeader(t testing.TB, what string, nodes []*Node, except *Node) *Node {
	t.Helper()
	var leader *Node
	poll(t, what, func() bool {
		for _, n := range nodes {
			if n != except && n.LeaderReady() {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// cutOff disconnects trs[i] from the other transports, both ways.
func cutOff(trs []*raft.InmemTransport, i int) {
	trs[i].DisconnectAll()
	for j, tr := range trs {
		if j != i {
			tr.Disconnect(trs[i].LocalAddr())
		}
	}
}

// TestRequestClockStopWakesWritesOfATermThatNeverStarted: a term that ends
// before its barrier went through never started the clock; its end still
// wakes the writes waiting for it, so they find the node no longer leads.
func TestRequestClockStopWakesWritesOfATermThatNeverStarted(t *testing.T) {
	c := newRequestClock(newFakeClock())
	if _, ok, _ := c.stamp(); ok {
		t.Fatal("a stamp before the clock started")
	}
	_, _, changed := c.stamp()
	c.stop()
	select {
	case <-changed:
	default:
		t.Fatal("the end of a term that never started its clock did not wake a waiting write")
	}
}

// TestRequestWaitingForABarrierEndsWithTheTerm: a write with a request id
// that reaches a leader before its barrier is through waits for it. When
// that leader loses leadership before its barrier, the write ends at once
// with an error saying nothing was applied (ErrNotLeader), so it is retried
// at the new leader; it used to wait for its whole context (the API's hold
// timeout) and then read as "outcome unknown". A wait that ends on its
// context says nothing was applied either (ErrLeaderNotReady).
func TestRequestWaitingForABarrierEndsWithTheTerm(t *testing.T) {
	var held [3]atomic.Bool
	entered := make(chan int, 1)
	release := make(chan struct{})
	waiting := make(chan struct{}, 1)
	nodes, trs := startInmemClusterWith(t, func(i int, cfg *Config) {
		cfg.TestHooks.FSM.BeforeApply = func(uint64) {
			if held[i].Load() {
				select {
				case entered <- i:
				default:
				}
				<-release
			}
		}
		cfg.TestHooks.RequestWait = func() {
			select {
			case waiting <- struct{}{}:
			default:
			}
		}
	}, realClock{}, realClock{}, realClock{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })

	old := readyLeader(t, "a ready leader", nodes, nil)
	fi := 0
	for nodes[fi] == old {
		fi++
	}
	f := nodes[fi]
	// Before the nodes shut down: raft drops a barrier still queued for the
	// state machine when it shuts down, and f's leader loop would wait for
	// it for ever.
	t.Cleanup(func() {
		releaseOnce.Do(func() { close(release) })
		poll(t, f.ID()+"'s state machine to catch up", func() bool { return f.raft.Stats()["fsm_pending"] == "0" })
	})
	inst := func(id string) *store.Instance {
		return &store.Instance{Namespace: "default", Service: "web", ID: id, Address: "10.0.0.1", Port: 80, Weight: 100}
	}
	ctx := context.Background()

	// f's state machine stops at the next entry, so once it leads, its
	// barrier cannot go through.
	held[fi].Store(true)
	if _, err := old.Register(ctx, inst("a"), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, f.ID()+"'s state machine to hold an entry", entered)
	poll(t, f.ID()+" to lead", func() bool {
		if f.IsLeader() {
			return true
		}
		if old.IsLeader() {
			_ = old.raft.LeadershipTransferToServer(raft.ServerID(f.ID()), raft.ServerAddress(f.RaftAddr())).Error()
		}
		return false
	})
	if f.LeaderReady() {
		t.Fatalf("%s is ready though its barrier cannot have gone through", f.ID())
	}

	// A write whose context ends while it waits: nothing was applied.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := f.Register(cancelled, inst("b"), "r-cancelled")
	if !errors.Is(err, ErrLeaderNotReady) || !errors.Is(err, context.Canceled) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("a write whose context ended while it waited for the barrier: %v; want %v wrapping %v",
			err, ErrLeaderNotReady, context.Canceled)
	}
	waitFor(t, "the cancelled write to have waited", waiting)

	// A write waiting when f loses leadership (cut off from the others)
	// before its barrier.
	wctx, wcancel := context.WithCancel(ctx)
	t.Cleanup(wcancel)
	done := make(chan error, 1)
	go func() {
		_, err := f.Register(wctx, inst("c"), "r-waiting")
		done <- err
	}()
	waitFor(t, "the write to wait for "+f.ID()+"'s barrier", waiting)
	cutOff(trs, fi)
	err = waitFor(t, "the waiting write to end once "+f.ID()+" lost leadership", done)
	if !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrLeaderNotReady)) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("the waiting write ended with %v; want %v (nothing was applied)", err, ErrNotLeader)
	}

	leader := readyLeader(t, "another node to lead", nodes, f)
	v := leader.Store().View()
	for _, id := range []string{"b", "c"} {
		if _, err := v.Instance(nil, inst(id).Key()); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("web/%s on the new leader %s: %v; want it never registered", id, leader.ID(), err)
		}
	}
	for _, id := range []string{"r-cancelled", "r-waiting"} {
		if r := v.Request(id); r != nil {
			t.Fatalf("the new leader remembers request %s (%s)", id, fmt.Sprint(r.Index))
		}
	}
}

// TestRequestClockGoesOnFromWhenTheNewestStampWasApplied: a term's base is
// the newest stamp this node applied plus the time since it applied it, so
// an idle gap before a failover is not lost; an older stamp applied later
// changes nothing; a node that applied none (restarted, nothing restored)
// goes on from the largest stamp the state remembers, and never below it.
func TestRequestClockGoesOnFromWhenTheNewestStampWasApplied(t *testing.T) {
	const gap = 30 * time.Minute
	first := func(c *requestClock) int64 {
		t.Helper()
		s, ok, _ := c.stamp()
		if !ok {
			t.Fatal("no stamp from a running clock")
		}
		return s
	}

	clk := newFakeClock()
	c := newRequestClock(clk)
	c.applied(5_000)
	clk.Advance(time.Minute)
	c.applied(4_000) // an older stamp (a restored backup, say)
	clk.Advance(gap - time.Minute)
	c.start(5_000, true)
	if s, want := first(c), 5_000+int64(gap); s != want {
		t.Fatalf("first stamp %d %s after the newest stamp was applied, want %d", s, gap, want)
	}
	c.stop()

	c = newRequestClock(clk)
	c.start(5_000, true)
	if s := first(c); s != 5_000 {
		t.Fatalf("first stamp %d with no stamp applied here, want the latest remembered, 5000", s)
	}
	c.stop()

	c = newRequestClock(clk)
	c.applied(5_000)
	clk.Advance(time.Second)
	c.start(9_000_000_000, true)
	if s := first(c); s != 9_000_000_000 {
		t.Fatalf("first stamp %d, want the latest remembered, 9000000000, which is larger", s)
	}
}

// jumpClock is the real clock moved on by a shared offset: minutes pass
// for the nodes (their monotonic readings move too) while raft, on its own
// timers, sees nothing.
type jumpClock struct {
	realClock
	offset *atomic.Int64
}

func (c jumpClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// TestRequestStampsGoOnAcrossAnIdleGapBeforeAFailover: nothing is written
// for 30 minutes, then the leader fails. The new leader's first stamp is at
// least 30 minutes past the last one, and no further than the time that
// really passed. It used to go on from the last stamp itself, 30 minutes
// behind real time; a leader of an older version, stamping its wall clock,
// would then have forgotten every remembered result at once.
func TestRequestStampsGoOnAcrossAnIdleGapBeforeAFailover(t *testing.T) {
	const gap = 30 * time.Minute
	var offset atomic.Int64
	clk := jumpClock{offset: &offset}
	nodes, trs := startInmemCluster(t, clk, clk, clk)
	old := readyLeader(t, "a ready leader", nodes, nil)
	ctx := context.Background()
	inst := func(addr string) *store.Instance {
		return &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: addr, Port: 80, Weight: 100}
	}
	before := clk.Now()
	if _, err := old.Register(ctx, inst("10.0.0.1"), "r1"); err != nil {
		t.Fatal(err)
	}
	poll(t, "every node to apply r1", func() bool {
		for _, n := range nodes {
			if n.Store().View().Request("r1") == nil {
				return false
			}
		}
		return true
	})
	s1 := old.Store().View().Request("r1").Time

	offset.Add(int64(gap)) // nothing happens for 30 minutes
	if err := old.Shutdown(); err != nil {
		t.Fatal(err)
	}
	oi := 0
	for nodes[oi] != old {
		oi++
	}
	cutOff(trs, oi)
	leader := readyLeader(t, "another node to lead", nodes, old)
	if _, err := leader.Register(ctx, inst("10.0.0.2"), "r2"); err != nil {
		t.Fatal(err)
	}
	passed := clk.Now().Sub(before)
	s2 := leader.Store().View().Request("r2").Time
	if d := time.Duration(s2 - s1); d < gap || d > passed {
		t.Fatalf("%s stamped r2 %s after r1, across an idle gap of %s before the failover; want at least the gap and at most the %s that passed",
			leader.ID(), d, gap, passed)
	}
}

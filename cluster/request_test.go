package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/store"
)

// skewedClock is the real clock with its wall readings set ahead by skew, as
// on a host whose clock is wrong; its monotonic readings, and so the
// durations measured with it, are the real ones.
type skewedClock struct {
	realClock
	skew time.Duration
}

func (c skewedClock) Now() time.Time { return time.Now().Add(c.skew) }

// startInmemCluster starts one in-memory voter per clock, n1, n2, ..., on
// connected in-memory transports, and shuts them down when the test ends.
func startInmemCluster(t *testing.T, clocks ...clock) ([]*Node, []*raft.InmemTransport) {
	t.Helper()
	return startInmemClusterWith(t, nil, clocks...)
}

// startInmemClusterWith is startInmemCluster with configure, when set,
// called on the i-th node's configuration before it starts.
func startInmemClusterWith(t *testing.T, configure func(i int, cfg *Config), clocks ...clock) ([]*Node, []*raft.InmemTransport) {
	t.Helper()
	var peers []Peer
	var trs []*raft.InmemTransport
	for i := range clocks {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("n%d.inmem:7421", i+1)))
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: string(addr)})
		trs = append(trs, tr)
	}
	for _, a := range trs {
		for _, b := range trs {
			if a != b {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
	var nodes []*Node
	for i, clk := range clocks {
		cfg := Config{NodeID: peers[i].ID, InMemory: true, Transport: trs[i], InitialCluster: peers, APIAddr: "127.0.0.1:1", clock: clk}
		cfg.UseFastTimeouts()
		if configure != nil {
			configure(i, &cfg)
		}
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Shutdown() })
		nodes = append(nodes, n)
	}
	return nodes, trs
}

// TestRetryAcrossAFailoverToALeaderWhoseClockRunsAhead: request results are
// forgotten by the age of their stamps. A new leader whose wall clock runs
// more than RequestResultAge (10 min) ahead of the old one's must not make
// its first request forget every result remembered before the failover:
// client 1's retry of r1, whose answer it never saw, must get r1's first
// result, not be applied again over client 2's later r2.
func TestRetryAcrossAFailoverToALeaderWhoseClockRunsAhead(t *testing.T) {
	ahead := skewedClock{skew: 11 * time.Minute}
	nodes, trs := startInmemCluster(t, realClock{}, ahead, ahead)
	old := nodes[0]
	poll(t, "n1, whose clock is right, to lead", func() bool {
		if old.LeaderReady() {
			return true
		}
		for _, n := range nodes[1:] {
			if n.LeaderReady() {
				_ = n.raft.LeadershipTransferToServer(raft.ServerID(old.ID()), raft.ServerAddress(old.RaftAddr())).Error()
			}
		}
		return false
	})
	ctx := context.Background()
	v1 := &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: "10.0.0.1", Port: 80, Weight: 100}
	v2 := &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: "10.0.0.2", Port: 80, Weight: 100}
	first, err := old.Register(ctx, v1, "r1")
	if err != nil {
		t.Fatal(err)
	}

	// n1 fails; n2 or n3, both 11 minutes ahead, takes over.
	if err := old.Shutdown(); err != nil {
		t.Fatal(err)
	}
	trs[0].DisconnectAll()
	for _, tr := range trs[1:] {
		tr.Disconnect(trs[0].LocalAddr())
	}
	var leader *Node
	poll(t, "n2 or n3 to lead", func() bool {
		for _, n := range nodes[1:] {
			if n.LeaderReady() {
				leader = n
				return true
			}
		}
		return false
	})
	if _, err := leader.Register(ctx, v2, "r2"); err != nil {
		t.Fatal(err)
	}
	again, err := leader.Register(ctx, v1, "r1")
	if err != nil {
		t.Fatal(err)
	}
	a, err := leader.Store().View().Instance(nil, v1.Key())
	if err != nil {
		t.Fatal(err)
	}
	if again != first || a.Address != v2.Address {
		t.Fatalf("the retry of r1 through %s was applied again: revision %d (first: %d), a is at %s, not r2's %s",
			leader.ID(), again, first, a.Address, v2.Address)
	}
}

// TestRequestClock: a term's stamps start at the largest remembered stamp
// (the wall clock when none is remembered), move with the clock's elapsed
// time, never go down, and wait while the clock is stopped.
func TestRequestClock(t *testing.T) {
	clk := newFakeClock()
	c := newRequestClock(clk)
	stamp := func() int64 {
		t.Helper()
		s, ok, _ := c.stamp()
		if !ok {
			t.Fatal("no stamp from a running clock")
		}
		return s
	}
	_, ok, changed := c.stamp()
	if ok {
		t.Fatal("a stamp before the clock started")
	}
	c.start(5_000, true)
	select {
	case <-changed:
	default:
		t.Fatal("starting did not wake a waiting write")
	}
	if s := stamp(); s != 5_000 {
		t.Fatalf("first stamp %d, want the latest remembered, 5000", s)
	}
	clk.Advance(3 * time.Second)
	if s, want := stamp(), 5_000+int64(3*time.Second); s != want {
		t.Fatalf("stamp %d 3s later, want %d", s, want)
	}
	clk.Advance(-2 * time.Second) // a clock that goes back (only a fake one can)
	if s, want := stamp(), 5_000+int64(3*time.Second); s != want {
		t.Fatalf("stamp %d after the clock went back, want it kept at %d", s, want)
	}

	c.stop()
	_, ok, changed = c.stamp()
	if ok {
		t.Fatal("a stamp from a stopped clock")
	}
	c.start(0, false) // nothing remembered: the wall clock
	<-changed
	if s, want := stamp(), clk.Now().UnixNano(); s != want {
		t.Fatalf("first stamp with nothing remembered %d, want the clock's %d", s, want)
	}
}

// TestRetryGetsItsFirstResultNotTheLimitPrecheck: the leader checks
// instance limits against its state before proposing, and so before the
// state machine looks the request id up. A retry of a registration that
// succeeded, arriving after the instance was removed and its service filled
// up, must get the first result back (RELIABILITY promise 7), not
// ErrLimitExceeded from the pre-check. A new request, or the same id asking
// for something else, is still refused by the pre-check, with nothing
// proposed.
func TestRetryGetsItsFirstResultNotTheLimitPrecheck(t *testing.T) {
	n := newReadyLeader(t)
	ctx := context.Background()
	lim := store.InstanceLimits{PerService: 1}
	inst := func(id, addr string) *store.Instance {
		return &store.Instance{Namespace: "default", Service: "web", ID: id, Address: addr, Port: 80, Weight: 100}
	}
	a := inst("a", "10.0.0.1")
	first, err := n.RegisterWithin(ctx, a, "r1", lim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Deregister(ctx, a.Key(), "r2"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.RegisterWithin(ctx, inst("b", "10.0.0.2"), "r3", lim); err != nil {
		t.Fatal(err)
	}
	again, err := n.RegisterWithin(ctx, a, "r1", lim)
	if err != nil || again != first {
		t.Fatalf("retry of r1: revision %d, error %v; want its first result, revision %d and no error", again, err, first)
	}
	if _, err := n.Store().View().Instance(nil, a.Key()); err == nil {
		t.Fatal("the retry registered a again")
	}

	applied := n.Applied()
	for _, c := range []struct {
		name, id string
		inst     *store.Instance
	}{
		{"a new request", "r4", inst("c", "10.0.0.3")},
		{"r1's id asking for another address", "r1", inst("a", "10.0.0.9")},
	} {
		if _, err := n.RegisterWithin(ctx, c.inst, c.id, lim); !errors.Is(err, store.ErrLimitExceeded) {
			t.Fatalf("%s beyond the limit: %v, want %v", c.name, err, store.ErrLimitExceeded)
		}
	}
	if got := n.Applied(); got != applied {
		t.Fatalf("refused registrations moved the applied index from %d to %d", applied, got)
	}
}

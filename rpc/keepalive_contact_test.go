package rpc_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
	"github.com/roster-registry/roster/store"
)

// contactPauses gives each node of a test cluster a ContactPause hook: a
// node whose pause is set stays Raft's leader (raft runs on untouched) but
// refuses lease renewals for want of quorum contact, as a leader in an
// asymmetric partition does while raft's own lease check stays satisfied.
type contactPauses map[string]*atomic.Int64

func (p contactPauses) configure(cfg *cluster.Config) {
	pause := new(atomic.Int64)
	p[cfg.NodeID] = pause
	cfg.TestHooks.ContactPause = func() time.Duration { return time.Duration(pause.Load()) }
}

func (p contactPauses) set(nd *testcluster.Node, d time.Duration) { p[nd.ID].Store(int64(d)) }

// refuseLong makes leader refuse renewals for want of quorum contact, as
// after a pause of an hour, and then refuse them for an hour more: a
// refused renewal of k begins the run of refusals, and the pause growing by
// an hour during the run makes it longer than the leader lease timeout.
// Only then does the leader end KeepAlive streams; the first renewal it
// refuses after the pause does not (cluster's
// TestLeaseRefusalsLongOnlyAfterALeaseTimeoutOfThem).
func (p contactPauses) refuseLong(t *testing.T, leader *testcluster.Node, k store.Key) {
	t.Helper()
	p.set(leader, time.Hour)
	if _, err := leader.Node.Heartbeat(testcluster.Ctx(t), k); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("renewal at the leader out of quorum contact: %v, want %v", err, cluster.ErrNotLeader)
	}
	p.set(leader, 2*time.Hour)
}

func wantNotLeader(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.Unavailable || rpc.Reason(err) != rpc.ReasonNotLeader {
		t.Errorf("%s ended with %v (reason %q), want Unavailable with %s", what, err, rpc.Reason(err), rpc.ReasonNotLeader)
	}
}

// leadershipMoved reports how leadership moved from leader, which led in
// term, and "" while it still leads in that term.
func leadershipMoved(leader *testcluster.Node, term uint64) string {
	if !leader.Node.IsLeader() || leader.Node.Term() != term {
		return fmt.Sprintf("%s led in term %d; now leads %v in term %d", leader.ID, term, leader.Node.IsLeader(), leader.Node.Term())
	}
	return ""
}

// playOnOneLeader plays round, a round of a test that needs one leader
// throughout, until it plays through: round returns how leadership moved,
// if it did during the round, and "" for a round played through. On a busy
// machine a leader may miss the 100 ms lease of the test timings and step
// down at any moment; a round in which leadership moved is played again,
// with the leader of then, up to 5 rounds in all.
func playOnOneLeader(t *testing.T, round func() (moved string)) {
	t.Helper()
	for n := 1; ; n++ {
		moved := round()
		if moved == "" {
			return
		}
		if n == 5 {
			t.Fatalf("leadership moved in each of %d rounds (last: %s); the test needs one leader throughout", n, moved)
		}
		t.Logf("round %d: leadership moved (%s); playing it again", n, moved)
	}
}

// TestKeepAliveEndsAtALeaderLongOutOfQuorumContact: a leader that has
// refused renewals for want of quorum contact for longer than the leader
// lease timeout ends a KeepAlive stream connected to it with NOT_LEADER,
// single renewals and batches alike, instead of answering each renewal
// NOT_LEADER and keeping the client there while its leases expire at the
// real leader. refuseLong makes the refusals long.
//
// It needs one leader throughout: a follower relays renewals to the
// leader, and a new leader is not the paused node. A round in which
// leadership moved is played again (playOnOneLeader).
func TestKeepAliveEndsAtALeaderLongOutOfQuorumContact(t *testing.T) {
	pauses := contactPauses{}
	c := testcluster.New(t, 3, testcluster.Options{Configure: pauses.configure})
	leader := c.WaitLeader()
	ctx := testcluster.Ctx(t)
	for _, id := range []string{"a", "b"} {
		if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", id, time.Minute, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	playOnOneLeader(t, func() string { return keepAliveEndsAtPausedLeader(t, c, pauses) })
}

// keepAliveEndsAtPausedLeader plays one round of
// TestKeepAliveEndsAtALeaderLongOutOfQuorumContact at the leader of the
// moment. It fails the test on a wrong answer given while that leader led.
// It returns how leadership moved, if it did during the round, and "" for
// a round played through.
func keepAliveEndsAtPausedLeader(t *testing.T, c *testcluster.Cluster, pauses contactPauses) (moved string) {
	t.Helper()
	leader := c.WaitLeader()
	term := leader.Node.Term()
	defer pauses.set(leader, 0)
	leaderMoved := func() string { return leadershipMoved(leader, term) }
	ctx := testcluster.Ctx(t)
	single := &rosterv1.HeartbeatRequest{Service: "web", Id: "a"}
	batch := &rosterv1.HeartbeatRequest{Instances: []*rosterv1.InstanceRef{{Service: "web", Id: "a"}, {Service: "web", Id: "b"}}}
	// acked polls until a fresh stream to the leader acknowledges req:
	// right after an election, contact may lag for a moment. It gives up,
	// false, once leadership has moved.
	acked := func(what string, req *rosterv1.HeartbeatRequest) bool {
		t.Helper()
		ok := testcluster.Within(10*time.Second, func() bool {
			if leaderMoved() != "" {
				return true
			}
			st, err := leader.Registry().KeepAlive(ctx)
			if err != nil {
				return false
			}
			defer func() { _ = st.CloseSend() }()
			if err := st.Send(req); err != nil {
				return false
			}
			resp, err := st.Recv()
			if err != nil || resp.GetCode() != 0 {
				return false
			}
			for _, r := range resp.GetResults() {
				if r.GetCode() != 0 {
					return false
				}
			}
			return true
		})
		if leaderMoved() != "" {
			return false
		}
		if !ok {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		return true
	}
	if !acked("a renewal acknowledged by the leader in contact", single) {
		return leaderMoved()
	}
	if !acked("a batch acknowledged by the leader in contact", batch) {
		return leaderMoved()
	}

	pauses.refuseLong(t, leader, store.Key{Namespace: "default", Service: "web", ID: "a"})
	for _, tc := range []struct {
		name string
		req  *rosterv1.HeartbeatRequest
	}{{"single renewal", single}, {"batch", batch}} {
		st, err := leader.Registry().KeepAlive(ctx)
		if err != nil {
			if m := leaderMoved(); m != "" {
				return m
			}
			t.Fatal(err)
		}
		if err := st.Send(tc.req); err != nil {
			if m := leaderMoved(); m != "" {
				return m
			}
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if m := leaderMoved(); m != "" {
			return m
		}
		if err == nil {
			t.Fatalf("%s: the stream answered (code %d %q, results %v) and went on; want it ended with NOT_LEADER",
				tc.name, resp.GetCode(), resp.GetError(), resp.GetResults())
		}
		wantNotLeader(t, tc.name+" stream", err)
	}

	pauses.set(leader, 0)
	if !acked("renewals acknowledged once contact is fresh again", batch) {
		return leaderMoved()
	}
	return ""
}

// TestKeepAliveSessionMovesOffALeaderLongOutOfQuorumContact: a client
// Session whose stream goes straight to such a leader moves on to its next
// endpoint, which relays to the leader, and keeps renewing every lease
// there.
//
// It needs one leader throughout: once leadership moves, the paused node
// is a follower that relays renewals to the new leader, so its stream
// never breaks. On a busy machine a leader may miss the 100 ms lease of the
// test timings and step down at any moment; a round in which leadership
// moved is played again, with the leader of then.
func TestKeepAliveSessionMovesOffALeaderLongOutOfQuorumContact(t *testing.T) {
	pauses := contactPauses{}
	c := testcluster.New(t, 3, testcluster.Options{Configure: pauses.configure})
	c.WaitMembersKnown()
	playOnOneLeader(t, func() string { return sessionMovesOffPausedLeader(t, c, pauses) })
}

// sessionMovesOffPausedLeader plays one round of
// TestKeepAliveSessionMovesOffALeaderLongOutOfQuorumContact at the leader
// of the moment. It fails the test on a wrong answer given while that
// leader led. It returns how leadership moved, if it did during the round,
// and "" for a round played through.
func sessionMovesOffPausedLeader(t *testing.T, c *testcluster.Cluster, pauses contactPauses) (moved string) {
	t.Helper()
	leader := c.WaitLeader()
	term := leader.Node.Term()
	defer pauses.set(leader, 0)
	leaderMoved := func() string { return leadershipMoved(leader, term) }
	var follower *testcluster.Node
	for _, nd := range c.Running() {
		if nd != leader {
			follower = nd
			break
		}
	}
	ctx := testcluster.Ctx(t)
	cl, err := client.New(ctx, []string{leader.Addr, follower.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	keys := []client.InstanceKey{{Service: "web", ID: "a"}, {Service: "web", ID: "b"}}
	for _, k := range keys {
		if _, err := cl.Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance(k.Service, k.ID, 3*time.Second, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := cl.KeepAlive(ctx, 3*time.Second, keys...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// nextEvent waits for the session's next event of kind; it gives up,
	// ok false, once leadership has moved.
	nextEvent := func(kind client.LeaseEventKind) (ev client.LeaseEvent, ok bool) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case ev := <-s.Events():
				if ev.Kind == kind {
					return ev, true
				}
				if ev.Kind == client.LeaseLost && leaderMoved() == "" {
					t.Errorf("lease lost: %v", ev)
				}
			case <-tick.C:
				if leaderMoved() != "" {
					return client.LeaseEvent{}, false
				}
			case <-deadline:
				if leaderMoved() != "" {
					return client.LeaseEvent{}, false
				}
				t.Fatalf("no %v event", kind)
			}
		}
	}
	ev, ok := nextEvent(client.StreamConnected)
	if !ok {
		return leaderMoved()
	}
	if ev.Endpoint != leader.Addr {
		t.Fatalf("keepalive connected to %s, want the leader at %s", ev.Endpoint, leader.Addr)
	}

	pauses.refuseLong(t, leader, store.Key{Namespace: "default", Service: "web", ID: "a"})
	broken, ok := nextEvent(client.StreamBroken)
	if !ok {
		return leaderMoved()
	}
	if m := leaderMoved(); m != "" {
		return m
	}
	if broken.Endpoint != leader.Addr {
		t.Errorf("broken stream on %s, want %s", broken.Endpoint, leader.Addr)
	}
	wantNotLeader(t, "keepalive session stream", broken.Err)
	// The real leader is back in contact (in the partition it would be
	// another node): the follower's relay reaches it.
	pauses.set(leader, 0)
	resumed := time.Now()
	if ev, ok := nextEvent(client.StreamConnected); !ok {
		return leaderMoved()
	} else if ev.Endpoint != follower.Addr {
		t.Fatalf("keepalive reconnected to %s, want %s", ev.Endpoint, follower.Addr)
	}
	// The lease table lives on the leader: once leadership moves, the
	// renewals are read nowhere this round can see.
	renewed := testcluster.Within(15*time.Second, func() bool {
		if leaderMoved() != "" {
			return true
		}
		ls, err := leader.Node.ServiceLeases("default", "web")
		if err != nil || len(ls) != len(keys) {
			return false
		}
		for _, l := range ls {
			if !l.LastRenewed.After(resumed) {
				return false
			}
		}
		return true
	})
	if m := leaderMoved(); m != "" {
		return m
	}
	if !renewed {
		t.Fatal("timed out after 15s waiting for both leases renewed through the follower")
	}
	return ""
}

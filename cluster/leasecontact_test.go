package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/store"
)

// startContactVoters starts n in-memory voters, c1, c2, ..., with the fast
// test timeouts, and waits for a ready leader with its lease table.
func startContactVoters(t *testing.T, n int) (leader *Node, nodes []*Node) {
	t.Helper()
	var peers []Peer
	var trs []*raft.InmemTransport
	for i := range n {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("c%d.inmem:7421", i+1)))
		peers = append(peers, Peer{ID: fmt.Sprintf("c%d", i+1), Addr: string(addr)})
		trs = append(trs, tr)
	}
	for _, a := range trs {
		for _, b := range trs {
			if a != b {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
	for i := range n {
		cfg := Config{NodeID: peers[i].ID, InMemory: true, Transport: trs[i], InitialCluster: peers, APIAddr: "127.0.0.1:1"}
		cfg.UseFastTimeouts()
		node, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = node.Shutdown() })
		nodes = append(nodes, node)
	}
	return readyContactLeader(t, nodes), nodes
}

// readyContactLeader waits for a ready leader among nodes with its lease
// table.
func readyContactLeader(t *testing.T, nodes []*Node) (leader *Node) {
	t.Helper()
	poll(t, "a ready leader with its lease table", func() bool {
		for _, node := range nodes {
			if node.LeaderReady() && leaseTableActive(node) {
				leader = node
				return true
			}
		}
		return false
	})
	return leader
}

// TestALeaderOutOfQuorumContactRefusesRenewals: a leader paused longer than
// a TTL is still Leader when it resumes, until raft's lease check runs. The
// renewals queued meanwhile must be refused as a follower refuses them, not
// acknowledged: a newer leader may have expired those instances already.
// The pause is the lease table's paused seam: the leader's clock moves on
// while raft, which would step it down, runs nothing, so the node stays
// Leader throughout.
//
// It needs one leader throughout: a follower refuses renewals whatever its
// pause, and a new leader's lease table is not the paused one. On a busy
// machine a leader may miss the 100 ms lease of the test timings and step
// down at any moment; a round in which leadership moved is played again,
// with the leader of then.
func TestALeaderOutOfQuorumContactRefusesRenewals(t *testing.T) {
	leader, nodes := startContactVoters(t, 3)
	const ttl = time.Minute
	inst := &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: "10.0.0.1", Port: 80, Weight: 100, TTL: ttl}
	if _, err := leader.Register(context.Background(), inst, ""); err != nil {
		t.Fatal(err)
	}
	for round := 1; ; round++ {
		moved := pausedLeaderRefusesRenewals(t, readyContactLeader(t, nodes), inst.Key(), ttl)
		if moved == "" {
			return
		}
		if round == 5 {
			t.Fatalf("leadership moved in each of %d rounds (last: %s); the test needs one leader throughout", round, moved)
		}
		t.Logf("round %d: leadership moved (%s); playing it again", round, moved)
	}
}

// pausedLeaderRefusesRenewals plays one round of
// TestALeaderOutOfQuorumContactRefusesRenewals at leader, pausing it for
// twice ttl. It fails the test on a wrong answer given while leader led.
// It returns how leadership moved, if it did during the round, and "" for
// a round played through.
func pausedLeaderRefusesRenewals(t *testing.T, leader *Node, k store.Key, ttl time.Duration) (moved string) {
	t.Helper()
	ctx := context.Background()
	term := leader.Term()
	defer leader.leases.paused.Store(0)
	leaderMoved := func() string {
		if !leader.IsLeader() || leader.Term() != term {
			return fmt.Sprintf("%s led in term %d; now leads %v in term %d", leader.ID(), term, leader.IsLeader(), leader.Term())
		}
		return ""
	}
	// lastRenewed gives up, ok false, once leadership has moved: the lease
	// table lives on the leader.
	lastRenewed := func() (last time.Time, ok bool) {
		t.Helper()
		ls, err := leader.ServiceLeases("default", "web")
		if err != nil || len(ls) != 1 {
			if leaderMoved() != "" {
				return time.Time{}, false
			}
			t.Fatalf("leases of web: %v, %v", ls, err)
		}
		return ls[0].LastRenewed, true
	}
	// acked polls until a renewal is acknowledged: right after an election
	// under load, contact may lag for a moment. It gives up, false, once
	// leadership has moved.
	acked := func(what string) bool {
		t.Helper()
		poll(t, what, func() bool {
			if leaderMoved() != "" {
				return true
			}
			if _, err := leader.Heartbeat(ctx, k); err != nil {
				return false
			}
			_, _, err := leader.ReportHealth(ctx, k, store.HealthPassing, "")
			return err == nil
		})
		return leaderMoved() == ""
	}
	if !acked("renewals acknowledged by a leader in contact") {
		return leaderMoved()
	}

	before, ok := lastRenewed()
	if !ok {
		return leaderMoved()
	}
	leader.leases.paused.Store(int64(2 * ttl))
	_, hbErr := leader.Heartbeat(ctx, k)
	_, _, rhErr := leader.ReportHealth(ctx, k, store.HealthPassing, "")
	if m := leaderMoved(); m != "" {
		return m
	}
	if !errors.Is(hbErr, ErrNotLeader) {
		t.Errorf("heartbeat on a Leader out of quorum contact: %v, want %v", hbErr, ErrNotLeader)
	}
	if !errors.Is(rhErr, ErrNotLeader) {
		t.Errorf("health report on a Leader out of quorum contact: %v, want %v", rhErr, ErrNotLeader)
	}
	if got, ok := lastRenewed(); !ok {
		return leaderMoved()
	} else if !got.Equal(before) {
		t.Errorf("the lease was renewed at %v by a refused renewal (last renewed %v before)", got, before)
	}

	leader.leases.paused.Store(0)
	if !acked("renewals acknowledged once contact is fresh again") {
		return leaderMoved()
	}
	if got, ok := lastRenewed(); !ok {
		return leaderMoved()
	} else if !got.After(before) {
		t.Errorf("lease last renewed %v after an acknowledged heartbeat, want after %v", got, before)
	}

	// A request whose context is done is refused too: its caller has
	// stopped waiting for the answer.
	if before, ok = lastRenewed(); !ok {
		return leaderMoved()
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := leader.Heartbeat(done, k); !errors.Is(err, context.Canceled) {
		t.Errorf("heartbeat with a done context: %v, want %v", err, context.Canceled)
	}
	if _, _, err := leader.ReportHealth(done, k, store.HealthPassing, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("health report with a done context: %v, want %v", err, context.Canceled)
	}
	if got, ok := lastRenewed(); !ok {
		return leaderMoved()
	} else if !got.Equal(before) {
		t.Errorf("the lease was renewed at %v by a request whose context was done (last renewed %v before)", got, before)
	}
	return ""
}

// TestLeaseContactAge: no contact, or contact older than the leader lease
// timeout, refuses; contact within it acknowledges. The timeout is an hour,
// so that how long the test takes does not matter.
func TestLeaseContactAge(t *testing.T) {
	cfg := Config{LeaderLeaseTimeout: time.Hour}
	lt := newLeaseTable(hclog.NewNullLogger(), realClock{}, nil, store.New(store.Options{}), func() bool { return true }, &cfg)
	for _, tc := range []struct {
		name   string
		since  time.Duration // contact this long ago; negative: no contact
		paused time.Duration
		want   bool
	}{
		{"no contact (not leading)", -1, 0, false},
		{"contact now", 0, 0, true},
		{"contact older than the lease timeout", 2 * time.Hour, 0, false},
		{"contact now, then a pause longer than the lease timeout", 0, 2 * time.Hour, false},
	} {
		var contact time.Time
		if tc.since >= 0 {
			contact = time.Now().Add(-tc.since)
		}
		lt.paused.Store(int64(tc.paused))
		if got := lt.inContact(contact); got != tc.want {
			t.Errorf("%s: in contact %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestLeaseContactLostLong: renewals count as refused long, so that a
// KeepAlive stream ends, only once a run of refusals has lasted more than
// the leader lease timeout and contact is more than twice that timeout old.
// With no contact in the term, the time the node took the lead stands in;
// with neither, or with no run of refusals, nothing is long. The timeout is
// an hour, so that how long the test takes does not matter.
func TestLeaseContactLostLong(t *testing.T) {
	cfg := Config{LeaderLeaseTimeout: time.Hour}
	lt := newLeaseTable(hclog.NewNullLogger(), realClock{}, nil, store.New(store.Options{}), func() bool { return true }, &cfg)
	ago := func(d time.Duration) time.Time {
		if d < 0 {
			return time.Time{}
		}
		return time.Now().Add(-d)
	}
	for _, tc := range []struct {
		name                  string
		contact, leading, run time.Duration // this long ago; negative: none
		paused                time.Duration
		want                  bool
	}{
		{"contact now", 0, 3 * time.Hour, -1, 0, false},
		{"refusing for half a lease timeout", 90 * time.Minute, 3 * time.Hour, 30 * time.Minute, 0, false},
		{"refusing for more than a lease timeout", 150 * time.Minute, 3 * time.Hour, 90 * time.Minute, 0, true},
		{"refusing long, contact less than two lease timeouts old", 90 * time.Minute, 3 * time.Hour, 90 * time.Minute, 0, false},
		{"contact long ago, no refusal yet", 150 * time.Minute, 3 * time.Hour, -1, 0, false},
		{"contact now, then a pause of three lease timeouts, refusing since", 0, 3 * time.Hour, 0, 3 * time.Hour, false},
		{"no contact yet, leading for a moment", -1, 0, 0, 0, false},
		{"no contact, leading and refusing for three lease timeouts", -1, 3 * time.Hour, 3 * time.Hour, 0, true},
		{"neither contact nor a time of taking the lead", -1, -1, 3 * time.Hour, 0, false},
	} {
		lt.paused.Store(int64(tc.paused))
		lt.endRefusals()
		if tc.run >= 0 {
			lt.refusing.Store(&refusalRun{began: ago(tc.run), pause: lt.pause()})
		}
		if got := lt.refusingLong(ago(tc.contact), ago(tc.leading)); got != tc.want {
			t.Errorf("%s: refusing long %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestLeaseRefusalsLongOnlyAfterALeaseTimeoutOfThem: after a pause longer
// than twice the leader lease timeout (SIGSTOP, a frozen VM, a long GC) the
// first refused renewal begins a run of refusals and does not count as
// refused long, though the contact is that old: a leader about to hear from
// its quorum again must not end every KeepAlive stream at once. The run
// counts as long once it has lasted more than the timeout; a renewal in
// contact ends it, and so does taking or losing the lead. The pause seam
// moves time on (its growth during a run counts as the run's length), and
// the timeout is an hour, so that how long the test takes does not matter.
func TestLeaseRefusalsLongOnlyAfterALeaseTimeoutOfThem(t *testing.T) {
	cfg := Config{LeaderLeaseTimeout: time.Hour}
	lt := newLeaseTable(hclog.NewNullLogger(), realClock{}, nil, store.New(store.Options{}), func() bool { return true }, &cfg)
	contact := time.Now()
	leading := contact.Add(-time.Minute)
	refused := func(what string, pause time.Duration, wantLong bool) {
		t.Helper()
		lt.paused.Store(int64(pause))
		if lt.inContact(contact) {
			t.Fatalf("%s: in contact after a pause of %v, want refused", what, pause)
		}
		if got := lt.refusingLong(contact, leading); got != wantLong {
			t.Errorf("%s: refusing long %v, want %v", what, got, wantLong)
		}
	}
	acked := func(what string) {
		t.Helper()
		lt.paused.Store(0)
		if !lt.inContact(contact) {
			t.Fatalf("%s: refused with fresh contact", what)
		}
		if lt.refusingLong(contact, leading) {
			t.Errorf("%s: refusing long with fresh contact", what)
		}
	}

	acked("before the pause")
	refused("the first renewal after a pause of three lease timeouts", 3*time.Hour, false)
	refused("refusing for half a lease timeout", 3*time.Hour+30*time.Minute, false)
	refused("refusing for more than a lease timeout", 4*time.Hour+time.Minute, true)

	acked("contact fresh again")
	refused("the first renewal after a second long pause", 3*time.Hour, false)
	refused("refusing for more than a lease timeout again", 4*time.Hour+time.Minute, true)

	lt.endRefusals()
	refused("the first renewal after taking the lead again", 5*time.Hour, false)
}

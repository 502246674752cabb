package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/store"
)

func TestDecideInitial(t *testing.T) {
	fresh := probeAnswer{answered: true}
	bootstrapped := probeAnswer{answered: true, term: 1, lastLog: 1}
	campaigning := probeAnswer{answered: true, term: 7, lastLog: 1}
	elected := probeAnswer{answered: true, term: 2, lastLog: 2}
	unknown := probeAnswer{}
	tests := []struct {
		name    string
		voters  int
		answers []probeAnswer
		want    startDecision
	}{
		{"alone in a one-voter cluster", 1, nil, decideBootstrap},
		{"nobody answers", 3, []probeAnswer{unknown, unknown}, decideWait},
		{"a peer with no state makes a majority", 3, []probeAnswer{fresh, unknown}, decideBootstrap},
		{"a bootstrapped peer makes a majority", 3, []probeAnswer{bootstrapped, unknown}, decideBootstrap},
		{"failed elections raise terms, not logs", 3, []probeAnswer{campaigning, unknown}, decideBootstrap},
		{"a log past the bootstrap entry proves a cluster", 3, []probeAnswer{elected, unknown}, decideExisting},
		{"one proof is enough", 3, []probeAnswer{fresh, elected}, decideExisting},
		{"two of five is no majority", 5, []probeAnswer{fresh, unknown, unknown, unknown}, decideWait},
		{"three of five is", 5, []probeAnswer{fresh, bootstrapped, unknown, unknown}, decideBootstrap},
		{"half of two is no majority", 2, []probeAnswer{unknown}, decideWait},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decideInitial(tt.voters, tt.answers); got != tt.want {
				t.Fatalf("decideInitial = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestVoteGuardCaughtUp(t *testing.T) {
	g := newVoteGuard(raft.NewInmemStore(), true)
	if g.caughtUp(100, 9) {
		t.Fatal("caught up before any leader replicated to it")
	}
	// Heartbeats carry no commit index and prove nothing about the log.
	g.observe(&raft.AppendEntriesRequest{Term: 5})
	if g.caughtUp(100, 9) {
		t.Fatal("caught up after a heartbeat alone")
	}
	select {
	case <-g.contacted():
	default:
		t.Fatal("a heartbeat of term 5 is a cluster")
	}
	g.observe(&raft.AppendEntriesRequest{Term: 5, PrevLogEntry: 40, PrevLogTerm: 5, LeaderCommitIndex: 42})
	for _, c := range []struct {
		index, term uint64
		want        bool
	}{
		{41, 5, false}, // same term, short of what the leader had committed
		{42, 5, true},
		{30, 4, false}, // older term: may lack what the leader had
		{30, 6, true},  // a newer leader held all of it before appending
	} {
		if got := g.caughtUp(c.index, c.term); got != c.want {
			t.Errorf("caughtUp(%d, %d) = %v, want %v", c.index, c.term, got, c.want)
		}
	}
	// A later term's first commit index replaces the earlier one.
	g.observe(&raft.AppendEntriesRequest{Term: 6, LeaderCommitIndex: 60, PrevLogEntry: 59})
	if g.caughtUp(42, 5) || g.caughtUp(59, 6) || !g.caughtUp(60, 6) {
		t.Fatal("term 6 did not replace what term 5 said")
	}
	// A probe (term 0) says nothing.
	g2 := newVoteGuard(raft.NewInmemStore(), true)
	g2.observe(&raft.AppendEntriesRequest{})
	select {
	case <-g2.contacted():
		t.Fatal("a probe counted as a cluster")
	default:
	}
	// A candidate of a new cluster (log at the bootstrap entry) is no proof;
	// one with a longer log is.
	g2.observe(&raft.RequestPreVoteRequest{Term: 3, LastLogIndex: 1})
	select {
	case <-g2.contacted():
		t.Fatal("a new cluster's candidate counted as an existing cluster")
	default:
	}
	g2.observe(&raft.RequestVoteRequest{Term: 3, LastLogIndex: 9})
	select {
	case <-g2.contacted():
	default:
		t.Fatal("a candidate with a log is a cluster")
	}
}

func TestVoteGuardIgnoresDeposedLeaders(t *testing.T) {
	g := newVoteGuard(raft.NewInmemStore(), true)
	g.raiseFloor(8)
	g.observe(&raft.AppendEntriesRequest{Term: 7, LeaderCommitIndex: 10, PrevLogEntry: 10})
	if g.caughtUp(10, 7) || g.caughtUp(50, 7) {
		t.Fatal("a leader of a term below what a peer reported counted")
	}
	g.observe(&raft.AppendEntriesRequest{Term: 8, LeaderCommitIndex: 20, PrevLogEntry: 20})
	if !g.caughtUp(20, 8) {
		t.Fatal("the current leader did not count")
	}
}

func TestVoteGuardIsDurable(t *testing.T) {
	stable := raft.NewInmemStore()
	if on, err := armed(stable); err != nil || on {
		t.Fatalf("armed = %v, %v on a new store", on, err)
	}
	g := newVoteGuard(stable, false)
	if err := g.arm(); err != nil {
		t.Fatal(err)
	}
	if on, _ := armed(stable); !on {
		t.Fatal("arm did not persist")
	}
	if err := g.lift(); err != nil {
		t.Fatal(err)
	}
	if on, _ := armed(stable); on || g.active() {
		t.Fatal("lift did not persist")
	}
}

// TestProbeChangesNothing probes a leader with data and a node with none
// over the Raft transport: each answers with its term and last index, and
// neither changes its term, its leader or its role.
func TestProbeChangesNothing(t *testing.T) {
	_, leaderTr := raft.NewInmemTransport("leader.inmem:7421")
	_, emptyTr := raft.NewInmemTransport("empty.inmem:7421")
	_, probeTr := raft.NewInmemTransport("probe.inmem:7421")
	cfg := func(id, dir string, tr raft.Transport) Config {
		c := Config{NodeID: id, DataDir: dir, Transport: tr, APIAddr: "127.0.0.1:1"}
		c.UseFastTimeouts()
		return c
	}
	lc := cfg("leader", t.TempDir(), leaderTr)
	lc.Bootstrap = true
	lc.BootstrapListen = -1
	leader, err := New(lc)
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Shutdown()
	ec := cfg("empty", t.TempDir(), emptyTr)
	ec.Existing = true
	empty, err := New(ec)
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Shutdown()
	probeTr.Connect("leader.inmem:7421", leaderTr)
	probeTr.Connect("empty.inmem:7421", emptyTr)

	deadline := time.Now().Add(10 * time.Second)
	for !leader.LeaderReady() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before, emptyBefore := leader.Status(), empty.Status()
	answers := probeAll(probeTr, []Peer{{ID: "leader", Addr: "leader.inmem:7421"}, {ID: "empty", Addr: "empty.inmem:7421"},
		{ID: "gone", Addr: "gone.inmem:7421"}}, time.Second)
	if a := answers[0]; !a.answered || a.term != before.Term || a.lastLog != leader.LastIndex() || a.lastLog <= bootstrapIndex {
		t.Fatalf("leader answered %+v; its term is %d and last index %d", a, before.Term, leader.LastIndex())
	}
	if a := answers[1]; !a.answered || a.term != 0 || a.lastLog != 0 {
		t.Fatalf("empty node answered %+v", a)
	}
	if answers[2].answered {
		t.Fatal("an unreachable peer answered")
	}
	if d := decideInitial(3, answers[:1]); d != decideExisting {
		t.Fatalf("a leader's answer decided %s", d)
	}
	after, emptyAfter := leader.Status(), empty.Status()
	if after.State != "leader" || after.Term != before.Term || after.LeaderID != "leader" {
		t.Fatalf("the probe changed the leader: %+v, was %+v", after, before)
	}
	if emptyAfter.Term != emptyBefore.Term || emptyAfter.LeaderID != "" || emptyAfter.State != "follower" {
		t.Fatalf("the probe changed the empty node: %+v, was %+v", emptyAfter, emptyBefore)
	}
}

// TestBootstrapListenOutlastsAnElection: a --bootstrap node restarted with
// a wiped data dir right after it died as leader hears from its old
// cluster only once a survivor stands, which a follower does up to three
// heartbeat timeouts after its leader's last contact (its timer fires in
// [1, 2] timeouts, and waits another when contact was recent). The default
// window must outlast that with room for a loaded machine; at twice the
// heartbeat timeout, a CI run restarted the node, heard nothing and
// started a cluster of its own.
func TestBootstrapListenOutlastsAnElection(t *testing.T) {
	for _, scale := range []float64{0.5, 1, 3} {
		c := Config{NodeID: "n1", DataDir: t.TempDir(), Bootstrap: true, RaftBind: "127.0.0.1:0", APIAddr: "127.0.0.1:1"}
		c.UseLANTimeouts(scale)
		if err := c.setDefaults(); err != nil {
			t.Fatal(err)
		}
		if worst := 3 * c.HeartbeatTimeout; c.BootstrapListen < 2*worst {
			t.Errorf("scale %v: listens %v, not twice the %v a survivor may take to stand", scale, c.BootstrapListen, worst)
		}
	}
}

// TestInMemoryPeerReachedBeforeItBootstraps: a node of an initial cluster
// that a peer, elected first, reached before it bootstrapped is a member
// already; it starts and is caught up rather than failing to start with
// raft's "bootstrap only works on new clusters".
func TestInMemoryPeerReachedBeforeItBootstraps(t *testing.T) {
	var peers []Peer
	var trs []*raft.InmemTransport
	for i := range 2 {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("n%d.inmem:7421", i+1)))
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: string(addr)})
		trs = append(trs, tr)
	}
	trs[0].Connect(trs[1].LocalAddr(), trs[1])
	trs[1].Connect(trs[0].LocalAddr(), trs[0])
	cfg := func(i int) Config {
		c := Config{NodeID: peers[i].ID, InMemory: true, Transport: trs[i], InitialCluster: peers, APIAddr: "127.0.0.1:1"}
		c.UseFastTimeouts()
		return c
	}
	n1, err := New(cfg(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n1.Shutdown() })
	c2 := cfg(1)
	// n2's Raft runs and votes before it bootstraps; n1 leading and ready
	// means n2 has stored n1's entries.
	c2.TestHooks.BeforeBootstrap = func() { poll(t, "n1 to lead", n1.LeaderReady) }
	n2, err := New(c2)
	if err != nil {
		t.Fatalf("n2 did not start: %v", err)
	}
	t.Cleanup(func() { _ = n2.Shutdown() })
	if _, err := n1.Register(context.Background(), &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: "10.0.0.1", Port: 80, Weight: 100}, ""); err != nil {
		t.Fatal(err)
	}
}

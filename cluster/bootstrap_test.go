package cluster

import (
	"testing"

	"github.com/hashicorp/raft"
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

package cluster

import (
	"context"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/store"
)

func newTestNode(t *testing.T, id string, bootstrap bool) *Node {
	t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress(id + ".inmem:7421"))
	cfg := Config{NodeID: id, InMemory: true, Transport: tr, Bootstrap: bootstrap, APIAddr: "127.0.0.1:1"}
	cfg.UseFastTimeouts()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	return n
}

// TestFollowerAnnouncesThroughRelay: a node that does not lead asks the
// leader, through the relay, to record its addresses, and keeps asking
// while the member table lacks them.
func TestFollowerAnnouncesThroughRelay(t *testing.T) {
	n := newTestNode(t, "n1", false) // never bootstrapped: no leader
	asked := make(chan store.Member, 8)
	stop := n.StartAnnouncing(func(_ context.Context, self store.Member) error {
		select {
		case asked <- self:
		default:
		}
		return ErrNoLeader
	})
	want := store.Member{NodeID: "n1", RaftAddr: "n1.inmem:7421", APIAddr: "127.0.0.1:1"}
	for range 2 {
		if got := <-asked; got != want {
			t.Fatalf("relayed %+v, want %+v", got, want)
		}
	}
	stop()
	stop() // safe twice
}

package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/store"
)

// TestLateLeaseRegisteredForAGoneInstanceMakesNoLease: the adoption in Register can
// run after the instance was already deregistered (both in a revision the
// lease table has not caught up with). It must not create a lease, or
// heartbeats would succeed on an instance nobody can discover.
func TestLateLeaseRegisteredForAGoneInstanceMakesNoLease(t *testing.T) {
	n := newReadyLeader(t)

	gone := &store.Instance{Namespace: "default", Service: "web", ID: "gone", Address: "10.0.0.1", Port: 80, Weight: 100, TTL: 10 * time.Second}
	// A registration revision beyond anything the table has seen, for an
	// instance the store does not hold: as if register and deregister both
	// committed before the hook ran.
	n.leases.adopt(gone, n.Applied()+1000)
	if _, err := n.Heartbeat(context.Background(), gone.Key()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("heartbeat of an instance that is gone: %v, want not found", err)
	}
}

func leaseTableActive(n *Node) bool {
	n.leases.mu.Lock()
	defer n.leases.mu.Unlock()
	return n.leases.active
}

// newTestNode starts a single in-memory node and waits until it leads with
// its lease table running.
func newReadyLeader(t testing.TB) *Node {
	t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress("n1.inmem:7421"))
	cfg := Config{NodeID: "n1", InMemory: true, Transport: tr, Bootstrap: true, APIAddr: "127.0.0.1:1"}
	cfg.UseFastTimeouts()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	poll(t, "a ready leader with its lease table", func() bool { return n.LeaderReady() && leaseTableActive(n) })
	return n
}

package cluster_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/store"
)

// TestReadIndexWritesNothing: a linearizable read confirms leadership with
// a round of heartbeats, not with an entry in the log, so reads never cost a
// write on any node; and the index it answers covers the last write.
func TestReadIndexWritesNothing(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	leader := c.WaitLeader()
	// Every node has announced itself: nothing else writes meanwhile.
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	inst := &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: "10.0.0.1", Port: 80, Weight: 100}
	written, err := leader.Node.Register(ctx, inst, "")
	if err != nil {
		t.Fatal(err)
	}
	c.Eventually("every node to hold the write", 20*time.Second, func() bool {
		for _, nd := range c.Running() {
			if nd.Node.Applied() < written || nd.Node.LastIndex() != leader.Node.LastIndex() {
				return false
			}
		}
		return true
	})
	before := map[string]uint64{}
	for _, nd := range c.Running() {
		before[nd.ID] = nd.Node.LastIndex()
	}

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				idx, err := leader.Node.ReadIndex(ctx)
				if err == nil && idx < written {
					t.Errorf("read index %d is behind the write at %d", idx, written)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("read index on a steady leader: %v", err)
	}
	for _, nd := range c.Running() {
		if got := nd.Node.LastIndex(); got != before[nd.ID] {
			t.Errorf("%s: 200 linearizable reads moved the last log index from %d to %d", nd.ID, before[nd.ID], got)
		}
	}
}

// TestACutOffLeaderConfirmsNoReadIndex: a leader cut off from its
// followers gets no answer to its heartbeats, so no read index, while the
// others elect a new leader and write.
func TestACutOffLeaderConfirmsNoReadIndex(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	old := c.WaitLeader()
	c.Partition(old)
	idx, err := old.Node.ReadIndex(testcluster.Ctx(t))
	if err == nil {
		t.Fatalf("a leader cut off from every follower confirmed read index %d", idx)
	}
	// Deposed, it says so (a read may go to the next leader); a read
	// writes nothing, so its outcome is never unknown.
	if !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("a cut-off leader's read index failed with %v, want ErrNotLeader", err)
	}
}

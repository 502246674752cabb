package testcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

func register(ctx context.Context, t *testing.T, nd *testcluster.Node, id string) error {
	t.Helper()
	_, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
		Service: "web", Id: id, Address: "10.0.0.1", Port: 80,
	}})
	return err
}

// TestSplitKeepsTheMajorityWorking: a 2/3 split of five nodes leaves the
// three-node side with a leader that takes writes and the two-node side
// without one; after healing every node holds the same state.
func TestSplitKeepsTheMajorityWorking(t *testing.T) {
	c := testcluster.New(t, 5, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader := c.WaitLeader()
	var minority, majority []*testcluster.Node
	for _, nd := range c.Nodes {
		if nd != leader && len(minority) < 2 {
			minority = append(minority, nd)
		} else {
			majority = append(majority, nd)
		}
	}
	c.Split(minority, majority)
	c.Eventually("the minority to lose its leader", 10*time.Second, func() bool {
		for _, nd := range minority {
			if id, _ := nd.Node.Leader(); id != "" {
				return false
			}
		}
		return true
	})
	if got := c.WaitLeader(); got != leader {
		t.Fatalf("leader %s after the split, want %s to keep leading", got.ID, leader.ID)
	}
	if err := register(ctx, t, leader, "during-split"); err != nil {
		t.Fatalf("write on the majority side: %v", err)
	}
	if a := minority[0].Node.Applied(); a >= leader.Node.Applied() {
		t.Fatalf("the minority applied %d, as much as the leader", a)
	}
	c.Heal()
	c.EnsureSame()
}

// TestSameDetectsDivergence: a node whose state differs at the same applied
// index is reported.
func TestSameDetectsDivergence(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	ctx := testcluster.Ctx(t)
	if err := register(ctx, t, c.WaitLeader(), "w1"); err != nil {
		t.Fatal(err)
	}
	c.EnsureSame()

	// Change one node's store behind Raft's back, at the index it has
	// already applied, so the applied indexes still agree.
	f := c.Followers()[0]
	w := f.Node.Store().Begin(f.Node.Applied())
	if _, err := w.Deregister(store.Key{Namespace: "default", Service: "web", ID: "w1"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Same(sctx); err == nil {
		t.Fatal("Same found no difference")
	}
}

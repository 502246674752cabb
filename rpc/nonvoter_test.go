package rpc_test

import (
	"context"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// Read replicas (non-voters) serve reads and watches, forward writes, and
// never count toward the quorum: losing one changes nothing, and one left
// running cannot make up a quorum that two lost voters took away.
func TestNonVoterServesReadsAndNeverCountsTowardQuorum(t *testing.T) {
	ctx := testcluster.Ctx(t)
	c := testcluster.New(t, 3, testcluster.Options{})
	r1 := c.Join("r1", false, testcluster.Options{})
	r2 := c.Join("r2", false, testcluster.Options{})
	r3 := c.Join("r3", false, testcluster.Options{})
	c.WaitMembersKnown()

	ms, err := r1.Cluster().Members(ctx, &rosterv1.MembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	voters := 0
	for _, m := range ms.Members {
		if m.Voter {
			voters++
		}
		if m.NodeId[0] == 'r' && m.Voter {
			t.Fatalf("%s joined as a voter: %v", m.NodeId, ms.Members)
		}
	}
	if voters != 3 || len(ms.Members) != 6 {
		t.Fatalf("members %v: want 3 voters of 6", ms.Members)
	}

	watch, err := r1.Registry().Watch(ctx, &rosterv1.WatchRequest{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := watch.Recv(); err != nil || !m.Reset_ {
		t.Fatalf("first watch message on the replica: %v, %v", m, err)
	}
	// A write through the replica is forwarded to the leader.
	w, err := r1.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 80)})
	if err != nil {
		t.Fatalf("write through the replica: %v", err)
	}
	for _, nd := range []*testcluster.Node{r1, r2, r3} {
		for _, read := range []*rosterv1.ReadOptions{
			{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: w.Revision},
			{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE},
		} {
			got, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web", Read: read})
			if err != nil || len(got.Instances) != 1 || got.Instances[0].ModRevision != w.Revision {
				t.Fatalf("read %v on %s: %v, %v", read, nd.ID, got, err)
			}
		}
	}
	for {
		m, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch on the replica: %v", err)
		}
		if m.Progress {
			continue
		}
		if len(m.Events) != 1 || m.Revision != w.Revision || m.Events[0].Instance.Id != "a" {
			t.Fatalf("the replica's watcher got %v, want the write at %d", m, w.Revision)
		}
		break
	}

	// Losing replicas does not touch the quorum: with two replicas and a
	// voter down, two voters of three still write. (Were the replicas
	// counted, that would be three of six, no quorum.)
	c.Stop(r1)
	c.Stop(r2)
	leader := c.WaitLeader()
	for _, nd := range c.Running() {
		if nd != leader && nd != r3 {
			c.Stop(nd)
			break
		}
	}
	wb, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "b", 80)})
	if err != nil {
		t.Fatalf("write with two replicas and a voter down: %v", err)
	}
	if _, err := r3.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
		Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: wb.Revision}}); err != nil {
		t.Fatalf("the remaining replica did not catch up: %v", err)
	}

	// Two voters of three lost: the replica still up makes no quorum.
	for _, nd := range c.Running() {
		if nd != r3 && nd != leader {
			c.Stop(nd)
		}
	}
	if len(c.Running()) != 2 {
		t.Fatalf("running: %d nodes, want the old leader and r3", len(c.Running()))
	}
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := r3.Registry().Register(short, &rosterv1.RegisterRequest{Instance: instance("web", "c", 80)}); err == nil {
		t.Fatal("a write succeeded with one voter of three and a replica")
	}
	if r3.Node.IsLeader() {
		t.Fatal("the replica became leader")
	}
	// The replica still serves what it has, stale.
	got, err := r3.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
		Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE}})
	if err != nil || len(got.Instances) != 2 {
		t.Fatalf("stale read on the replica without a quorum: %v, %v", got, err)
	}
}

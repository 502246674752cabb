package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestJoinLoopRejoinsARemovedNode: a node removed with remove-node keeps
// the others in its own configuration, but not itself; --join adds it
// again, while a node that is still a member is left alone.
func TestJoinLoopRejoinsARemovedNode(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	r1 := c.Join("r1", false, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader := c.WaitLeader()
	logger := hclog.NewNullLogger()
	inConfig := func(nd *cluster.Node, id string) bool {
		ms, err := nd.Members()
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.NodeID == id {
				return true
			}
		}
		return false
	}

	// A member: nothing is sent (the address does not answer).
	member, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	joinLoop(member, logger, &flags{join: "127.0.0.1:1"}, r1.Node)
	if member.Err() != nil {
		t.Fatal("joinLoop of a member tried to join")
	}

	if _, err := leader.Cluster().RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: "r1"}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("r1 to apply its removal", 10*time.Second, func() bool { return !inConfig(r1.Node, "r1") })
	joinLoop(ctx, logger, &flags{join: leader.Addr, nonVoter: true}, r1.Node)
	c.Eventually("the removed node to be in the leader's configuration again", 10*time.Second, func() bool {
		return inConfig(c.WaitLeader().Node, "r1")
	})

	// Removed while cut off, so it never learns of it (as a node that was
	// down): it still lists itself, hears from no leader, and joins after
	// joinWaitForLeader. Its Raft traffic stays cut; the join is a gRPC
	// call, which the cut leaves alone.
	defer func(d time.Duration) { joinWaitForLeader = d }(joinWaitForLeader)
	joinWaitForLeader = time.Second
	c.Eventually("r1 to hear from the leader again and to list itself", 10*time.Second, func() bool {
		id, _ := r1.Node.Leader()
		return id != "" && inConfig(r1.Node, "r1")
	})
	c.Partition(r1)
	c.Eventually("r1 to lose its leader", 10*time.Second, func() bool { id, _ := r1.Node.Leader(); return id == "" })
	if _, err := c.WaitLeader().Cluster().RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: "r1"}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("the leader to drop r1", 10*time.Second, func() bool { return !inConfig(c.WaitLeader().Node, "r1") })
	if !inConfig(r1.Node, "r1") {
		t.Fatal("r1 learned of its removal while cut off")
	}
	joinLoop(ctx, logger, &flags{join: c.WaitLeader().Addr, nonVoter: true}, r1.Node)
	c.Eventually("a node removed while cut off to be in the leader's configuration again", 10*time.Second, func() bool {
		return inConfig(c.WaitLeader().Node, "r1")
	})
	c.Heal()
}

// TestAListenerThatStopsIsAFailure: rosterd shuts down when a listener
// stops serving, and exits with its error, not 0 as after a signal, so a
// supervisor that restarts on failure restarts it.
func TestAListenerThatStopsIsAFailure(t *testing.T) {
	logger := hclog.NewNullLogger()
	serveErr := make(chan error, 1)
	serveErr <- errors.New("accept tcp 127.0.0.1:7420: use of closed network connection")
	if err := waitForStop(context.Background(), logger, serveErr, raftRunning{}); err == nil || !strings.Contains(err.Error(), "a listener stopped") {
		t.Fatalf("a listener that stopped: %v; want its error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitForStop(ctx, logger, make(chan error), raftRunning{}); err != nil {
		t.Fatalf("a signal: %v; want nil", err)
	}
}

// raftRunning is a raftWatch whose Raft never stops.
type raftRunning struct{}

func (raftRunning) RaftStopped() <-chan struct{} { return nil }
func (raftRunning) RaftStopReason() error        { return nil }

// TestARemovedLeaderStopsWithAFailure: a leader removed from the cluster
// shuts its Raft down on its own; rosterd notices, says the node was
// removed, and exits with an error (not 0, as after a signal), so a
// supervisor restarts it and --join adds it again. Its status says it was
// removed, and a node that was not removed is not.
func TestARemovedLeaderStopsWithAFailure(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader := c.WaitLeader()
	if _, err := leader.Cluster().RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: leader.ID}); err != nil {
		t.Fatal(err)
	}
	err := waitForStop(ctx, hclog.NewNullLogger(), make(chan error), leader.Node)
	t.Logf("waitForStop: %v", err)
	if !errors.Is(err, cluster.ErrRemoved) || !strings.Contains(err.Error(), "restart it with --join") {
		t.Fatalf("a removed leader: %v; want an error saying it was removed", err)
	}
	if !leader.Node.Removed() {
		t.Fatal("the removed leader does not know it was removed")
	}
	for _, nd := range c.Nodes {
		if nd != leader && nd.Node.Removed() {
			t.Fatalf("%s says it was removed; it was not", nd.ID)
		}
	}
}

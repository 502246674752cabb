package rpc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// TestWithoutQuorumCallsSayWhyBeforeTheDeadline: on a node left without a
// quorum, with a hold timeout longer than the caller's deadline, reads,
// writes and membership changes answer with the reason (NO_LEADER) before
// the caller's own deadline, not with a bare deadline error; a min_revision
// the node cannot reach names how far it has applied.
func TestWithoutQuorumCallsSayWhyBeforeTheDeadline(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) { o.HoldTimeout = time.Minute }})
	c.WaitMembersKnown()
	leader, f := c.WaitLeader(), c.Followers()
	c.Stop(leader)
	c.Stop(f[0])
	left := f[1]
	const wait = 2 * time.Second
	calls := []struct {
		name   string
		call   func(ctx context.Context) error
		code   codes.Code
		reason string
		want   string
	}{
		{"linearizable read", func(ctx context.Context) error {
			_, err := left.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
			return err
		}, codes.Unavailable, rpc.ReasonNoLeader, "no leader"},
		{"register", func(ctx context.Context) error {
			_, err := left.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
				Service: "web", Id: "web-1", Address: "10.0.0.1", Port: 80}})
			return err
		}, codes.Unavailable, rpc.ReasonNoLeader, "no leader"},
		{"remove node", func(ctx context.Context) error {
			_, err := left.Cluster().RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: leader.ID})
			return err
		}, codes.Unavailable, rpc.ReasonNoLeader, "no leader"},
		{"min revision not reached", func(ctx context.Context) error {
			_, err := left.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
				Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: 1 << 40}})
			return err
		}, codes.DeadlineExceeded, "", "this node has applied index"},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(testcluster.Ctx(t), wait)
			defer cancel()
			start := time.Now()
			err := tt.call(ctx)
			took := time.Since(start)
			t.Logf("after %s: %v", took, err)
			if status.Code(err) != tt.code || rpc.Reason(err) != tt.reason || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("%v (code %s, reason %q); want %s, reason %q, saying %q", err, status.Code(err), rpc.Reason(err), tt.code, tt.reason, tt.want)
			}
			if ctx.Err() != nil {
				t.Fatalf("answered only once the caller's own deadline had passed (after %s)", took)
			}
		})
	}
}

// TestARemovedFollowerSaysItWasRemoved: a follower removed from the
// cluster knows it from its configuration; its status and the calls it
// cannot serve say so (still NO_LEADER: nothing was applied, another node
// can take the call), not that the cluster lost its quorum.
func TestARemovedFollowerSaysItWasRemoved(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, gone := c.WaitLeader(), c.Followers()[0]
	if _, err := leader.Cluster().RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: gone.ID}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("the removed follower to learn its removal", 10*time.Second, gone.Node.Removed)
	// Raft forgets the leader once it stops hearing from it.
	c.Eventually("the removed follower to lose its leader", 10*time.Second, func() bool { id, _ := gone.Node.Leader(); return id == "" })
	st, err := gone.Cluster().Status(ctx, &rosterv1.StatusRequest{})
	if err != nil || st.GetState() != "removed" {
		t.Fatalf("status of the removed follower: %v, state %q; want state removed", err, st.GetState())
	}
	call, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = gone.Registry().GetService(call, &rosterv1.GetServiceRequest{Service: "web"})
	t.Logf("a read on the removed follower: %v", err)
	if status.Code(err) != codes.Unavailable || rpc.Reason(err) != rpc.ReasonNoLeader ||
		!strings.Contains(status.Convert(err).Message(), "this node was removed from the cluster; restart it with --join") {
		t.Fatalf("a read on the removed follower: %v (reason %q); want Unavailable, NO_LEADER, saying it was removed", err, rpc.Reason(err))
	}
	if st, err := leader.Cluster().Status(ctx, &rosterv1.StatusRequest{}); err != nil || st.GetState() != "leader" {
		t.Fatalf("status of the leader: %v, state %q", err, st.GetState())
	}
}

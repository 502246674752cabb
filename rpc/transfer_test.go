package rpc_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// transferHook stands in for Raft's leadership transfer on every node of a
// test cluster: it answers what Raft would, and counts the transfers asked
// for.
type transferHook struct {
	answer atomic.Pointer[error]
	calls  atomic.Int64
}

func (h *transferHook) configure(cfg *cluster.Config) {
	cfg.TestHooks.LeadershipTransfer = func(string) error {
		h.calls.Add(1)
		return *h.answer.Load()
	}
}

func (h *transferHook) set(err error) {
	h.answer.Store(&err)
	h.calls.Store(0)
}

// leaderAndAFollower returns c's leader, once there is one, and a running
// node that is not it, for calls made on the leader and through a follower.
func leaderAndAFollower(c *testcluster.Cluster) []*testcluster.Node {
	leader := c.WaitLeader()
	for _, nd := range c.Running() {
		if nd != leader {
			return []*testcluster.Node{leader, nd}
		}
	}
	return []*testcluster.Node{leader, nil}
}

// TestTransferLeadershipSaysWhyItFailed: Raft's own failures of a transfer
// reach the caller as a code, a reason and a message saying what happened
// and what is known of the leader, on the leader and through a follower
// alike: not Internal, not a bare DeadlineExceeded, and never retried into
// a second transfer. Raft's answers are forced through a hook, so each case
// takes at most the 1 s hold.
func TestTransferLeadershipSaysWhyItFailed(t *testing.T) {
	hook := &transferHook{}
	hook.set(nil)
	c := testcluster.New(t, 3, testcluster.Options{
		Configure: hook.configure,
		Server:    func(o *rpc.Options) { o.HoldTimeout = time.Second },
	})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	tests := []struct {
		name   string
		raft   error
		code   codes.Code
		reason string
		want   []string
	}{
		{"another transfer under way", raft.ErrLeadershipTransferInProgress, codes.Aborted, rpc.ReasonTransferInProgress,
			[]string{"leadership transfer in progress", "this one was not started"}},
		{"raft's timeout", errors.New("leadership transfer timeout"), codes.Aborted, rpc.ReasonTransferFailed,
			[]string{"leadership transfer timed out: the target did not win the election", "still leads"}},
		{"target unreachable", errors.New("failed to make TimeoutNow RPC to n2: connection refused"), codes.Aborted, rpc.ReasonTransferFailed,
			[]string{"leadership transfer failed", "TimeoutNow", "still leads"}},
		// Raft says the transfer was made, and no other leader is ever
		// heard from: the wait for one ends before the caller's deadline,
		// with what is known.
		{"new leader unknown", nil, codes.Unavailable, rpc.ReasonNewLeaderUnknown,
			[]string{"leadership was handed over, but the new leader is not known yet", "heard from no other leader within"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, nd := range leaderAndAFollower(c) {
				hook.set(tt.raft)
				_, err := nd.Cluster().TransferLeadership(ctx, &rosterv1.TransferLeadershipRequest{})
				msg := status.Convert(err).Message()
				t.Logf("through %s: %v", nd.ID, err)
				if status.Code(err) != tt.code || rpc.Reason(err) != tt.reason {
					t.Fatalf("through %s: %v (reason %q), want %v with reason %s", nd.ID, err, rpc.Reason(err), tt.code, tt.reason)
				}
				for _, w := range tt.want {
					if !strings.Contains(msg, w) {
						t.Fatalf("through %s: message %q does not say %q", nd.ID, msg, w)
					}
				}
				if n := hook.calls.Load(); n != 1 {
					t.Fatalf("through %s: raft was asked for %d transfers, want 1", nd.ID, n)
				}
			}
		})
	}
}

package main

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/rpc"
)

// TestTransferLeadershipFailuresAreOneLine: when Raft gives up on the
// transfer, or no new leader is known when the wait for one ends, roster
// transfer-leadership exits 1 with one line saying which, in words. Raft's
// answer is forced through a hook; the wait ends within the 1 s hold.
func TestTransferLeadershipFailuresAreOneLine(t *testing.T) {
	var answer atomic.Pointer[error]
	c := testcluster.New(t, 3, testcluster.Options{
		Configure: func(cfg *cluster.Config) {
			cfg.TestHooks.LeadershipTransfer = func(string) error { return *answer.Load() }
		},
		Server: func(o *rpc.Options) { o.HoldTimeout = time.Second },
	})
	c.WaitMembersKnown()
	tests := []struct {
		raft error
		want string
	}{
		{errors.New("leadership transfer timeout"),
			"roster: aborted: leadership transfer timed out: the target did not win the election (target picked by raft); "},
		{nil, "roster: unavailable: leadership was handed over, but the new leader is not known yet: "},
	}
	for _, tt := range tests {
		answer.Store(&tt.raft)
		leader := c.WaitLeader()
		for _, nd := range c.Running() {
			code, out, errOut := runCLI(t, testContext(t), nd.Addr, "transfer-leadership")
			if code != 1 || out != "" || !strings.HasPrefix(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("through %s (leader %s): exit %d, stdout %q, stderr %q; want 1, nothing, one line starting %q",
					nd.ID, leader.ID, code, out, errOut, tt.want)
			}
		}
	}
}

package rpc_test

import (
	"sync"
	"testing"
	"time"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// TestANewLeaderKnowsTokensItHasNotAppliedYet: a node elected with a token's
// entry in its log but not yet applied (its barrier not through) would
// refuse the token, which the followers know and relay calls with, as not
// found. A lookup that misses on such a leader waits for its barrier. The
// new leader's applying is held here until the call is waiting.
func TestANewLeaderKnowsTokensItHasNotAppliedYet(t *testing.T) {
	var mu sync.Mutex
	holds := map[string]chan struct{}{}
	hold := func(id string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		return holds[id]
	}
	c := testcluster.New(t, 3, testcluster.Options{
		Server: func(o *rpc.Options) { o.ACL = rpc.ACLOptions{Enabled: true, BootstrapSecret: bootSecret} },
		Configure: func(cfg *cluster.Config) {
			id := cfg.NodeID
			cfg.TestHooks.FSM.BeforeApply = func(uint64) {
				if ch := hold(id); ch != nil {
					<-ch
				}
			}
		},
	})
	c.Eventually("bootstrap token on every node", 10*time.Second, func() bool {
		for _, nd := range c.Running() {
			if nd.Node.Store().View().TokenBySecret(acl.HashSecret(bootSecret)) == nil {
				return false
			}
		}
		return true
	})
	leader := c.WaitLeader()
	next := c.Followers()[0]
	release := make(chan struct{})
	mu.Lock()
	holds[next.ID] = release
	mu.Unlock()
	released := sync.OnceFunc(func() { close(release) })
	t.Cleanup(released)

	// next stores the token's entry but does not apply it.
	secret := createToken(t, leader, "service:web:read")
	c.Eventually("next to hold the token's entry in its log", 10*time.Second, func() bool {
		return next.Node.Status().CommitIndex >= leader.Node.Status().CommitIndex
	})
	if next.Node.Store().View().TokenBySecret(acl.HashSecret(secret)) != nil {
		t.Fatal("next applied the token's entry while held")
	}
	if err := leader.Node.TransferLeadership(testcluster.Ctx(t), next.ID); err != nil {
		t.Fatalf("transfer to %s: %v", next.ID, err)
	}
	c.Eventually("next to lead, not yet through its barrier", 10*time.Second, func() bool {
		return next.Node.IsLeader()
	})
	if next.Node.LeaderReady() {
		t.Fatal("next is through its barrier while its applying is held")
	}
	rpc.SetTokenHooks(next.Server, rpc.TokenHooks{AwaitLeader: released})
	_, err := next.Registry().GetService(withToken(testcluster.Ctx(t), secret), &rosterv1.GetServiceRequest{Service: "web"})
	if err != nil {
		t.Fatalf("a read with a committed token on a new leader: %v", err)
	}
}

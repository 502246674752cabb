package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/store"
)

// TestFollowersLearnALoneCommitAtOnce: hashicorp/raft tells followers of a
// new commit index only with the next AppendEntries, and with nothing new
// to send that waits for CommitTimeout. Roster's raft (third_party/raft)
// sends one as soon as the commit index moves with no uncommitted entry
// left to carry it. With a CommitTimeout of an hour, each of a few lone
// writes must still reach every follower's state before the next is made.
func TestFollowersLearnALoneCommitAtOnce(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Configure: func(cfg *cluster.Config) { cfg.CommitTimeout = time.Hour }})
	leader := c.WaitLeader()
	ctx := testcluster.Ctx(t)
	for i := range 5 {
		inst := &store.Instance{Namespace: "default", Service: "web", ID: fmt.Sprintf("i%d", i), Address: "10.0.0.1", Port: 80, Weight: 100}
		index, err := leader.Node.Register(ctx, inst, "")
		if err != nil {
			t.Fatal(err)
		}
		c.Eventually(fmt.Sprintf("every follower to apply write %d (index %d)", i, index), 20*time.Second, func() bool {
			for _, f := range c.Followers() {
				if f.Node.Applied() < index {
					return false
				}
			}
			return true
		})
	}
}

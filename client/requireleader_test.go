package client_test

import (
	"slices"
	"testing"
	"time"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// TestCacheLeavesANodeCutOffFromTheMajority: the discovery cache of a
// client whose endpoint is cut off from the majority moves to another
// endpoint once that node has known no leader for its leaderless timeout,
// and follows the changes made meanwhile, instead of taking the bookmarks
// of the node's frozen state for fresh.
func TestCacheLeavesANodeCutOffFromTheMajority(t *testing.T) {
	tc := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
		o.Watch.LeaderlessTimeout = 200 * time.Millisecond
	}})
	tc.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := tc.Followers()[0]
	addrs := []string{f.Addr}
	for _, nd := range tc.Nodes {
		if nd != f {
			addrs = append(addrs, nd.Addr)
		}
	}
	c, err := client.New(ctx, addrs, client.WithConnectTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	reg := func(nd *testcluster.Node, id string) {
		t.Helper()
		if _, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "svc", Id: id, Address: "127.0.0.1", Port: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	reg(tc.Leader(), "a")
	if got, err := c.Instances(ctx, "svc"); err != nil || len(got) != 1 {
		t.Fatalf("before the cut: %v, %v", got, err)
	}
	if c.Endpoint() != f.Addr {
		t.Fatalf("the client uses %s, not the follower %s the test cuts off", c.Endpoint(), f.Addr)
	}

	tc.Partition(f)
	leader := tc.WaitLeader()
	reg(leader, "b")
	if _, err := leader.Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: "svc", Id: "a"}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	if !testcluster.Within(30*time.Second, func() bool {
		s, err := c.CachedService(ctx, "svc")
		if err != nil {
			return false
		}
		ids = ids[:0]
		for _, in := range s.Instances {
			ids = append(ids, in.Id)
		}
		return slices.Equal(ids, []string{"b"})
	}) {
		t.Fatalf("the cache still holds %v from %s, cut off from the majority; the cluster holds [b]", ids, c.Endpoint())
	}
}

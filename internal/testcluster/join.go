package testcluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// Join starts one more node, id, that waits to be joined, and joins it
// through the leader as a voter or a non-voter (read replica). It returns
// once the leader has accepted it.
func (c *Cluster) Join(id string, voter bool, opts Options) *Node {
	c.t.Helper()
	addr, tr := raft.NewInmemTransport(raft.ServerAddress(id + ".inmem:7421"))
	nd := &Node{ID: id, Transport: tr}
	c.mu.Lock()
	c.Nodes = append(c.Nodes, nd)
	c.mu.Unlock()
	c.start(nd, nil, opts)
	c.rewire()
	leader := c.WaitLeader()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := leader.Cluster().Join(ctx, &rosterv1.JoinRequest{NodeId: id, RaftAddr: string(addr), ApiAddr: nd.Addr, NonVoter: !voter}); err != nil {
		c.t.Fatalf("join %s: %v", id, err)
	}
	return nd
}

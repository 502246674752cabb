package cluster

import (
	"errors"
	"fmt"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// nodeIDKey holds, in the stable store, the id of the node the data dir
// belongs to. It lives beside the terms and votes it vouches for, so a
// raft.db copied from another node carries that node's id with it.
var nodeIDKey = []byte("roster_node_id")

// claimDataDir records this node's id in its data dir on the first start,
// and refuses a data dir that belongs to another node.
//
// A node must never start on another node's Raft state: a cloned VM, a disk
// restored from a sibling or a changed node id would otherwise start as if
// nothing happened. Such a node has state, so the vote guard that keeps a
// wiped node out of elections does not apply (bootstrap.go, voteguard.go),
// yet it has not acknowledged what that state says it has: with a sibling's
// stale copy it votes and answers for entries it never held. Raft
// identifies servers by id, and this one would also be counted twice, or
// as the wrong server.
//
// A data dir without the key is adopted: a new one, or one written before
// the id was recorded (the first start after an upgrade), whose owner
// cannot be told from its contents.
func (n *Node) claimDataDir(stable *raftboltdb.BoltStore) error {
	owner, err := stable.Get(nodeIDKey)
	switch {
	case errors.Is(err, raftboltdb.ErrKeyNotFound):
		if err := stable.Set(nodeIDKey, []byte(n.cfg.NodeID)); err != nil {
			return fmt.Errorf("record the node id in data dir %s: %w", n.cfg.DataDir, err)
		}
		n.logger.Info("data dir claimed: this node's id is recorded in it (a new data dir, or one written before ids were recorded)",
			"data_dir", n.cfg.DataDir, "node_id", n.cfg.NodeID)
		return nil
	case err != nil:
		return fmt.Errorf("read the node id of data dir %s: %w", n.cfg.DataDir, err)
	case string(owner) != n.cfg.NodeID:
		return fmt.Errorf("data dir %s belongs to node %q, not to %q (this node's id): start %s with its own data dir, or %s with this one; "+
			"to rename a node or replace %s, remove it from the cluster and start the new node with an empty data dir to join; "+
			"never start a node on a copy of another node's data dir",
			n.cfg.DataDir, owner, n.cfg.NodeID, n.cfg.NodeID, owner, owner)
	}
	return nil
}

package cluster

import "fmt"

// Term returns this node's current Raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// LastIndex returns the index of the last entry in this node's Raft log,
// committed or not, counting entries the FSM never sees (no-ops,
// configuration changes). Benchmarks and tests use it to count entries.
func (n *Node) LastIndex() uint64 { return n.raft.LastIndex() }

// Snapshot takes a Raft snapshot now and compacts the log behind it, as the
// snapshot threshold would.
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("snapshot: %w", mapRaftError(err))
	}
	return nil
}

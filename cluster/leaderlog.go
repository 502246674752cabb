package cluster

import (
	"sync"
	"time"
)

// maxLeaderChanges bounds the leader history a node keeps.
const maxLeaderChanges = 100

// LeaderChange is one change of the leader this node follows, as it saw it.
type LeaderChange struct {
	// LeaderID is the new leader; empty when the node lost its leader.
	LeaderID string
	// Term is this node's Raft term when it saw the change.
	Term uint64
	At   time.Time
}

// leaderLog is the bounded history of the leaders one node has seen since
// its process started. It is this node's view, kept in memory only: it is
// what an operator looks at during an incident, not replicated state.
type leaderLog struct {
	mu      sync.Mutex
	changes []LeaderChange
}

// add records id as the leader seen at term; repeating the current leader
// records nothing.
func (l *leaderLog) add(id string, term uint64, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.changes); n > 0 && l.changes[n-1].LeaderID == id {
		return
	}
	if len(l.changes) == maxLeaderChanges {
		copy(l.changes, l.changes[1:])
		l.changes = l.changes[:maxLeaderChanges-1]
	}
	l.changes = append(l.changes, LeaderChange{LeaderID: id, Term: term, At: at})
}

// list returns a copy of the history, oldest first.
func (l *leaderLog) list() []LeaderChange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]LeaderChange(nil), l.changes...)
}

// LeaderChanges returns the leaders this node has seen since it started,
// oldest first (the last 100).
func (n *Node) LeaderChanges() []LeaderChange { return n.leaderLog.list() }

// StartedAt is when this node was created.
func (n *Node) StartedAt() time.Time { return n.started }

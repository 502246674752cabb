package cluster

import (
	"testing"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/store"
)

// TestLastCommandSkipsEntriesTheFSMNeverSees: a read index is the last
// entry at or below the commit index that the FSM applies, since no node's
// applied index ever equals a no-op's, barrier's or configuration's; once
// the log is compacted, the node's own applied index stands in.
func TestLastCommandSkipsEntriesTheFSMNeverSees(t *testing.T) {
	logs := raft.NewInmemStore()
	types := []raft.LogType{raft.LogConfiguration, raft.LogNoop, raft.LogCommand, raft.LogBarrier, raft.LogNoop, raft.LogConfiguration}
	for i, lt := range types {
		if err := logs.StoreLog(&raft.Log{Index: uint64(i + 1), Term: 1, Type: lt}); err != nil {
			t.Fatal(err)
		}
	}
	n := &Node{logs: logs, store: store.New(store.DefaultOptions())}
	w := n.store.Begin(3)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ commit, want uint64 }{{6, 3}, {4, 3}, {3, 3}, {2, 0}, {0, 0}} {
		got, err := n.lastCommand(tt.commit)
		if err != nil || got != tt.want {
			t.Fatalf("lastCommand(%d) = %d, %v; want %d", tt.commit, got, err, tt.want)
		}
	}
	// Compacted up to 4: the scan from 6 runs off the log's start, and the
	// node's applied index (3, restored or applied) is the answer.
	if err := logs.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	if got, err := n.lastCommand(6); err != nil || got != 3 {
		t.Fatalf("lastCommand(6) after compaction = %d, %v; want 3", got, err)
	}
}

package cluster

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// snapshotFloorKey holds, in the stable store, the highest index of a
// snapshot this node has persisted, taken or installed from its leader.
// Everything up to it was committed and applied here, so a restart must
// come back at least that far. A node that installed its leader's snapshot
// keeps no log before it (raft empties a WAL then), so if that snapshot is
// then damaged, raft falls back to an older one with nothing to replay and
// the node would start behind what it had acknowledged. The floor turns
// that into a refusal to start.
var snapshotFloorKey = []byte("roster_snapshot_floor")

// flooredSnapshots records the snapshot floor as each snapshot is
// persisted.
type flooredSnapshots struct {
	raft.SnapshotStore
	stable raft.StableStore
	// mu makes raising the floor one step: a snapshot taken and one
	// installed may close at once, and the lower must not win.
	mu sync.Mutex
}

func (s *flooredSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	return &flooredSink{SnapshotSink: sink, store: s, index: index}, nil
}

// flooredSink raises the floor once its snapshot is persisted. A crash
// in between leaves the floor lower, which only weakens the check.
type flooredSink struct {
	raft.SnapshotSink
	store *flooredSnapshots
	index uint64
}

func (s *flooredSink) Close() error {
	if err := s.SnapshotSink.Close(); err != nil {
		return err
	}
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	floor, err := snapshotFloor(s.store.stable)
	if err != nil {
		return err
	}
	if s.index <= floor {
		return nil
	}
	if err := s.store.stable.SetUint64(snapshotFloorKey, s.index); err != nil {
		return fmt.Errorf("record the snapshot floor: %w", err)
	}
	return nil
}

func snapshotFloor(stable raft.StableStore) (uint64, error) {
	v, err := stable.GetUint64(snapshotFloorKey)
	if errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the snapshot floor: %w", err)
	}
	return v, nil
}

// checkSnapshotFloor refuses a raft that restored less than this node had
// persisted in a snapshot.
func (n *Node) checkSnapshotFloor(r *raft.Raft, stable raft.StableStore) error {
	floor, err := snapshotFloor(stable)
	if err != nil {
		return err
	}
	if last := r.LastIndex(); last < floor {
		return fmt.Errorf("the raft state in %s reaches only index %d, but this node persisted a snapshot at index %d: "+
			"that snapshot is damaged or lost and the log does not cover it; move the data dir aside and rejoin this node "+
			"to the cluster to copy the state from the others", n.cfg.DataDir, last, floor)
	}
	return nil
}

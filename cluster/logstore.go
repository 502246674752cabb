package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// Raft log stores.
const (
	// LogStoreWAL keeps the log in hashicorp/raft-wal segment files under
	// DataDir/wal: an append costs one write and one fsync of the segment
	// file, where bolt rewrites B+tree pages and its freelist.
	LogStoreWAL = "wal"
	// LogStoreBolt keeps the log in raft.db with the stable store.
	LogStoreBolt = "bolt"
	// DefaultLogStore is what a new data dir gets. The WAL measured lower
	// single-writer latency and higher throughput than bolt in every run
	// (docs/performance.md). raft-wal v0.4.0's lost log after a cleared
	// suffix (hashicorp/raft-wal#31) is fixed in v0.4.1;
	// TestLogStoresSurviveACrashAfterASuffixIsCleared checks it.
	DefaultLogStore = LogStoreWAL
)

// logStoreKind decides the log store: the configured one, else the one
// the data dir holds, else DefaultLogStore.
func (n *Node) logStoreKind(bolt *raftboltdb.BoltStore) (string, error) {
	if n.cfg.LogStore != "" {
		return n.cfg.LogStore, nil
	}
	last, err := bolt.LastIndex()
	if err != nil {
		return "", fmt.Errorf("read %s: %w", filepath.Join(n.cfg.DataDir, "raft.db"), err)
	}
	if last > 0 {
		return LogStoreBolt, nil
	}
	if entries, err := os.ReadDir(n.walDir()); err == nil && len(entries) > 0 {
		return LogStoreWAL, nil
	}
	return DefaultLogStore, nil
}

// walDir is where the WAL log store lives.
func (n *Node) walDir() string { return filepath.Join(n.cfg.DataDir, "wal") }

// openWAL opens (or creates) the WAL log store. A data dir whose bolt file
// already holds log entries was created with the bolt log store: the WAL
// would start empty beside it, so it is refused.
func (n *Node) openWAL(bolt *raftboltdb.BoltStore) (raft.LogStore, error) {
	last, err := bolt.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(n.cfg.DataDir, "raft.db"), err)
	}
	if last > 0 {
		return nil, fmt.Errorf("%s holds a raft log in raft.db (the bolt log store): start this node with the bolt log store, "+
			"or move the data dir aside and rejoin the node to the cluster", n.cfg.DataDir)
	}
	if err := os.MkdirAll(n.walDir(), 0o750); err != nil {
		return nil, fmt.Errorf("create %s: %w", n.walDir(), err)
	}
	// The WAL's Close leaves its meta database open (and locked), so a
	// node restarted in the same process would wait on the lock forever:
	// the node owns the meta database and closes it after the WAL.
	meta := &metadb.BoltMetaDB{}
	segment := raftwal.DefaultSegmentSize
	if n.cfg.WALSegmentSize > 0 {
		segment = n.cfg.WALSegmentSize
	}
	w, err := raftwal.Open(n.walDir(), raftwal.WithLogger(n.logger.Named("wal")), raftwal.WithMetaStore(meta), raftwal.WithSegmentSize(segment))
	if err != nil {
		_ = meta.Close()
		return nil, fmt.Errorf("open raft log %s: %w", n.walDir(), err)
	}
	n.closers = append(n.closers, func() error { return errors.Join(w.Close(), meta.Close()) })
	// raft-wal cuts a damaged tail segment at the damage, as it would a
	// torn write: a log garbled near its start comes back empty, and the
	// node would start as if it had never been a member. A marker in the
	// stable store, set when the first entry is stored, turns that into a
	// refusal to start.
	last, err = w.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("read raft log %s: %w", n.walDir(), err)
	}
	had, err := bolt.GetUint64(walUsedKey)
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(n.cfg.DataDir, "raft.db"), err)
	}
	if had > 0 && last == 0 {
		return nil, fmt.Errorf("the raft log in %s is empty although this node has stored entries in it before: "+
			"the log was lost or damaged; move the data dir aside and rejoin this node to the cluster", n.walDir())
	}
	m := &markedWAL{WAL: w, stable: bolt, marked: had > 0}
	if last > 0 && had == 0 {
		// A crash between clearing the marker and emptying the log (see
		// DeleteRange), or a failed delete: the entries are still here, so
		// losing them from now on must be refused again.
		if err := m.mark(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// walUsedKey marks, in the stable store, that the WAL has held entries.
var walUsedKey = []byte("roster_wal_used")

// markedWAL is the WAL log store that sets walUsedKey with the first
// entries it stores, and clears it before the log is emptied on purpose.
type markedWAL struct {
	*raftwal.WAL
	stable *raftboltdb.BoltStore
	// mu orders the marker with the entries: raft stores entries from its
	// main goroutine and compacts from its snapshot goroutine.
	mu     sync.Mutex
	marked bool
}

// StoreLogs stores the entries, then sets the marker once.
func (m *markedWAL) StoreLogs(logs []*raft.Log) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.WAL.StoreLogs(logs); err != nil {
		return err
	}
	return m.mark()
}

// mark sets the marker unless it is set; under mu, or before m is shared.
func (m *markedWAL) mark() error {
	if m.marked {
		return nil
	}
	if err := m.stable.SetUint64(walUsedKey, 1); err != nil {
		return fmt.Errorf("mark the raft log as used: %w", err)
	}
	m.marked = true
	return nil
}

// StoreLog stores one entry, then sets the marker once.
func (m *markedWAL) StoreLog(log *raft.Log) error {
	return m.StoreLogs([]*raft.Log{log})
}

// DeleteRange deletes entries min..max. When that is the whole log, as
// when a follower installs its leader's snapshot (the WAL is a monotonic
// store, so raft empties it), the marker is cleared first: an empty log is
// then what the node meant to keep, not a lost one. A crash after the
// marker is cleared and before the entries are gone leaves a full log and
// no marker, which starts, and opening it sets the marker again.
func (m *markedWAL) DeleteRange(min, max uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	first, err := m.WAL.FirstIndex()
	if err != nil {
		return err
	}
	last, err := m.WAL.LastIndex()
	if err != nil {
		return err
	}
	if min <= first && max >= last && m.marked {
		if err := m.stable.SetUint64(walUsedKey, 0); err != nil {
			return fmt.Errorf("unmark the raft log before emptying it: %w", err)
		}
		m.marked = false
	}
	return m.WAL.DeleteRange(min, max)
}

// refuseWAL refuses to open a data dir created with the WAL log store with
// the bolt one: bolt would start with an empty log beside it.
func (n *Node) refuseWAL() error {
	entries, err := os.ReadDir(n.walDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", n.walDir(), err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s holds a raft log in wal/ (the wal log store): start this node with the wal log store, "+
			"or move the data dir aside and rejoin the node to the cluster", n.cfg.DataDir)
	}
	return nil
}

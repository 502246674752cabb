package cluster

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// suffixClearedThenCrashed stores entries 1..10 in the log store that open
// returns, clears the last one as Raft does when a new leader overrules a
// follower's tail ("clearing log suffix"), stops without a clean close
// (crash), reopens, and returns the error of reading entry 1.
func suffixClearedThenCrashed(t *testing.T, open func(dir string) (raft.LogStore, func())) error {
	t.Helper()
	dir := t.TempDir()
	s, crash := open(dir)
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("entry")})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(10, 10); err != nil {
		t.Fatal(err)
	}
	crash()
	s, crash = open(dir)
	defer crash()
	var l raft.Log
	return s.GetLog(1, &l)
}

func openBolt(t *testing.T) func(string) (raft.LogStore, func()) {
	return func(dir string) (raft.LogStore, func()) {
		b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
		if err != nil {
			t.Fatal(err)
		}
		// Every bolt transaction is durable when it returns; closing the
		// file adds nothing a crash would lose, and frees its lock.
		return b, func() { _ = b.Close() }
	}
}

func openWALStore(t *testing.T) func(string) (raft.LogStore, func()) {
	return func(dir string) (raft.LogStore, func()) {
		meta := &metadb.BoltMetaDB{}
		w, err := raftwal.Open(dir, raftwal.WithMetaStore(meta))
		if err != nil {
			t.Fatal(err)
		}
		// A crash: the WAL is not closed before it is opened again; only
		// the meta database's lock is let go, as the process ending would.
		// Its goroutines are stopped when the test ends.
		t.Cleanup(func() { _ = w.Close() })
		return w, func() { _ = meta.Close() }
	}
}

// TestLogStoresSurviveACrashAfterASuffixIsCleared: the chaos run that lost
// a node to raft-wal v0.4.0 (a follower killed right after Raft cleared a
// log suffix could not read its log after the restart: "sealed segment has
// no index block", hashicorp/raft-wal#31, fixed in v0.4.1), in
// milliseconds. Both log stores must survive it.
func TestLogStoresSurviveACrashAfterASuffixIsCleared(t *testing.T) {
	for kind, open := range map[string]func(string) (raft.LogStore, func()){LogStoreBolt: openBolt(t), LogStoreWAL: openWALStore(t)} {
		if err := suffixClearedThenCrashed(t, open); err != nil {
			t.Errorf("log store %s after a cleared suffix and a crash: %v", kind, err)
		}
	}
}

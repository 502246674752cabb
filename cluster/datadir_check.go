package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CheckDataDir reads dir's raft.db (the bolt log and stable store) once,
// read-only, before a node opens it: a file cut short or overwritten makes
// bolt panic while it opens, and a node must refuse to start with a plain
// error instead. A missing or empty raft.db passes (a new node; or one that
// recovers from its snapshots). A raft.db another process holds open is
// reported as locked, not damaged.
func CheckDataDir(dir string) (err error) {
	path := filepath.Join(dir, "raft.db")
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || err == nil && fi.Size() == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	damaged := func(why any) error {
		return fmt.Errorf("data dir %s: %s is damaged (%v); this node will not start on it: "+
			"restore the data dir from a backup, or move it aside and rejoin this node to its cluster (--join)", dir, path, why)
	}
	// bolt maps the file and trusts its meta page: a page past the end of
	// a file cut short is a SIGBUS, which no recover catches. So the meta
	// pages are read first, and the file must hold every page they count.
	if need, merr := boltSize(path); merr != nil {
		return damaged(merr)
	} else if need > fi.Size() {
		return damaged(fmt.Sprintf("cut short: %d bytes, its meta page counts %d", fi.Size(), need))
	}
	defer func() {
		if r := recover(); r != nil {
			err = damaged(r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		// The lock is held: the file is in use, not damaged.
		return fmt.Errorf("data dir %s: %s is locked: another rosterd process is using this data dir; "+
			"stop that process first, or give this node a data dir of its own", dir, path)
	}
	if err != nil {
		return damaged(err)
	}
	defer db.Close()
	// Walk every bucket and key: a page past the end of the file panics or
	// fails here rather than in Raft.
	return db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error { return nil })
		})
	})
}

// boltSize returns the size a bolt file's newest valid meta page says the
// file has (its page count times its page size).
func boltSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	const (
		pageHeader = 16
		magic      = 0xED0CDAED
		sumOffset  = 56 // the meta fields before its checksum
	)
	// meta reads the meta page at off: page size, page count, txid.
	meta := func(off int64) (pageSize uint32, pgid, txid uint64, ok bool) {
		buf := make([]byte, pageHeader+sumOffset+8)
		if _, err := f.ReadAt(buf, off); err != nil {
			return 0, 0, 0, false
		}
		m := buf[pageHeader:]
		le := binary.LittleEndian
		h := fnv.New64a()
		h.Write(m[:sumOffset])
		if le.Uint32(m[0:]) != magic || h.Sum64() != le.Uint64(m[sumOffset:]) {
			return 0, 0, 0, false
		}
		return le.Uint32(m[8:]), le.Uint64(m[40:]), le.Uint64(m[48:]), true
	}
	ps0, pg0, tx0, ok0 := meta(0)
	second := int64(os.Getpagesize())
	if ok0 {
		second = int64(ps0)
	}
	ps1, pg1, tx1, ok1 := meta(second)
	switch {
	case ok0 && (!ok1 || tx0 >= tx1):
		return int64(pg0) * int64(ps0), nil
	case ok1:
		return int64(pg1) * int64(ps1), nil
	default:
		return 0, errors.New("no valid meta page")
	}
}

package cluster_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roster-registry/roster/cluster"
)

// TestTruncatedBoltLogNeverServesPartialState cuts raft.db (the bolt log
// and stable store) short after a clean shutdown, as rosterd starts a node:
// CheckDataDir, then the node. The node must either
// refuse to start with an error naming the file, or start with the whole
// state (from its snapshot, which covers every write); never panic, never
// serve part of it.
func TestTruncatedBoltLogNeverServesPartialState(t *testing.T) {
	for _, tc := range []struct {
		name string
		size func(int64) int64
	}{
		{"to nothing", func(int64) int64 { return 0 }},
		{"inside the header", func(int64) int64 { return 100 }},
		{"to its first pages", func(int64) int64 { return 16 << 10 }},
		{"by half", func(n int64) int64 { return n / 2 }},
		{"by one page", func(n int64) int64 { return n - 4096 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			n, err := diskNode(t, dir, 1<<20, 10_000)
			if err != nil {
				t.Fatal(err)
			}
			waitReady(t, n)
			writeAndSnapshot(t, n, 0, 100)
			if err := n.Shutdown(); err != nil {
				t.Fatal(err)
			}
			db := filepath.Join(dir, "raft.db")
			fi, err := os.Stat(db)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(db, tc.size(fi.Size())); err != nil {
				t.Fatal(err)
			}
			var n2 *cluster.Node
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("restart on a truncated raft.db panicked: %v", r)
					}
				}()
				// rosterd checks the data dir before it opens the node.
				if err = cluster.CheckDataDir(dir); err == nil {
					n2, err = diskNode(t, dir, 1<<20, 10_000)
				}
			}()
			if err != nil {
				if !strings.Contains(err.Error(), dir) {
					t.Fatalf("refused without naming the data dir: %v", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			defer n2.Shutdown()
			if got := n2.Store().View().Count(); got != 100 {
				t.Fatalf("started on a truncated raft.db serving %d of 100 instances", got)
			}
			t.Logf("recovered from the snapshot: 100 instances")
		})
	}
}

// TestDataDirInUseIsLockedNotDamaged: a second node on a data dir a
// running node holds is refused as locked, never told to discard it.
func TestDataDirInUseIsLockedNotDamaged(t *testing.T) {
	dir := t.TempDir()
	n, err := diskNode(t, dir, 1<<20, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	waitReady(t, n)
	err = cluster.CheckDataDir(dir)
	if err == nil || !strings.Contains(err.Error(), "locked") || strings.Contains(err.Error(), "damaged") || strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("check of a data dir in use: %v, want it called locked, not damaged", err)
	}
}

package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/store"
)

func diskNode(t *testing.T, dir string, threshold, trailing uint64) (*cluster.Node, error) {
	_, tr := raft.NewInmemTransport(raft.ServerAddress("n1.inmem:7421"))
	cfg := cluster.Config{
		NodeID: "n1", DataDir: dir, Transport: tr, Bootstrap: true, APIAddr: "127.0.0.1:1",
		SnapshotThreshold: threshold, TrailingLogs: trailing, SnapshotInterval: time.Hour,
	}
	cfg.UseFastTimeouts()
	return cluster.New(cfg)
}

// newest returns the snapshot with the highest index; directory names are
// TERM-INDEX-MILLIS, so they do not sort as strings.
func newest(paths []string) string {
	index := func(p string) int {
		var term, idx int
		fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d-%d-", &term, &idx)
		return idx
	}
	sort.Slice(paths, func(i, j int) bool { return index(paths[i]) < index(paths[j]) })
	return paths[len(paths)-1]
}

func waitReady(t *testing.T, n *cluster.Node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !n.LeaderReady() {
		if time.Now().After(deadline) {
			t.Fatal("single node did not become a ready leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeAndSnapshot(t *testing.T, n *cluster.Node, from, count int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+count; i++ {
		inst := &store.Instance{Namespace: "default", Service: "web", ID: fmt.Sprintf("i%d", i), Address: "10.0.0.1", Port: 80, Weight: 100}
		if _, err := n.Register(ctx, inst, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptNewestSnapshotRefusesToStartClearly: when the newest snapshot is
// unreadable and the log no longer reaches back to the older one, the node
// must refuse to start with a plain error naming the data dir, not panic.
func TestCorruptNewestSnapshotRefusesToStartClearly(t *testing.T) {
	dir := t.TempDir()
	n, err := diskNode(t, dir, 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, n)
	writeAndSnapshot(t, n, 0, 50)
	writeAndSnapshot(t, n, 50, 50)
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
	if len(snaps) != 2 {
		t.Fatalf("want 2 snapshots, found %v", snaps)
	}
	if err := os.Truncate(newest(snaps), 10); err != nil {
		t.Fatal(err)
	}

	var n2 *cluster.Node
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("restart panicked instead of refusing clearly: %v", r)
			}
		}()
		n2, err = diskNode(t, dir, 1<<20, 1)
	}()
	if err == nil {
		_ = n2.Shutdown()
		t.Fatal("a node whose state cannot be restored started anyway")
	}
	if !strings.Contains(err.Error(), dir) {
		t.Fatalf("error does not name the data dir: %v", err)
	}
}

// TestRestartFallsBackToOlderSnapshotWhenLogCovers: with trailing logs
// reaching back past the older snapshot, a corrupt newest snapshot is
// survivable and no state is lost.
func TestRestartFallsBackToOlderSnapshotWhenLogCovers(t *testing.T) {
	dir := t.TempDir()
	n, err := diskNode(t, dir, 1<<20, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, n)
	writeAndSnapshot(t, n, 0, 50)
	writeAndSnapshot(t, n, 50, 50)
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
	if err := os.Truncate(newest(snaps), 10); err != nil {
		t.Fatal(err)
	}
	n2, err := diskNode(t, dir, 1<<20, 10_000)
	if err != nil {
		t.Fatalf("restart with a usable older snapshot failed: %v", err)
	}
	defer n2.Shutdown()
	waitReady(t, n2)
	if got := n2.Store().View().Count(); got != 100 {
		t.Fatalf("after restart %d instances, want 100", got)
	}
}

// TestWALSegmentSizeBoundsWhatACompactedLogKeeps: the WAL frees a compacted
// log a whole segment at a time, so WALSegmentSize bounds how much of it
// stays on disk (and is still served to a follower behind) after a
// snapshot.
func TestWALSegmentSizeBoundsWhatACompactedLogKeeps(t *testing.T) {
	dir := t.TempDir()
	_, tr := raft.NewInmemTransport(raft.ServerAddress("n1.inmem:7421"))
	cfg := cluster.Config{
		NodeID: "n1", DataDir: dir, Transport: tr, Bootstrap: true, APIAddr: "127.0.0.1:1",
		SnapshotThreshold: 1 << 20, TrailingLogs: 1, SnapshotInterval: time.Hour,
		LogStore: cluster.LogStoreWAL, WALSegmentSize: 64 << 10,
	}
	cfg.UseFastTimeouts()
	n, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	waitReady(t, n)
	segments := func() []string {
		s, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
		sort.Strings(s)
		return s
	}
	// Entries of over 1 KB: 300 of them fill several 64 KiB segments.
	blob := map[string]string{"blob": strings.Repeat("x", 1024)}
	for i := 0; i < 300; i++ {
		inst := &store.Instance{Namespace: "default", Service: "web", ID: fmt.Sprintf("i%d", i), Address: "10.0.0.1", Port: 80, Weight: 100, Labels: &store.Labels{Metadata: blob}}
		if _, err := n.Register(context.Background(), inst, ""); err != nil {
			t.Fatal(err)
		}
	}
	before := segments()
	if len(before) < 3 {
		t.Fatalf("300 entries made %d WAL segments of 64 KiB, want several: %v", len(before), before)
	}
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	// raft-wal deletes a segment's file once no reader holds it.
	var after []string
	eventually(t, fmt.Sprintf("a snapshot with 1 trailing entry to free the first of the WAL segments %v", before), func() bool {
		after = segments()
		return len(after) > 0 && after[0] != before[0]
	})
	if len(after) >= len(before) {
		t.Fatalf("a snapshot with 1 trailing entry freed no whole segment: before %v, after %v", before, after)
	}
}

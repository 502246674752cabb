package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/roster-registry/roster/store"
)

// startOnDisk starts a single-voter node on dir with the given log store,
// and waits until it leads.
func startOnDisk(t *testing.T, dir, logStore string) (*Node, error) {
	t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress("n1.inmem:7421"))
	cfg := Config{NodeID: "n1", DataDir: dir, Transport: tr, Bootstrap: true, APIAddr: "127.0.0.1:1", LogStore: logStore, BootstrapListen: -1}
	cfg.UseFastTimeouts()
	n, err := New(cfg)
	if err != nil {
		return nil, err
	}
	poll(t, "a ready leader", n.LeaderReady)
	return n, nil
}

func TestLogStoresKeepTheirDataDirAndRefuseTheOther(t *testing.T) {
	for _, tc := range []struct{ created, other string }{{LogStoreWAL, LogStoreBolt}, {LogStoreBolt, LogStoreWAL}} {
		t.Run(tc.created, func(t *testing.T) {
			dir := t.TempDir()
			n, err := startOnDisk(t, dir, tc.created)
			if err != nil {
				t.Fatal(err)
			}
			in := &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: "10.0.0.1", Port: 80, Weight: 100}
			if _, err := n.Register(context.Background(), in, ""); err != nil {
				t.Fatal(err)
			}
			if err := n.Shutdown(); err != nil {
				t.Fatal(err)
			}
			_, walErr := os.Stat(filepath.Join(dir, "wal"))
			if hasWAL := walErr == nil; hasWAL != (tc.created == LogStoreWAL) {
				t.Fatalf("%s log store: wal dir exists = %v", tc.created, hasWAL)
			}

			// The other store would start from an empty log beside the real one.
			if n, err := startOnDisk(t, dir, tc.other); err == nil {
				_ = n.Shutdown()
				t.Fatalf("a %s data dir opened with the %s log store", tc.created, tc.other)
			} else if !strings.Contains(err.Error(), tc.created+" log store") {
				t.Fatalf("refusal does not name the store the data dir holds: %v", err)
			}

			// No choice: the store the data dir holds, with its state.
			n, err = startOnDisk(t, dir, "")
			if err != nil {
				t.Fatal(err)
			}
			defer n.Shutdown()
			poll(t, "the instance replayed from the log", func() bool {
				got, err := n.Store().View().Instance(nil, in.Key())
				return err == nil && got != nil
			})
		})
	}
}

func TestAWALLostAfterUseRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	n, err := startOnDisk(t, dir, LogStoreWAL)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	// What raft-wal leaves of a log damaged near its start: nothing.
	if err := os.RemoveAll(filepath.Join(dir, "wal")); err != nil {
		t.Fatal(err)
	}
	if n, err := startOnDisk(t, dir, LogStoreWAL); err == nil {
		_ = n.Shutdown()
		t.Fatal("a node whose used WAL is gone started")
	} else if !strings.Contains(err.Error(), "lost or damaged") {
		t.Fatalf("refusal does not say what happened: %v", err)
	}
}

// openWALOn opens dir's stable store and WAL log store as a node does; the
// returned close func closes both.
func openWALOn(t *testing.T, dir string) (raft.LogStore, func(), error) {
	t.Helper()
	n := &Node{cfg: Config{DataDir: dir}, logger: hclog.NewNullLogger()}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	n.closers = append(n.closers, bolt.Close)
	w, err := n.openWAL(bolt)
	return w, func() { _ = n.closeAll() }, err
}

// TestAWALEmptiedBySnapshotInstallRestarts: raft-wal is a monotonic log
// store, so a follower that installs a snapshot from its leader deletes its
// whole log (raft's removeOldLogs). Killed before the next entry arrives, it
// restarts with an empty WAL; that is not a lost log, and it must start.
func TestAWALEmptiedBySnapshotInstallRestarts(t *testing.T) {
	dir := t.TempDir()
	w, closeStores, err := openWALOn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if mono, ok := w.(raft.MonotonicLogStore); !ok || !mono.IsMonotonic() {
		t.Fatal("the WAL log store is not monotonic: raft would not empty it on a snapshot install")
	}
	if err := w.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand}, {Index: 2, Term: 1, Type: raft.LogCommand}}); err != nil {
		t.Fatal(err)
	}
	// removeOldLogs after an installed snapshot: every entry goes.
	if err := w.DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	closeStores()

	w, closeStores, err = openWALOn(t, dir)
	if err != nil {
		t.Fatalf("a WAL emptied by a snapshot install is refused at restart: %v", err)
	}
	// Once entries come again, losing them is refused again.
	if err := w.StoreLogs([]*raft.Log{{Index: 7, Term: 2, Type: raft.LogCommand}}); err != nil {
		t.Fatal(err)
	}
	closeStores()
	if err := openAfterLosingTheWAL(t, dir); err == nil || !strings.Contains(err.Error(), "lost or damaged") {
		t.Fatalf("a WAL lost after entries came again: got %v, want a refusal", err)
	}
}

// openAfterLosingTheWAL deletes dir's WAL and returns the error of opening
// the log store again.
func openAfterLosingTheWAL(t *testing.T, dir string) error {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(dir, "wal")); err != nil {
		t.Fatal(err)
	}
	_, closeStores, err := openWALOn(t, dir)
	closeStores()
	return err
}

// TestAFullWALWithoutItsMarkerIsMarkedAgain: a crash after DeleteRange
// cleared the marker and before the entries were deleted leaves a full log
// without a marker. It starts, and is marked again at once, so losing it
// later is refused.
func TestAFullWALWithoutItsMarkerIsMarkedAgain(t *testing.T) {
	dir := t.TempDir()
	w, closeStores, err := openWALOn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand}}); err != nil {
		t.Fatal(err)
	}
	closeStores()
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	if err := bolt.SetUint64(walUsedKey, 0); err != nil {
		t.Fatal(err)
	}
	_ = bolt.Close()
	_, closeStores, err = openWALOn(t, dir)
	closeStores()
	if err != nil {
		t.Fatalf("a full WAL whose marker was cleared is refused: %v", err)
	}
	if err := openAfterLosingTheWAL(t, dir); err == nil || !strings.Contains(err.Error(), "lost or damaged") {
		t.Fatalf("opening a full WAL without a marker did not mark it: once lost, got %v, want a refusal", err)
	}
}

// emptyTheLog deletes every entry of dir's WAL, as raft does on a follower
// that installs its leader's snapshot.
func emptyTheLog(t *testing.T, dir string) {
	t.Helper()
	w, closeStores, err := openWALOn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStores()
	first, err := w.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := w.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteRange(first, last); err != nil {
		t.Fatal(err)
	}
}

// TestANodeBehindItsNewestSnapshotRefusesToStart: a follower that
// installed its leader's snapshot keeps no log before it. If that snapshot
// is then damaged, raft restores the older one with nothing to replay, and
// the node would start behind what it had applied and acknowledged. It
// must refuse instead; with the snapshot intact it starts.
func TestANodeBehindItsNewestSnapshotRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	n, err := startOnDisk(t, dir, LogStoreWAL)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		in := &store.Instance{Namespace: "default", Service: "web", ID: fmt.Sprintf("i%d", i), Address: "10.0.0.1", Port: 80, Weight: 100}
		if _, err := n.Register(context.Background(), in, ""); err != nil {
			t.Fatal(err)
		}
		if i == 2 || i == 5 {
			if err := n.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	emptyTheLog(t, dir)
	n, err = startOnDisk(t, dir, LogStoreWAL)
	if err != nil {
		t.Fatalf("a node with its snapshots and an emptied log did not start: %v", err)
	}
	if got := n.Store().View().Count(); got != 6 {
		t.Fatalf("restored %d instances, want 6", got)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	emptyTheLog(t, dir)
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
	var newest string
	var newestIndex uint64
	for _, p := range snaps {
		var term, index uint64
		fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d-%d-", &term, &index)
		if index >= newestIndex {
			newest, newestIndex = p, index
		}
	}
	if len(snaps) != 2 {
		t.Fatalf("want 2 snapshots, found %v", snaps)
	}
	if err := os.Truncate(newest, 10); err != nil {
		t.Fatal(err)
	}
	if n, err := startOnDisk(t, dir, LogStoreWAL); err == nil {
		got := n.Store().View().Count()
		_ = n.Shutdown()
		t.Fatalf("a node whose newest snapshot is damaged and whose log is empty started, with %d of 6 instances", got)
	} else if !strings.Contains(err.Error(), fmt.Sprintf("persisted a snapshot at index %d", newestIndex)) {
		t.Fatalf("refusal does not say what happened: %v", err)
	}
}

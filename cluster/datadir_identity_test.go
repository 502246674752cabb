package cluster

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/roster-registry/roster/store"
)

// newDiskNode starts node id as a single voter on dir, bootstrapping it
// when dir is empty; it returns New's error.
func newDiskNode(t *testing.T, id, dir string) (*Node, error) {
	t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress(id + ".inmem:7421"))
	cfg := Config{NodeID: id, DataDir: dir, Transport: tr, Bootstrap: true, APIAddr: "127.0.0.1:1", BootstrapListen: -1}
	cfg.UseFastTimeouts()
	n, err := New(cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	return n, nil
}

// startDiskNode starts node id on dir, as newDiskNode, and waits until it
// leads.
func startDiskNode(t *testing.T, id, dir string) (*Node, error) {
	t.Helper()
	n, err := newDiskNode(t, id, dir)
	if err != nil {
		return nil, err
	}
	poll(t, id+" to lead", n.LeaderReady)
	return n, nil
}

// copyDir copies the files under src to dst, as a disk restored from a
// sibling or a cloned VM would hold them.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o750)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dataDirOfN1 returns a new data dir on which node n1 registered inst and
// was shut down.
func dataDirOfN1(t *testing.T) (string, *store.Instance) {
	t.Helper()
	dir := t.TempDir()
	n1, err := startDiskNode(t, "n1", dir)
	if err != nil {
		t.Fatal(err)
	}
	inst := &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: "10.0.0.1", Port: 80, Weight: 100}
	if _, err := n1.Register(context.Background(), inst, ""); err != nil {
		t.Fatal(err)
	}
	if err := n1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	return dir, inst
}

// refusedAs checks that starting id on dir is refused with one line that
// names the dir, its owner and the id asked for.
func refusedAs(t *testing.T, id, dir, owner string) {
	t.Helper()
	n, err := newDiskNode(t, id, dir)
	if err == nil {
		_ = n.Shutdown()
		t.Fatalf("%s started on the data dir of %s", id, owner)
	}
	msg := err.Error()
	for _, want := range []string{dir, `belongs to node "` + owner + `"`, `not to "` + id + `"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("refusal is more than one line: %q", msg)
	}
}

// TestADataDirBelongsToTheNodeThatCreatedIt: a node started on another
// node's data dir (a changed node id; a copy restored from a sibling or a
// cloned VM) refuses to start, and changes nothing there: the owner still
// starts on it with everything it held.
func TestADataDirBelongsToTheNodeThatCreatedIt(t *testing.T) {
	dir, inst := dataDirOfN1(t)

	// The same data dir under another node id.
	refusedAs(t, "n2", dir, "n1")
	// A copy of it on another node.
	clone := t.TempDir()
	copyDir(t, dir, clone)
	refusedAs(t, "n2", clone, "n1")

	// The owner starts on it as before.
	n1, err := startDiskNode(t, "n1", dir)
	if err != nil {
		t.Fatalf("n1 on its own data dir after the refusals: %v", err)
	}
	if _, err := n1.Store().View().Instance(nil, inst.Key()); err != nil {
		t.Fatalf("n1's registration after the refusals: %v", err)
	}
}

// TestADataDirWithoutANodeIDIsAdopted: a data dir written before node ids
// were recorded starts, is claimed by the node that starts on it, and from
// then on refuses any other.
func TestADataDirWithoutANodeIDIsAdopted(t *testing.T) {
	dir, inst := dataDirOfN1(t)
	// What an older version leaves: the same raft.db without the id.
	db, err := bolt.Open(filepath.Join(dir, "raft.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("conf")).Delete(nodeIDKey) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	n1, err := startDiskNode(t, "n1", dir)
	if err != nil {
		t.Fatalf("n1 on a data dir without a node id: %v", err)
	}
	if _, err := n1.Store().View().Instance(nil, inst.Key()); err != nil {
		t.Fatalf("n1's registration after the upgrade: %v", err)
	}
	if err := n1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	refusedAs(t, "n2", dir, "n1")
}

package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/fsm"
	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

// newerSkippable is a command type a newer release might add with
// SkippableFlag set; this build does not know it.
const newerSkippable = fsm.SkippableFlag | 0x3f

// newerRequired is a command type a newer release might add without the
// flag.
const newerRequired fsm.CommandType = 0x3f

func upgradeNode(t *testing.T, dir string) *Node {
	t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress("n1.inmem:7421"))
	cfg := Config{NodeID: "n1", DataDir: dir, Transport: tr, Bootstrap: true, APIAddr: "127.0.0.1:1",
		SnapshotThreshold: 1 << 20, SnapshotInterval: time.Hour}
	cfg.UseFastTimeouts()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "the single node to become a ready leader", n.LeaderReady)
	// A new leader publishes its own member record after it is ready; the
	// record is state (in the hash) without a registry revision, so a test
	// that compares hashes waits for it.
	poll(t, "the node to publish its member record", func() bool { return n.store.View().Member(cfg.NodeID) != nil })
	return n
}

func applyRaw(t *testing.T, n *Node, data []byte) uint64 {
	t.Helper()
	f := n.raft.Apply(data, 5*time.Second)
	if err := f.Error(); err != nil {
		t.Fatalf("apply: %v", err)
	}
	return f.Index()
}

func register(t *testing.T, n *Node, id string) {
	t.Helper()
	inst := &store.Instance{Namespace: "default", Service: "web", ID: id, Address: "10.0.0.1", Port: 80, Weight: 100}
	if _, err := n.Register(context.Background(), inst, ""); err != nil {
		t.Fatal(err)
	}
}

// A log written by a newer release holds a skippable command this build
// does not know: this build applies everything around it, skips it (the
// applied index moves, the state does not), and replays the same log the
// same way after a restart.
func TestReplayNewerLogSkipsSkippableCommands(t *testing.T) {
	dir := t.TempDir()
	n := upgradeNode(t, dir)
	register(t, n, "a")
	before, err := n.store.View().Hash()
	if err != nil {
		t.Fatal(err)
	}
	rev := n.store.Revision()
	// A bare entry and one inside a batch (a skippable command is never
	// wrapped in a request: fsm.EncodeRequest refuses).
	payload, err := fsm.Encode(newerSkippable, &raftcmdv1.Member{NodeId: "from-the-future"})
	if err != nil {
		t.Fatal(err)
	}
	idx := applyRaw(t, n, payload)
	if got := n.Applied(); got != idx {
		t.Fatalf("applied index %d after a skipped entry at %d", got, idx)
	}
	batch, err := fsm.EncodeBatch([][]byte{payload, payload})
	if err != nil {
		t.Fatal(err)
	}
	idx = applyRaw(t, n, batch)
	after, _ := n.store.View().Hash()
	if after != before || n.store.Revision() != rev || n.Applied() != idx {
		t.Fatalf("skipped entries changed the state: hash %s -> %s, revision %d -> %d, applied %d (want %d)",
			before, after, rev, n.store.Revision(), n.Applied(), idx)
	}
	register(t, n, "b")
	want, _ := n.store.View().Hash()
	wantApplied := n.Applied()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// Restart: the whole log is replayed through the FSM.
	n = upgradeNode(t, dir)
	defer n.Shutdown()
	poll(t, "the restarted node to replay its log", func() bool { return n.Applied() >= wantApplied })
	if got, _ := n.store.View().Hash(); got != want {
		t.Fatalf("replayed state %s, before the restart %s", got, want)
	}
	if v := n.store.View(); v.Count() != 2 {
		t.Fatalf("replay holds %d instances, want 2", v.Count())
	}
}

// A command this build does not know and may not skip stops the node with
// an error naming the entry and type, rather than letting it diverge. Raft
// applies in its own goroutine, so the node's process dies: run it in a
// child process and read what it said.
func TestUnknownRequiredCommandStopsTheNode(t *testing.T) {
	if dir := os.Getenv("ROSTER_UPGRADE_CHILD_DIR"); dir != "" {
		n := upgradeNode(t, dir)
		register(t, n, "a")
		payload, err := fsm.Encode(newerRequired, &raftcmdv1.Member{NodeId: "from-the-future"})
		if err != nil {
			t.Fatal(err)
		}
		_ = n.raft.Apply(payload, 5*time.Second).Error()
		register(t, n, "never")
		fmt.Println("still running")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnknownRequiredCommandStopsTheNode$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ROSTER_UPGRADE_CHILD_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil || strings.Contains(string(out), "still running") {
		t.Fatalf("the node went on past an unknown command: %v\n%s", err, out)
	}
	want := fmt.Sprintf("unknown command type %d; this node is older than the cluster's log", newerRequired)
	if !strings.Contains(string(out), want) {
		t.Fatalf("the node stopped without saying why (want %q):\n%s", want, out)
	}
}

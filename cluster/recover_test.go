package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/store"
)

// A 3-node cluster loses two nodes for good. The survivor, given a
// peers.json naming only itself, comes back as a 1-node cluster with all
// its data and takes writes; then two new nodes join it.
func TestRecoverFromOneSurvivor(t *testing.T) {
	base := t.TempDir()
	var ps []*diskPeer
	var peers []cluster.Peer
	for i := 1; i <= 3; i++ {
		p := &diskPeer{id: fmt.Sprintf("n%d", i), dir: filepath.Join(base, fmt.Sprintf("n%d", i)), addr: raft.ServerAddress(fmt.Sprintf("n%d.inmem:7421", i))}
		ps = append(ps, p)
		peers = append(peers, cluster.Peer{ID: p.id, Addr: string(p.addr)})
	}
	var all []*diskPeer
	t.Cleanup(func() {
		for _, p := range all {
			p.stop(t)
		}
	})
	all = append(all, ps...)
	for _, p := range ps {
		p.start(t, peers)
	}
	link(ps...)
	var leader *diskPeer
	eventually(t, "a leader", func() bool {
		for _, p := range ps {
			if p.node.LeaderReady() {
				leader = p
				return true
			}
		}
		return false
	})
	want := map[string]bool{}
	for i := 0; i < 10; i++ {
		register(t, leader.node, fmt.Sprintf("i%d", i))
		want[fmt.Sprintf("i%d", i)] = true
	}
	survivor := ps[2]
	eventually(t, "the survivor to hold every write", func() bool { return len(ids(survivor.node)) == len(want) })

	// Two nodes are lost for good; the survivor alone cannot elect itself.
	ps[0].stop(t)
	ps[1].stop(t)
	survivor.stop(t)
	survivor.start(t, peers)
	eventually(t, "the lone survivor to campaign twice", func() bool {
		return survivor.log.count("entering candidate state") >= 2
	})
	if survivor.node.IsLeader() {
		t.Fatal("a lone survivor of three led without recovery")
	}
	survivor.stop(t)

	peersJSON := fmt.Sprintf(`[{"id": %q, "address": %q, "non_voter": false}]`, survivor.id, survivor.addr)
	path := filepath.Join(survivor.dir, cluster.PeersFile)
	if err := os.WriteFile(path, []byte(peersJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	survivor.start(t, peers)
	eventually(t, "the recovered survivor to lead", func() bool { return survivor.node.LeaderReady() })
	if _, err := os.Stat(path + ".applied"); err != nil {
		t.Fatalf("peers.json was not renamed once applied: %v", err)
	}
	got := ids(survivor.node)
	for id := range want {
		if !got[id] {
			t.Fatalf("the recovered node lost %s: holds %v", id, got)
		}
	}
	members, err := survivor.node.Members()
	if err != nil || len(members) != 1 || members[0].NodeID != survivor.id {
		t.Fatalf("members after recovery: %v, %v", members, err)
	}
	register(t, survivor.node, "after-recovery")
	want["after-recovery"] = true

	// New nodes join the recovered cluster and catch up.
	for i := 4; i <= 5; i++ {
		p := &diskPeer{id: fmt.Sprintf("n%d", i), dir: filepath.Join(base, fmt.Sprintf("n%d", i)), addr: raft.ServerAddress(fmt.Sprintf("n%d.inmem:7421", i))}
		all = append(all, p)
		p.start(t, nil)
		link(survivor, p)
		link(append([]*diskPeer{survivor}, all[3:]...)...)
		atLeader(t, "join "+p.id, append([]*diskPeer{survivor}, all[3:]...), func(n *cluster.Node) error {
			return n.Join(context.Background(), p.id, string(p.addr), "127.0.0.1:1", true)
		})
	}
	atLeader(t, "register after-join", append([]*diskPeer{survivor}, all[3:]...), func(n *cluster.Node) error {
		_, err := n.Register(context.Background(), &store.Instance{Namespace: "default", Service: "web", ID: "after-join", Address: "10.0.0.1", Port: 80, Weight: 100}, "")
		return err
	})
	want["after-join"] = true
	for _, p := range all[3:] {
		eventually(t, p.id+" to hold every write", func() bool {
			got := ids(p.node)
			for id := range want {
				if !got[id] {
					return false
				}
			}
			return true
		})
	}
	members, _ = survivor.node.Members()
	if len(members) != 3 {
		t.Fatalf("members after the joins: %v", members)
	}
	// The restart after recovery keeps the configuration; peers.json is
	// not applied twice.
	survivor.stop(t)
	survivor.start(t, peers)
	link(append([]*diskPeer{survivor}, all[3:]...)...)
	eventually(t, "a leader after the survivor restarts", func() bool {
		for _, p := range append([]*diskPeer{survivor}, all[3:]...) {
			if p.node.LeaderReady() {
				return true
			}
		}
		return false
	})
}

func TestPeersFileMistakesStopTheStart(t *testing.T) {
	for name, body := range map[string]string{
		"not json":       "n1 10.0.0.1:7421",
		"no voter":       `[{"id": "n1", "address": "n1.inmem:7421", "non_voter": true}]`,
		"without me":     `[{"id": "n9", "address": "n9.inmem:7421"}]`,
		"twice":          `[{"id": "n1", "address": "a:1"}, {"id": "n1", "address": "b:1"}]`,
		"missing fields": `[{"id": "n1"}]`,
		"bad address":    `[{"id": "n1", "address": "notanaddr"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			p := &diskPeer{id: "n1", dir: t.TempDir(), addr: "n1.inmem:7421"}
			p.start(t, []cluster.Peer{{ID: "n1", Addr: "n1.inmem:7421"}})
			eventually(t, "a leader", func() bool { return p.node.LeaderReady() })
			register(t, p.node, "x")
			p.stop(t)
			if err := os.WriteFile(filepath.Join(p.dir, cluster.PeersFile), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, tr := raft.NewInmemTransport(p.addr)
			cfg := cluster.Config{NodeID: "n1", DataDir: p.dir, Transport: tr, APIAddr: "127.0.0.1:1"}
			cfg.UseFastTimeouts()
			n, err := cluster.New(cfg)
			if err == nil {
				n.Shutdown()
				t.Fatal("a node started with a bad peers.json")
			}
			if !strings.Contains(err.Error(), "peers.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}

// atLeader runs op on whichever of ps leads, again while leadership moves
// (once a node joins, the survivor needs it for a quorum, and with the fast
// timeouts a loaded machine can cost the leader an election), failing on
// any other error.
func atLeader(t *testing.T, what string, ps []*diskPeer, op func(n *cluster.Node) error) {
	t.Helper()
	var last error
	eventually(t, what, func() bool {
		for _, p := range ps {
			if p.node == nil || !p.node.LeaderReady() {
				continue
			}
			if last = op(p.node); last == nil {
				return true
			}
			if !errors.Is(last, cluster.ErrNotLeader) && !errors.Is(last, cluster.ErrNoLeader) && !errors.Is(last, cluster.ErrLeaderNotReady) {
				t.Fatalf("%s: %v", what, last)
			}
		}
		return false
	})
}

package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/store"
)

// logCount counts the lines a node logs that contain a phrase.
type logCount struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logCount) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCount) count(phrase string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), phrase)
}

// diskPeer is a node with bolt files and an in-memory transport, so tests
// can cut it off, stop it, wipe it and start it again at the same address.
type diskPeer struct {
	id   string
	dir  string
	addr raft.ServerAddress
	tr   *raft.InmemTransport
	node *cluster.Node
	log  *logCount
}

func (p *diskPeer) start(t *testing.T, peers []cluster.Peer) {
	t.Helper()
	_, p.tr = raft.NewInmemTransport(p.addr)
	p.log = &logCount{}
	cfg := cluster.Config{
		NodeID: p.id, DataDir: p.dir, Transport: p.tr, InitialCluster: peers, APIAddr: "127.0.0.1:1",
		ProbeTimeout: 200 * time.Millisecond,
		Logger:       hclog.New(&hclog.LoggerOptions{Name: p.id, Level: hclog.Info, Output: p.log}),
	}
	cfg.UseFastTimeouts()
	n, err := cluster.New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", p.id, err)
	}
	p.node = n
}

func (p *diskPeer) stop(t *testing.T) {
	t.Helper()
	if p.node == nil {
		return
	}
	if err := p.node.Shutdown(); err != nil {
		t.Fatalf("stop %s: %v", p.id, err)
	}
	p.node = nil
}

// link connects the running peers' transports both ways.
func link(ps ...*diskPeer) {
	for _, a := range ps {
		for _, b := range ps {
			if a != b && a.node != nil && b.node != nil {
				a.tr.Connect(b.addr, b.tr)
			}
		}
	}
}

func cut(p *diskPeer, from ...*diskPeer) {
	p.tr.DisconnectAll()
	for _, o := range from {
		if o.node != nil {
			o.tr.Disconnect(p.addr)
		}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func register(t *testing.T, n *cluster.Node, id string) {
	t.Helper()
	inst := &store.Instance{Namespace: "default", Service: "web", ID: id, Address: "10.0.0.1", Port: 80, Weight: 100}
	if _, err := n.Register(context.Background(), inst, ""); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

func ids(n *cluster.Node) map[string]bool {
	out := map[string]bool{}
	_ = n.Store().View().Instances(func(i *store.Instance) bool {
		out[i.ID] = true
		return true
	})
	return out
}

// TestWipedVoterDoesNotElectALaggingFollower: writes committed by the
// leader and one follower, while the other follower was cut off, survive
// when the follower that holds them loses its disk and the leader is down.
// On the code before the vote guard, the wiped node (bootstrapped again
// from --initial-cluster) voted for the lagging follower, which then led
// without those writes and overwrote them on the old leader.
func TestWipedVoterDoesNotElectALaggingFollower(t *testing.T) {
	base := t.TempDir()
	var ps []*diskPeer
	var peers []cluster.Peer
	for i := 1; i <= 3; i++ {
		p := &diskPeer{id: fmt.Sprintf("n%d", i), dir: filepath.Join(base, fmt.Sprintf("n%d", i)), addr: raft.ServerAddress(fmt.Sprintf("n%d.inmem:7421", i))}
		ps = append(ps, p)
		peers = append(peers, cluster.Peer{ID: p.id, Addr: string(p.addr)})
	}
	t.Cleanup(func() {
		for _, p := range ps {
			p.stop(t)
		}
	})
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
	var lagging, wiped *diskPeer
	for _, p := range ps {
		switch {
		case p == leader:
		case lagging == nil:
			lagging = p
		default:
			wiped = p
		}
	}
	want := map[string]bool{}
	for i := 0; i < 5; i++ {
		register(t, leader.node, fmt.Sprintf("before-%d", i))
		want[fmt.Sprintf("before-%d", i)] = true
	}
	cut(lagging, leader, wiped)
	for i := 0; i < 5; i++ {
		register(t, leader.node, fmt.Sprintf("cut-%d", i))
		want[fmt.Sprintf("cut-%d", i)] = true
	}
	wiped.stop(t)
	if err := os.RemoveAll(wiped.dir); err != nil {
		t.Fatal(err)
	}
	leader.stop(t)

	tries := lagging.log.count("restarting election")
	wiped.start(t, peers)
	link(lagging, wiped)
	eventually(t, "the lagging follower to win or retry an election", func() bool {
		return lagging.node.IsLeader() || lagging.log.count("restarting election") >= tries+3
	})
	if lagging.node.IsLeader() {
		t.Errorf("the lagging follower %s was elected with the wiped node's vote", lagging.id)
	}
	if wiped.node.IsLeader() {
		t.Errorf("the wiped node %s leads", wiped.id)
	}

	leader.start(t, peers)
	link(ps...)
	eventually(t, "every node to hold every acknowledged write", func() bool {
		for _, p := range ps {
			got := ids(p.node)
			for id := range want {
				if !got[id] {
					return false
				}
			}
		}
		return true
	})
	eventually(t, "the wiped node to take part in elections again", func() bool {
		return wiped.log.count("taking part in elections again") == 1
	})
}

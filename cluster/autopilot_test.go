package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/cluster"
)

// apCluster is a set of in-memory nodes with autopilot on, whose leader
// fetches the others' Raft state in process (rosterd does it over gRPC).
type apCluster struct {
	t     *testing.T
	ap    cluster.AutopilotConfig
	mu    sync.Mutex
	nodes map[string]*apNode // by id
	log   logCount
}

type apNode struct {
	id, api string
	addr    raft.ServerAddress
	tr      *raft.InmemTransport
	node    *cluster.Node
	down    bool
}

func newAPCluster(t *testing.T, ap cluster.AutopilotConfig) *apCluster {
	return &apCluster{t: t, ap: ap, nodes: map[string]*apNode{}}
}

func (c *apCluster) fetch(_ context.Context, id, api string) (cluster.ServerStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.nodes {
		if p.api == api && !p.down {
			st := p.node.Status()
			return cluster.ServerStats{LastContact: st.LastContact, LastTerm: st.Term, LastIndex: p.node.LastIndex()}, nil
		}
	}
	return cluster.ServerStats{}, fmt.Errorf("%s (%s) does not answer", id, api)
}

// start starts a node; the first one bootstraps, the others wait to be
// joined. Each start of an id gets a new address and empty state.
func (c *apCluster) start(id string, bootstrap bool) *apNode {
	c.t.Helper()
	c.mu.Lock()
	gen := len(c.nodes)
	c.mu.Unlock()
	p := &apNode{id: id, addr: raft.ServerAddress(fmt.Sprintf("%s-%d.inmem:7421", id, gen)), api: fmt.Sprintf("127.0.0.1:%d", 20000+gen)}
	_, p.tr = raft.NewInmemTransport(p.addr)
	ap := c.ap
	cfg := cluster.Config{NodeID: id, InMemory: true, Transport: p.tr, Bootstrap: bootstrap, Existing: !bootstrap,
		APIAddr: p.api, Autopilot: &ap, Logger: hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Info, Output: &c.log})}
	cfg.UseFastTimeouts()
	n, err := cluster.New(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	n.SetStatsFetcher(c.fetch)
	p.node = n
	c.t.Cleanup(func() { _ = n.Shutdown() })
	c.mu.Lock()
	c.nodes[id] = p
	for _, o := range c.nodes {
		if o != p && !o.down {
			o.tr.Connect(p.addr, p.tr)
			p.tr.Connect(o.addr, o.tr)
		}
	}
	c.mu.Unlock()
	return p
}

// kill stops a node and cuts it off.
func (c *apCluster) kill(p *apNode) {
	c.mu.Lock()
	p.down = true
	for _, o := range c.nodes {
		if o != p {
			o.tr.Disconnect(p.addr)
		}
	}
	c.mu.Unlock()
	p.tr.DisconnectAll()
	_ = p.node.Shutdown()
}

// leader waits for a live node that leads and is ready.
func (c *apCluster) leader() *cluster.Node {
	c.t.Helper()
	var l *cluster.Node
	eventually(c.t, "a ready leader", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.nodes {
			if !p.down && p.node.LeaderReady() {
				l = p.node
				return true
			}
		}
		return false
	})
	return l
}

// suffrage returns the leader's configuration: id to voter.
func suffrage(t *testing.T, leader *cluster.Node) map[string]bool {
	t.Helper()
	ms, err := leader.Members()
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, m := range ms {
		out[m.NodeID] = m.Voter
	}
	return out
}

// join asks the leader to add p, again if leadership moved meanwhile.
func (c *apCluster) join(p *apNode, voter bool) {
	c.t.Helper()
	var err error
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.leader().Join(ctx, p.id, string(p.addr), p.api, voter)
		cancel()
		if err == nil {
			return
		}
	}
	c.t.Fatalf("join %s: %v", p.id, err)
}

var fastAutopilot = cluster.AutopilotConfig{
	CleanupDeadServers:      true,
	DeadServerAfter:         500 * time.Millisecond,
	MinQuorum:               3,
	LastContactThreshold:    time.Second,
	ServerStabilizationTime: 700 * time.Millisecond,
	UpdateInterval:          50 * time.Millisecond,
	ReconcileInterval:       50 * time.Millisecond,
}

// TestAutopilotPromotesOnlyStableVoters: a server that joins to vote
// enters as a non-voter and becomes a voter only after autopilot has seen
// it healthy for the stabilization time; a read replica that joined
// earlier, healthy for longer, stays a non-voter.
func TestAutopilotPromotesOnlyStableVoters(t *testing.T) {
	c := newAPCluster(t, fastAutopilot)
	n1 := c.start("n1", true)
	eventually(t, "n1 to lead", n1.node.LeaderReady)
	var mu sync.Mutex
	promoted := map[string]time.Duration{}
	var fullRounds atomic.Int64
	defer cluster.SetAutopilotHooks(func(minStable time.Duration) {
		if minStable == fastAutopilot.ServerStabilizationTime {
			fullRounds.Add(1)
		}
	}, func(id string, healthyFor time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		promoted[id] = healthyFor
	})()
	// Autopilot promotes at once during the leader's first stabilization
	// time (so a new cluster forms quickly): wait until its rounds require
	// the full stabilization time.
	eventually(t, "autopilot's rounds to require the stabilization time", func() bool { return fullRounds.Load() > 0 })

	r := c.start("r1", false)
	c.join(r, false)
	eventually(t, "the replica to be healthy", func() bool {
		st, _ := n1.node.AutopilotState()
		return st.Servers["r1"].Healthy
	})
	n2 := c.start("n2", false)
	c.join(n2, true)
	if got := suffrage(t, n1.node); got["n2"] || got["r1"] {
		t.Fatalf("right after joining: %v, want n2 and r1 non-voters", got)
	}
	eventually(t, "n2 to be staged", func() bool {
		ms, _ := n1.node.Members()
		for _, m := range ms {
			if m.NodeID == "n2" && m.Autopilot != nil && m.Autopilot.State == "staging" {
				return true
			}
		}
		return false
	})
	eventually(t, "n2 to be promoted", func() bool { return suffrage(t, n1.node)["n2"] })
	mu.Lock()
	healthyFor, ok := promoted["n2"]
	_, replicaPromoted := promoted["r1"]
	mu.Unlock()
	if !ok || healthyFor < fastAutopilot.ServerStabilizationTime {
		t.Fatalf("n2 promoted after %v healthy (recorded: %v), want at least %v", healthyFor, ok, fastAutopilot.ServerStabilizationTime)
	}
	if replicaPromoted || suffrage(t, n1.node)["r1"] {
		t.Fatalf("the read replica was promoted")
	}
	ms, err := n1.node.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.NodeID == "r1" && (!m.ReadReplica || m.Autopilot == nil || m.Autopilot.State != "read-replica") {
			t.Fatalf("r1 shows as %+v (autopilot %+v), want a read replica", m, m.Autopilot)
		}
	}
}

// TestAutopilotRemovesFailedServersAboveMinQuorum: a failed voter of a
// three-voter cluster with minimum quorum 3 stays; once a fourth server
// joins, autopilot removes the failed one and promotes the new one, and a
// replacement with the failed node's id can join again.
func TestAutopilotRemovesFailedServersAboveMinQuorum(t *testing.T) {
	c := newAPCluster(t, fastAutopilot)
	n1 := c.start("n1", true)
	eventually(t, "n1 to lead", n1.node.LeaderReady)
	defer func() {
		if t.Failed() {
			c.log.mu.Lock()
			t.Logf("the nodes' logs:\n%s", c.log.buf.String())
			c.log.mu.Unlock()
		}
	}()
	n2, n3 := c.start("n2", false), c.start("n3", false)
	c.join(n2, true)
	c.join(n3, true)
	eventually(t, "three voters", func() bool {
		s := suffrage(t, c.leader())
		return s["n1"] && s["n2"] && s["n3"]
	})

	var rounds atomic.Int64
	defer cluster.SetAutopilotHooks(func(time.Duration) { rounds.Add(1) }, nil)()
	c.kill(n3)
	eventually(t, "autopilot to find n3 failed", func() bool {
		st, _ := c.leader().AutopilotState()
		return st.Servers["n3"].Failed
	})
	// Many reconcile rounds, each followed by a prune, see n3 failed; none
	// may remove it: two voters would be fewer than the minimum quorum.
	from := rounds.Load()
	eventually(t, "ten more reconcile rounds", func() bool { return rounds.Load() >= from+10 })
	if s := suffrage(t, c.leader()); !s["n3"] {
		t.Fatalf("n3 removed below the minimum quorum: %v", s)
	}

	n4 := c.start("n4", false)
	c.join(n4, true)
	eventually(t, "n3 removed and n4 promoted", func() bool {
		s := suffrage(t, c.leader())
		_, has3 := s["n3"]
		return !has3 && s["n4"] && len(s) == 3
	})
	if m := c.leader().Store().View().Member("n3"); m != nil {
		t.Fatalf("n3's member record outlived its removal: %+v", m)
	}
	removals := uint64(0)
	for _, p := range []*apNode{n1, n2, n4} {
		removals += p.node.Stats().AutopilotRemovals
	}
	if removals != 1 {
		t.Fatalf("autopilot removals = %d, want 1", removals)
	}

	// A replacement with the same id, on a new address with no state.
	n3b := c.start("n3", false)
	c.join(n3b, true)
	eventually(t, "the replacement n3 to be promoted", func() bool {
		s := suffrage(t, c.leader())
		return s["n1"] && s["n2"] && s["n3"] && s["n4"]
	})
	register(t, c.leader(), "after-replacement")
	eventually(t, "the replacement to have the state", func() bool { return ids(n3b.node)["after-replacement"] })
}

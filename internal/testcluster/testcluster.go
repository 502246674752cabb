// Package testcluster starts an in-process Roster cluster for tests: N Raft
// nodes on an in-memory transport with short timeouts, each serving the real
// gRPC API on a loopback port, with helpers to partition and heal nodes.
package testcluster

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-registry/roster/cluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
	"github.com/roster-registry/roster/store"
)

// Node is one member of a test cluster.
type Node struct {
	ID        string
	Node      *cluster.Node
	Server    *rpc.Server
	GRPC      *grpc.Server
	Addr      string
	Transport *raft.InmemTransport
	Conn      *grpc.ClientConn

	stopped bool
}

// Registry returns a client for this node's Registry service.
func (n *Node) Registry() rosterv1.RegistryClient { return rosterv1.NewRegistryClient(n.Conn) }

// Cluster returns a client for this node's Cluster service.
func (n *Node) Cluster() rosterv1.ClusterClient { return rosterv1.NewClusterClient(n.Conn) }

// Options tune a test cluster.
type Options struct {
	// Configure adjusts each node's cluster config before it starts.
	Configure func(*cluster.Config)
	// Store bounds each node's history.
	Store store.Options
	// Server adjusts each node's rpc options before its server starts.
	Server func(*rpc.Options)
	// GRPCOptions returns extra gRPC server options for a node (test hooks
	// such as interceptors), added after the server's own.
	GRPCOptions func(nodeID string) []grpc.ServerOption
}

// Cluster is a running test cluster.
type Cluster struct {
	t     testing.TB
	Nodes []*Node

	mu sync.Mutex
	// group is each node's side of a partition; 0, or absent, is the side
	// of every node not cut off.
	group     map[string]int
	nextGroup int
}

// New starts n voters bootstrapped together and waits for a leader. The
// cluster is shut down when the test ends.
func New(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, group: map[string]int{}}
	var peers []cluster.Peer
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		// In-memory addresses still look like HOST:PORT, as Join validates them.
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(id + ".inmem:7421"))
		c.Nodes = append(c.Nodes, &Node{ID: id, Transport: tr})
		peers = append(peers, cluster.Peer{ID: id, Addr: string(addr)})
	}
	for _, a := range c.Nodes {
		for _, b := range c.Nodes {
			if a != b {
				a.Transport.Connect(b.Transport.LocalAddr(), b.Transport)
			}
		}
	}
	for _, nd := range c.Nodes {
		c.start(nd, peers, opts)
	}
	t.Cleanup(c.Shutdown)
	c.WaitLeader()
	return c
}

func (c *Cluster) start(nd *Node, peers []cluster.Peer, opts Options) {
	t := c.t
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	nd.Addr = lis.Addr().String()
	cfg := cluster.Config{
		NodeID:         nd.ID,
		InMemory:       true,
		APIAddr:        nd.Addr,
		Transport:      nd.Transport,
		InitialCluster: peers,
		Logger:         hclog.New(&hclog.LoggerOptions{Name: nd.ID, Level: hclog.Warn, Output: testWriter{t}}),
		Store:          opts.Store,
	}
	cfg.UseFastTimeouts()
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	node, err := cluster.New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", nd.ID, err)
	}
	nd.Node = node
	ropts := rpc.Options{Logger: cfg.Logger.Named("rpc"), HoldTimeout: 3 * time.Second}
	if opts.Server != nil {
		opts.Server(&ropts)
	}
	nd.Server = rpc.New(node, ropts)
	gopts := nd.Server.ServerOptions()
	if opts.GRPCOptions != nil {
		gopts = append(gopts, opts.GRPCOptions(nd.ID)...)
	}
	nd.GRPC = grpc.NewServer(gopts...)
	nd.Server.RegisterServices(nd.GRPC)
	nd.Server.Start()
	go func() { _ = nd.GRPC.Serve(lis) }()
	nd.Conn, err = grpc.NewClient(nd.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", nd.ID, err)
	}
}

// testWriter routes node logs to t.Log so they show only for failing tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Shutdown stops every node that is still running.
func (c *Cluster) Shutdown() {
	for _, nd := range c.Nodes {
		c.Stop(nd)
	}
}

// Stop stops one node as a crash would: its server and Raft go away.
func (c *Cluster) Stop(nd *Node) {
	if nd.stopped {
		return
	}
	nd.stopped = true
	nd.GRPC.Stop()
	nd.Server.Stop()
	_ = nd.Conn.Close()
	_ = nd.Node.Shutdown()
	c.disconnect(nd)
}

// Running returns the nodes that have not been stopped.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, nd := range c.Nodes {
		if !nd.stopped {
			out = append(out, nd)
		}
	}
	return out
}

// Eventually polls cond until it holds or the deadline passes.
func (c *Cluster) Eventually(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	if !Within(timeout, cond) {
		c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Within polls cond until it holds, and reports false if timeout passes
// first: for a test that tries again instead of failing.
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// WaitLeader waits until exactly one running, connected node leads and is
// ready, and returns it.
func (c *Cluster) WaitLeader() *Node {
	c.t.Helper()
	var leader *Node
	c.Eventually("a ready leader", 15*time.Second, func() bool {
		leader = nil
		for _, nd := range c.Running() {
			if c.isPartitioned(nd.ID) {
				continue
			}
			if nd.Node.LeaderReady() {
				if leader != nil {
					return false
				}
				leader = nd
			}
		}
		return leader != nil
	})
	return leader
}

// Leader returns the current leader or nil.
func (c *Cluster) Leader() *Node {
	for _, nd := range c.Running() {
		if nd.Node.IsLeader() && !c.isPartitioned(nd.ID) {
			return nd
		}
	}
	return nil
}

// Followers returns the running nodes that are not the leader.
func (c *Cluster) Followers() []*Node {
	var out []*Node
	for _, nd := range c.Running() {
		if !nd.Node.IsLeader() {
			out = append(out, nd)
		}
	}
	return out
}

// Partition cuts the given nodes off from the rest: they form one group
// whose Raft traffic reaches only each other, and the other nodes keep
// theirs. Their gRPC servers keep answering clients, as partitioned nodes
// would for clients on their side of the cut. Partition(nd) isolates one
// node; Partition(a, b) cuts a and b off together.
func (c *Cluster) Partition(nodes ...*Node) {
	c.Split(nodes)
}

// Split divides the cluster into groups of nodes that reach only the nodes
// of their own group; the nodes not named in any group form one more group.
// Split(nil) or Heal() with no argument joins everything again.
func (c *Cluster) Split(groups ...[]*Node) {
	c.mu.Lock()
	for _, g := range groups {
		if len(g) == 0 {
			continue
		}
		c.nextGroup++
		for _, nd := range g {
			c.group[nd.ID] = c.nextGroup
		}
	}
	c.mu.Unlock()
	c.rewire()
}

// Heal joins the given nodes (every node when none is given) to the side
// of the nodes that were never cut off.
func (c *Cluster) Heal(nodes ...*Node) {
	c.mu.Lock()
	if len(nodes) == 0 {
		clear(c.group)
	}
	for _, nd := range nodes {
		delete(c.group, nd.ID)
	}
	c.mu.Unlock()
	c.rewire()
}

// rewire connects every pair of running nodes on the same side and
// disconnects every other pair.
func (c *Cluster) rewire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.Nodes {
		for _, b := range c.Nodes {
			if a == b {
				continue
			}
			if !a.stopped && !b.stopped && c.group[a.ID] == c.group[b.ID] {
				a.Transport.Connect(b.Transport.LocalAddr(), b.Transport)
			} else {
				a.Transport.Disconnect(b.Transport.LocalAddr())
			}
		}
	}
}

func (c *Cluster) disconnect(nd *Node) {
	nd.Transport.DisconnectAll()
	for _, other := range c.Nodes {
		if other != nd {
			other.Transport.Disconnect(nd.Transport.LocalAddr())
		}
	}
}

// isPartitioned reports whether the node with id is on a side of a
// partition too small to elect a leader: it cannot take part in the
// cluster's decisions.
func (c *Cluster) isPartitioned(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	mine, size := c.group[id], 0
	for _, nd := range c.Nodes {
		if c.group[nd.ID] == mine {
			size++
		}
	}
	return 2*size <= len(c.Nodes)
}

// EnsureSame fails the test unless every running node holds the same state
// at the same applied index (see Same).
func (c *Cluster) EnsureSame() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.Same(ctx); err != nil {
		c.t.Fatal(err)
	}
}

// Same polls every running node's state hash with the index it was taken
// at, until all nodes report the same index, and then compares the hashes.
// It returns an error when they differ, or when the nodes never reach one
// index before ctx ends (writes still going on, or a node cut off).
func (c *Cluster) Same(ctx context.Context) error {
	for {
		type at struct {
			index uint64
			hash  string
		}
		got := map[string]at{}
		agree := true
		var first *at
		for _, nd := range c.Running() {
			st, err := nd.Cluster().Status(ctx, &rosterv1.StatusRequest{IncludeHash: true})
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("state hashes: %w", err)
				}
				agree = false
				break
			}
			got[nd.ID] = at{st.HashIndex, st.StateHash}
			if first == nil {
				first = &at{st.HashIndex, st.StateHash}
			} else if st.HashIndex != first.index {
				agree = false
			}
		}
		if agree && first != nil {
			for _, a := range got {
				if a.hash != first.hash {
					return fmt.Errorf("state hashes differ at applied index %d: %v", first.index, got)
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodes never reported one applied index: last %v: %w", got, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitMembersKnown waits until every running node knows every running
// node's API address, so forwarding works everywhere.
func (c *Cluster) WaitMembersKnown() {
	c.t.Helper()
	c.Eventually("member table on every node", 15*time.Second, func() bool {
		for _, a := range c.Running() {
			for _, b := range c.Running() {
				m := a.Node.Store().View().Member(b.ID)
				if m == nil || m.APIAddr != b.Addr {
					return false
				}
			}
		}
		return true
	})
}

// Ctx returns a context with a test-sized timeout.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

package rpc_test

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/fsm"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// gate holds a node's apply path at one point for every entry above a limit.
type gate struct {
	mu    sync.Mutex
	cond  *sync.Cond
	limit uint64
	held  uint64
}

func newGate() *gate {
	g := &gate{limit: math.MaxUint64}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *gate) pass(index uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for index > g.limit {
		g.held = index
		g.cond.Wait()
	}
}

// holdAbove makes every entry above index wait at the gate.
func (g *gate) holdAbove(index uint64) {
	g.mu.Lock()
	g.limit, g.held = index, 0
	g.mu.Unlock()
}

// open lets everything through.
func (g *gate) open() { g.holdAbove(math.MaxUint64); g.cond.Broadcast() }

// passUpTo lets entries up to index through and holds the rest.
func (g *gate) passUpTo(index uint64) {
	g.holdAbove(index)
	g.cond.Broadcast()
}

// heldIndex returns the entry waiting at the gate, or 0.
func (g *gate) heldIndex() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// nodeHooks are one node's gates: before an entry changes the store, and
// after its changes are visible; waits reports reads that had to wait.
type nodeHooks struct {
	before, after *gate
	waits         chan uint64
}

// gatedCluster starts three nodes whose apply paths tests can hold.
func gatedCluster(t *testing.T) (*testcluster.Cluster, map[string]*nodeHooks) {
	hooks := map[string]*nodeHooks{}
	for _, id := range []string{"n1", "n2", "n3"} {
		hooks[id] = &nodeHooks{before: newGate(), after: newGate(), waits: make(chan uint64, 64)}
	}
	c := testcluster.New(t, 3, testcluster.Options{Configure: func(cfg *cluster.Config) {
		h := hooks[cfg.NodeID]
		cfg.TestHooks = cluster.TestHooks{
			FSM: fsm.Hooks{BeforeApply: h.before.pass, AfterCommit: h.after.pass},
			ReadWait: func(index uint64) {
				select {
				case h.waits <- index:
				default:
				}
			},
		}
	}})
	// Runs before the cluster's own cleanup, so no apply is left waiting.
	t.Cleanup(func() {
		for _, h := range hooks {
			h.before.open()
			h.after.open()
		}
	})
	c.WaitMembersKnown()
	return c, hooks
}

func readPort(ctx context.Context, t *testing.T, nd *testcluster.Node, svc string, opts *rosterv1.ReadOptions) (uint32, uint64) {
	t.Helper()
	got, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: svc, Read: opts})
	if err != nil {
		t.Fatalf("read on %s: %v", nd.ID, err)
	}
	if len(got.Instances) != 1 {
		return 0, got.Header.GetRevision()
	}
	return got.Instances[0].Port, got.Header.GetRevision()
}

type readResult struct {
	port uint32
	rev  uint64
	err  error
}

func goRead(ctx context.Context, nd *testcluster.Node, svc string) <-chan readResult {
	out := make(chan readResult, 1)
	go func() {
		got, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: svc})
		if err != nil {
			out <- readResult{err: err}
			return
		}
		r := readResult{rev: got.Header.GetRevision()}
		if len(got.Instances) == 1 {
			r.port = got.Instances[0].Port
		}
		out <- r
	}()
	return out
}

// awaitRead returns the read's result; if the read has to wait for its
// node's state instead, it opens g so the node catches up first.
func awaitRead(t *testing.T, res <-chan readResult, h *nodeHooks, g *gate) readResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-h.waits:
		g.open()
		return <-res
	case <-time.After(20 * time.Second):
		t.Fatal("read neither returned nor waited")
	}
	return readResult{}
}

// TestLinearizableReadOnLeaderSeesWhatAFollowerReturned: the leader's FSM
// is held before applying v2 while a follower applies it. A linearizable
// read on the follower returns v2; a later one on the leader must see v2
// too (waiting for its own FSM), never v1.
func TestLinearizableReadOnLeaderSeesWhatAFollowerReturned(t *testing.T) {
	c, hooks := gatedCluster(t)
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)}); err != nil {
		t.Fatal(err)
	}
	lh := hooks[leader.ID]
	lh.before.holdAbove(leader.Node.Applied())
	wrote := make(chan error, 1)
	go func() {
		_, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 2)})
		wrote <- err
	}()
	c.Eventually("the leader's FSM held at v2", 10*time.Second, func() bool { return lh.before.heldIndex() > 0 })
	c.Eventually("the follower applies v2", 10*time.Second, func() bool {
		p, _ := readPort(ctx, t, f, "web", stale)
		return p == 2
	})
	if p, _ := readPort(ctx, t, f, "web", nil); p != 2 {
		t.Fatalf("linearizable read on follower %s saw port %d, want 2", f.ID, p)
	}
	r := awaitRead(t, goRead(ctx, leader, "web"), lh, lh.before)
	if r.err != nil || r.port != 2 {
		t.Fatalf("linearizable read on leader %s after follower %s returned v2: port %d, err %v; the read went back in time",
			leader.ID, f.ID, r.port, r.err)
	}
	lh.before.open()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// TestLinearizableReadOnFollowerSeesWhatTheLeaderReturned: the leader's
// FSM is held right after v2 became visible in its store, and a follower's
// FSM is held before v2. A linearizable read on the leader returns v2; a
// later one on the follower must wait for v2, never return v1.
func TestLinearizableReadOnFollowerSeesWhatTheLeaderReturned(t *testing.T) {
	c, hooks := gatedCluster(t)
	ctx := testcluster.Ctx(t)
	leader, f, lh, fh, wrote := holdV2VisibleOnLeader(ctx, t, c, hooks)
	if p, _ := readPort(ctx, t, leader, "web", nil); p != 2 {
		t.Fatalf("linearizable read on leader %s saw port %d, want 2", leader.ID, p)
	}
	r := awaitRead(t, goRead(ctx, f, "web"), fh, fh.before)
	if r.err != nil || r.port != 2 {
		t.Fatalf("linearizable read on follower %s after leader %s returned v2: port %d, err %v; the read went back in time",
			f.ID, leader.ID, r.port, r.err)
	}
	lh.after.open()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// TestStatusHashMatchesItsIndex: a node held right after an entry became
// visible reports a state hash and index that describe the same state, as
// another node at that index agrees.
func TestStatusHashMatchesItsIndex(t *testing.T) {
	c, hooks := gatedCluster(t)
	ctx := testcluster.Ctx(t)
	leader, f, lh, fh, wrote := holdV2VisibleOnLeader(ctx, t, c, hooks)
	ls, err := leader.Cluster().Status(ctx, &rosterv1.StatusRequest{IncludeHash: true})
	if err != nil {
		t.Fatal(err)
	}
	fh.before.passUpTo(ls.HashIndex)
	var fs *rosterv1.StatusResponse
	c.Eventually("the follower reaches the leader's hash index", 10*time.Second, func() bool {
		fs, err = f.Cluster().Status(ctx, &rosterv1.StatusRequest{IncludeHash: true})
		if err != nil {
			t.Fatal(err)
		}
		if fs.HashIndex > ls.HashIndex {
			t.Fatalf("follower passed index %d: %d", ls.HashIndex, fs.HashIndex)
		}
		return fs.HashIndex == ls.HashIndex
	})
	if fs.StateHash != ls.StateHash {
		t.Fatalf("at index %d the leader reports hash %s (revision %d) and the follower %s (revision %d): "+
			"the leader's index and hash describe different states", ls.HashIndex, ls.StateHash, ls.Revision, fs.StateHash, fs.Revision)
	}
	fh.before.open()
	lh.after.open()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// TestReadPairsAcrossNodesNeverGoBackInTime: writers keep every node busy
// while readers make pairs of linearizable reads back to back on two
// different nodes (follower then leader, leader then follower). The second
// read of a pair starts after the first returned, so its header revision
// must be at least the first's. The leader's FSM pauses a little at random
// before and after each entry, as a leader busier than its followers does,
// so its FSM falls behind theirs and its store is often caught between an
// entry's commit and the end of its apply.
func TestReadPairsAcrossNodesNeverGoBackInTime(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	var c *testcluster.Cluster
	var started atomic.Bool
	lag := func(id string, limit time.Duration) func(uint64) {
		return func(uint64) {
			if !started.Load() {
				return
			}
			for _, nd := range c.Nodes {
				if nd.ID == id && nd.Node.IsLeader() {
					time.Sleep(rand.N(limit))
				}
			}
		}
	}
	c = testcluster.New(t, 3, testcluster.Options{Configure: func(cfg *cluster.Config) {
		cfg.TestHooks.FSM = fsm.Hooks{BeforeApply: lag(cfg.NodeID, 2*time.Millisecond), AfterCommit: lag(cfg.NodeID, time.Millisecond)}
	}})
	started.Store(true)
	c.WaitMembersKnown()
	// The work is bounded by a count of pairs, not by time, so a busy
	// machine checks as many pairs as an idle one; the deadline only caps
	// a machine too busy to get there.
	ctx, cancel := context.WithTimeout(testcluster.Ctx(t), 15*time.Second)
	defer cancel()
	const writers, readers, wantPairs = 12, 16, 400
	var pairs, back, backToLeader atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for ctx.Err() == nil {
				nd := c.Nodes[r.IntN(len(c.Nodes))]
				svc := []string{"web", "api", "db", "cache"}[r.IntN(4)]
				_, _ = nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance(svc, "a", uint32(1+r.IntN(60000)))})
			}
		}()
	}
	for rd := 0; rd < readers; rd++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(rd), 2))
			for ctx.Err() == nil {
				leader := c.Leader()
				fs := c.Followers()
				if leader == nil || len(fs) == 0 {
					continue
				}
				first, second := fs[r.IntN(len(fs))], leader
				if r.IntN(2) == 0 {
					first, second = second, first
				}
				a, err := first.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
				if err != nil {
					continue
				}
				b, err := second.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "api"})
				if err != nil {
					continue
				}
				if pairs.Add(1) >= wantPairs {
					cancel()
				}
				if b.Header.Revision < a.Header.Revision {
					back.Add(1)
					if second == leader {
						backToLeader.Add(1)
					}
					t.Logf("%s saw revision %d, then %s saw revision %d", first.ID, a.Header.Revision, second.ID, b.Header.Revision)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d read pairs across nodes, %d went back in time (%d follower then leader, %d leader then follower)",
		pairs.Load(), back.Load(), backToLeader.Load(), back.Load()-backToLeader.Load())
	if pairs.Load() == 0 {
		t.Fatal("no read pair completed")
	}
	if back.Load() != 0 {
		t.Fatalf("%d of %d read pairs went back in time", back.Load(), pairs.Load())
	}
}

// holdV2VisibleOnLeader registers v1 and waits for a follower to apply it,
// then registers v2 with the leader's FSM held right after v2 became visible
// in its store and the follower's FSM held before v2. wrote gets the v2
// write's result once the leader's hook is opened.
func holdV2VisibleOnLeader(ctx context.Context, t *testing.T, c *testcluster.Cluster, hooks map[string]*nodeHooks) (
	leader, f *testcluster.Node, lh, fh *nodeHooks, wrote chan error) {
	t.Helper()
	leader, f = c.WaitLeader(), c.Followers()[0]
	if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)}); err != nil {
		t.Fatal(err)
	}
	lh, fh = hooks[leader.ID], hooks[f.ID]
	c.Eventually("the follower applies v1", 10*time.Second, func() bool {
		p, _ := readPort(ctx, t, f, "web", stale)
		return p == 1
	})
	fh.before.holdAbove(f.Node.Applied())
	lh.after.holdAbove(leader.Node.Applied())
	wrote = make(chan error, 1)
	go func() {
		_, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 2)})
		wrote <- err
	}()
	c.Eventually("v2 visible on the leader, held before its apply ends", 10*time.Second, func() bool { return lh.after.heldIndex() > 0 })
	c.Eventually("the follower holds v2", 10*time.Second, func() bool { return fh.before.heldIndex() > 0 })
	return leader, f, lh, fh, wrote
}

// resetPort opens a watch of svc on nd with startRead and returns the port
// its first message (a reset) shows, 0 when the service is empty. When the
// watch waits for its node's state instead, it opens g.
func resetPort(ctx context.Context, t *testing.T, nd *testcluster.Node, svc string, startRead *rosterv1.ReadOptions, h *nodeHooks, g *gate) uint32 {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := make(chan *rosterv1.WatchResponse, 1)
	errc := make(chan error, 1)
	go func() {
		w, err := nd.Registry().Watch(ctx, &rosterv1.WatchRequest{Service: svc, StartRead: startRead})
		if err == nil {
			var resp *rosterv1.WatchResponse
			if resp, err = w.Recv(); err == nil {
				first <- resp
				return
			}
		}
		errc <- err
	}()
	var resp *rosterv1.WatchResponse
	select {
	case resp = <-first:
	case err := <-errc:
		t.Fatalf("watch on %s: %v", nd.ID, err)
	case <-h.waits:
		g.open()
		select {
		case resp = <-first:
		case err := <-errc:
			t.Fatalf("watch on %s: %v", nd.ID, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("watch neither started nor waited")
	}
	if !resp.GetReset_() {
		t.Fatalf("first watch message is not a reset: %v", resp)
	}
	if len(resp.Events) != 1 {
		return 0
	}
	return resp.Events[0].Instance.Port
}

// TestWatchStartReadLinearizable: a follower's FSM is held before v2 while
// the leader acknowledges v2. A watch on that follower started with a
// linearizable start_read must begin from v2; without one it begins from
// the follower's own state, v1.
func TestWatchStartReadLinearizable(t *testing.T) {
	c, hooks := gatedCluster(t)
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)}); err != nil {
		t.Fatal(err)
	}
	fh := hooks[f.ID]
	c.Eventually("the follower applies v1", 10*time.Second, func() bool {
		p, _ := readPort(ctx, t, f, "web", stale)
		return p == 1
	})
	fh.before.holdAbove(f.Node.Applied())
	if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 2)}); err != nil {
		t.Fatal(err)
	}
	if p := resetPort(ctx, t, f, "web", stale, fh, fh.before); p != 1 {
		t.Fatalf("stale watch on held follower %s began at port %d, want its own state 1", f.ID, p)
	}
	linearizable := &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE}
	if p := resetPort(ctx, t, f, "web", linearizable, fh, fh.before); p != 2 {
		t.Fatalf("linearizable watch on follower %s began at port %d after the leader acknowledged 2", f.ID, p)
	}
}

package cluster

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// keyVoteGuard marks, in the stable store, a node that started without
// Raft state and has not yet been caught up by a leader. It survives a
// crash in between, when raft already holds a term and HasExistingState
// no longer tells an empty node from a caught-up one.
var keyVoteGuard = []byte("RosterVoteGuard")

// errVoteGuard answers vote requests and leadership transfers while the
// node may have forgotten what it acknowledged.
var errVoteGuard = errors.New("not voting until caught up by a leader")

// voteGuard keeps a node that started without Raft state out of elections
// until a leader has caught it up. Raft's safety assumes a voter remembers
// what it acknowledged and whom it voted for; a node whose data dir was
// wiped remembers neither, yet hashicorp/raft grants any vote when its
// configuration is empty ("very likely trying to bootstrap"). Its vote
// could then elect a follower that lacks writes the wiped node had helped
// commit. While the guard is on, the node denies votes and pre-votes,
// refuses leadership transfers and does not campaign itself.
//
// It is lifted when the node bootstraps a new cluster (its empty state is
// then the truth), or once its log holds every entry the leader that
// contacted it had when it did: an entry of a newer term than that leader's
// (whose leader held all committed entries before appending it), or an
// entry of the same term at or past the commit index that leader sent
// first.
type voteGuard struct {
	stable raft.StableStore

	mu      sync.Mutex
	on      bool
	term    uint64 // highest term a leader replicated to this node in
	commit  uint64 // the first commit index a leader of term sent
	floor   uint64 // terms below it are deposed leaders'; see raiseFloor
	contact chan struct{}
	once    sync.Once
}

func newVoteGuard(stable raft.StableStore, on bool) *voteGuard {
	return &voteGuard{stable: stable, on: on, contact: make(chan struct{})}
}

// armed reads the durable marker.
func armed(stable raft.StableStore) (bool, error) {
	v, err := stable.GetUint64(keyVoteGuard)
	if err != nil && err.Error() != "not found" {
		return false, err
	}
	return v == 1, nil
}

// arm turns the guard on and records it durably.
func (g *voteGuard) arm() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.on = true
	return g.stable.SetUint64(keyVoteGuard, 1)
}

// lift turns the guard off for good.
func (g *voteGuard) lift() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.on = false
	return g.stable.SetUint64(keyVoteGuard, 0)
}

func (g *voteGuard) active() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.on
}

// contacted is closed when a leader, or a candidate whose log is past the
// bootstrap entry, has reached this node: proof of a cluster that already
// exists and counts this node as a member.
func (g *voteGuard) contacted() <-chan struct{} { return g.contact }

func (g *voteGuard) sawCluster() { g.once.Do(func() { close(g.contact) }) }

// observe looks at an incoming RPC before raft handles it.
func (g *voteGuard) observe(cmd any) {
	switch req := cmd.(type) {
	case *raft.AppendEntriesRequest:
		if req.Term == 0 {
			return // a bootstrap probe
		}
		g.sawCluster()
		// Heartbeats carry no commit index; only replication does.
		if req.LeaderCommitIndex > 0 || req.PrevLogEntry > 0 || len(req.Entries) > 0 {
			g.sawLeader(req.Term, req.LeaderCommitIndex)
		}
	case *raft.InstallSnapshotRequest:
		if req.Term > 0 {
			g.sawCluster()
			g.sawLeader(req.Term, req.LastLogIndex)
		}
	case *raft.RequestVoteRequest:
		if req.LastLogIndex > bootstrapIndex {
			g.sawCluster()
		}
	case *raft.RequestPreVoteRequest:
		if req.LastLogIndex > bootstrapIndex {
			g.sawCluster()
		}
	}
}

// raiseFloor ignores replication from terms below term: a peer answered
// that the cluster has reached it, so a leader of an older term is one
// that was deposed without knowing, and its log may lack what its
// successors committed with this node's forgotten acknowledgements.
func (g *voteGuard) raiseFloor(term uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.floor = max(g.floor, term)
}

func (g *voteGuard) sawLeader(term, commit uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if term >= g.floor && term > g.term {
		g.term, g.commit = term, commit
	}
}

// caughtUp reports whether a log ending at (index, term) holds everything
// the leader that contacted the node had then.
func (g *voteGuard) caughtUp(index, term uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.term == 0 {
		return false
	}
	return term > g.term || (term == g.term && index >= g.commit)
}

// guardVotes keeps a node that starts without state (or has not been
// caught up since it did) out of elections; see voteGuard.
// An in-memory node starts empty every time by design and is never
// guarded.
func (n *Node) guardVotes(stable raft.StableStore, hasState bool) (*voteGuard, error) {
	if n.cfg.InMemory {
		return newVoteGuard(stable, false), nil
	}
	on, err := armed(stable)
	if err != nil {
		return nil, fmt.Errorf("read vote guard: %w", err)
	}
	g := newVoteGuard(stable, on || !hasState)
	if !g.active() {
		return g, nil
	}
	if err := g.arm(); err != nil {
		return nil, fmt.Errorf("record vote guard: %w", err)
	}
	t := newGuardedTransport(n.transport, g, n.cfg.NodeID)
	n.transport = t
	n.closers = append(n.closers, t.(raft.WithClose).Close)
	return g, nil
}

// watchVoteGuard lifts the guard once raft's log has caught up.
func (n *Node) watchVoteGuard(g *voteGuard) {
	defer n.wg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
		}
		if !g.active() {
			return
		}
		stats := n.raft.Stats()
		index, _ := strconv.ParseUint(stats["last_log_index"], 10, 64)
		term, _ := strconv.ParseUint(stats["last_log_term"], 10, 64)
		if !g.caughtUp(index, term) {
			continue
		}
		if err := g.lift(); err != nil {
			n.logger.Error("cannot record that this node caught up; it stays out of elections", "error", err)
			continue
		}
		n.logger.Info("caught up by the leader; taking part in elections again", "last_index", index, "last_term", term)
		return
	}
}

// guardedTransport puts a voteGuard between a transport and raft.
type guardedTransport struct {
	raft.Transport
	guard    *voteGuard
	self     raft.RPCHeader
	consumer chan raft.RPC
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// guardedPreVoteTransport is a guardedTransport over a transport that
// supports pre-vote; raft uses pre-vote only when the transport does.
type guardedPreVoteTransport struct{ *guardedTransport }

func newGuardedTransport(inner raft.Transport, g *voteGuard, id string) raft.Transport {
	t := &guardedTransport{
		Transport: inner,
		guard:     g,
		self: raft.RPCHeader{
			ProtocolVersion: raft.ProtocolVersionMax,
			ID:              []byte(id),
			Addr:            inner.EncodePeer(raft.ServerID(id), inner.LocalAddr()),
		},
		consumer: make(chan raft.RPC),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go t.relay()
	if _, ok := inner.(raft.WithPreVote); ok {
		return guardedPreVoteTransport{t}
	}
	return t
}

func (t *guardedTransport) relay() {
	defer close(t.done)
	in := t.Transport.Consumer()
	for {
		var rpc raft.RPC
		select {
		case rpc = <-in:
		case <-t.stop:
			return
		}
		t.guard.observe(rpc.Command)
		if t.guard.active() && t.deny(rpc) {
			continue
		}
		select {
		case t.consumer <- rpc:
		case <-t.stop:
			return
		}
	}
}

// deny answers the RPCs a guarded node must not act on, and reports
// whether it did.
func (t *guardedTransport) deny(rpc raft.RPC) bool {
	switch req := rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{RPCHeader: t.self, Term: req.Term}, nil)
	case *raft.RequestPreVoteRequest:
		rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: t.self, Term: req.Term}, nil)
	case *raft.TimeoutNowRequest:
		rpc.Respond(nil, errVoteGuard)
	default:
		return false
	}
	return true
}

// Consumer returns the RPCs the guard lets through.
func (t *guardedTransport) Consumer() <-chan raft.RPC { return t.consumer }

// SetHeartbeatHandler sees heartbeats, which bypass the consumer, first.
func (t *guardedTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		t.Transport.SetHeartbeatHandler(nil)
		return
	}
	t.Transport.SetHeartbeatHandler(func(rpc raft.RPC) {
		t.guard.observe(rpc.Command)
		cb(rpc)
	})
}

// RequestVote keeps a guarded node from campaigning.
func (t *guardedTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if t.guard.active() {
		return errVoteGuard
	}
	return t.Transport.RequestVote(id, target, args, resp)
}

// Close stops the relay and closes the inner transport when it can be.
func (t *guardedTransport) Close() error {
	t.stopOnce.Do(func() { close(t.stop) })
	<-t.done
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// RequestPreVote keeps a guarded node from campaigning.
func (t guardedPreVoteTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if t.guard.active() {
		return errVoteGuard
	}
	return t.Transport.(raft.WithPreVote).RequestPreVote(id, target, args, resp)
}

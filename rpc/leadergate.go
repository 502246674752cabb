package rpc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/roster-registry/roster/cluster"
)

// RequireLeaderKey is the metadata key of a watch stream (Watch or
// WatchMany) that wants to hear only from a node in touch with a leader,
// as etcd's clients ask with WithRequireLeader. Such a stream is refused
// with Unavailable (reason NO_LEADER) when the node knows no leader, and
// ended the same way once the node has known none for
// WatchOptions.LeaderlessTimeout: a node cut off from the majority would
// otherwise go on sending bookmarks of a state that no longer changes, and
// the client would take its list for fresh. The client resumes on another
// node from its last revision and misses nothing. Any value turns it on.
const RequireLeaderKey = "roster-require-leader"

// DefaultLeaderlessTimeout is WatchOptions.LeaderlessTimeout's default:
// well past an ordinary election (a node knows no leader from the moment
// it stands as a candidate until one wins), short against how long a cache
// may be trusted.
const DefaultLeaderlessTimeout = 3 * time.Second

// errLeaderless ends a stream that requires a leader on a node without one.
var errLeaderless = fmt.Errorf("%w: this node has no leader; resume the watch on another node", cluster.ErrNoLeader)

// streamContext returns the context a watch stream with context parent
// runs under: it ends with the stream, with errDraining as its cause when
// the node drains, and, for a stream that requires a leader, with
// errLeaderless once the node has been leaderless for the timeout. Such a
// stream opened on a node that knows no leader is refused (errLeaderless).
// end releases what the context holds.
func (s *Server) streamContext(parent context.Context) (ctx context.Context, end func(), err error) {
	ctx, cancel := context.WithCancelCause(parent)
	stops := []func() bool{context.AfterFunc(s.drainCtx, func() { cancel(errDraining) })}
	end = func() {
		for _, stop := range stops {
			stop()
		}
		cancel(nil)
	}
	if requiresLeader(parent) {
		lost, ok := s.gate.open(s.hasLeader())
		if !ok {
			end()
			return nil, nil, errLeaderless
		}
		stops = append(stops, context.AfterFunc(lost, func() { cancel(errLeaderless) }))
	}
	return ctx, end, nil
}

// hasLeader reports whether the node knows a leader.
func (s *Server) hasLeader() bool {
	id, _ := s.node.Leader()
	return id != ""
}

// requiresLeader reports whether the stream's client asked for a node in
// touch with a leader.
func requiresLeader(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(RequireLeaderKey)) > 0
}

// leaderGate tells streams that require a leader when the node has gone
// without one for the timeout. A goroutine (follow) samples the node's
// leader; lost returns a context canceled once the node has been
// leaderless for the timeout, and a fresh one once a leader is known again.
type leaderGate struct {
	timeout time.Duration
	// poll is how often the leader is sampled.
	poll time.Duration

	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
}

func newLeaderGate(timeout time.Duration) *leaderGate {
	g := &leaderGate{timeout: timeout, poll: max(timeout/8, time.Millisecond)}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g
}

// open is for a stream that requires a leader, opening while the node
// knows one (leader) or not: without one it is refused (false); with one
// it gets the context canceled once the node has been leaderless for the
// timeout. A leader known now starts a fresh context even before follow
// has seen it, so a stream opened just after a leaderless spell is not
// ended by it.
func (g *leaderGate) open(leader bool) (context.Context, bool) {
	if !leader {
		return nil, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		g.ctx, g.cancel = context.WithCancel(context.Background())
	}
	return g.ctx, true
}

// follow samples hasLeader until stop closes, canceling the current
// context once the node has gone the timeout without a leader and making a
// new one when a leader is back.
func (g *leaderGate) follow(hasLeader func() bool, stop <-chan struct{}) {
	t := time.NewTicker(g.poll)
	defer t.Stop()
	var since time.Time // when the node was first seen leaderless; zero with a leader
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			g.observe(hasLeader(), now, &since)
		}
	}
}

// observe is one sample of follow.
func (g *leaderGate) observe(leader bool, now time.Time, since *time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case leader:
		*since = time.Time{}
		if g.ctx.Err() != nil {
			g.ctx, g.cancel = context.WithCancel(context.Background())
		}
	case since.IsZero():
		*since = now
	case now.Sub(*since) >= g.timeout:
		g.cancel()
	}
}

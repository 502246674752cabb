package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/store"
)

// testHookLeadershipNotice, when set, runs as monitorLeadership takes each
// leadership notice, before acting on it. Tests use it to force
// interleavings with Shutdown.
var testHookLeadershipNotice func(n *Node, leading bool)

// OnLeader registers a duty the node runs while it leads: it is started once
// the new leader has applied every earlier entry (after a Barrier), and its
// context is cancelled when leadership is lost. Register duties before the
// node can win an election, i.e. right after New.
func (n *Node) OnLeader(duty func(ctx context.Context)) {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	n.duties = append(n.duties, duty)
}

// LeaderReady reports whether this node leads and has applied every entry
// of earlier terms, so its state is complete.
func (n *Node) LeaderReady() bool { return n.leaderReady.Load() && n.IsLeader() }

// AwaitLeaderReady waits, while this node leads and until ctx ends, for
// its barrier: until then a new leader may not have applied every entry of
// earlier terms, though a follower that acknowledged them has (an ACL token
// that a follower knows, say). It reports whether the node's state is now
// as fresh as its term requires: true at once on a follower or a ready
// leader, false when ctx ended or the node stopped first.
func (n *Node) AwaitLeaderReady(ctx context.Context) bool {
	for {
		if !n.IsLeader() {
			return true
		}
		_, ready, changed := n.requestClock.stamp()
		if ready {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		case <-n.shutdownCh:
			return false
		}
	}
}

func (n *Node) monitorLeadership(notify <-chan bool) {
	defer n.wg.Done()
	for {
		select {
		case leading := <-notify:
			if testHookLeadershipNotice != nil {
				testHookLeadershipNotice(n, leading)
			}
			n.stats.leadership(leading)
			if leading {
				n.startLeading()
			} else {
				n.stopLeading()
			}
		case <-n.shutdownCh:
			return
		}
	}
}

func (n *Node) startLeading() {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	if n.leaderStop != nil {
		return
	}
	select {
	case <-n.shutdownCh:
		// A notice still buffered when Shutdown began: Shutdown has
		// stopped leading (or will find nothing to stop), so a loop
		// started now would outlive the node.
		return
	default:
	}
	now := time.Now()
	n.leadingSince.Store(&now)
	n.leases.endRefusals()
	ctx, cancel := context.WithCancel(context.Background())
	n.leaderStop = cancel
	done := make(chan struct{})
	n.leaderDone = done
	duties := append([]func(context.Context){}, n.duties...)
	n.logger.Info("gained leadership", "term", n.raft.CurrentTerm())
	// Failures recorded in an earlier term may have healed unseen: only
	// a leader's replication reports a peer coming back.
	n.forgetPeerFailures("")
	// Added under leaderMu before Shutdown can have stopped leading, so
	// before its Wait.
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(done)
		n.leaderLoop(ctx, duties)
	}()
}

// barrier waits for a Raft barrier, or for ctx to end first (ended).
// Raft may drop a barrier queued for the state machine when it shuts down,
// never answering it: waiting on it alone could then keep Shutdown
// waiting for this term's leader loop for ever.
func (n *Node) barrier(ctx context.Context) (ended bool, err error) {
	f := n.raft.Barrier(30 * time.Second)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return false, err
	case <-ctx.Done():
		return true, nil
	}
}

func (n *Node) stopLeading() {
	// Under leaderMu: cancelling the term and clearing readiness happen
	// together, so a barrier of this term that finishes late cannot mark a
	// later term ready (see leaderLoop).
	n.leaderMu.Lock()
	stop, done := n.leaderStop, n.leaderDone
	n.leaderStop, n.leaderDone = nil, nil
	n.leaderReady.Store(false)
	n.readyTerm.Store(0)
	n.leadingSince.Store(nil)
	n.leases.endRefusals()
	n.requestClock.stop()
	if stop != nil {
		stop()
	}
	n.leaderMu.Unlock()
	if stop == nil {
		return
	}
	// The term's duties have ended too: a new term never shares the node
	// with the old term's lease table or checks.
	<-done
	n.logger.Info("lost leadership")
}

// leaderLoop: barrier, readiness and the request clock, publish our own
// member record, start the duties.
func (n *Node) leaderLoop(ctx context.Context, duties []func(context.Context)) {
	var term uint64
	for {
		// The term read before the barrier: if leadership changed meanwhile,
		// the term is older than the barrier's and reads wait for the next
		// round of readiness rather than trust a stale one.
		term = n.raft.CurrentTerm()
		ended, err := n.barrier(ctx)
		if ended {
			return // the term ended while the barrier waited
		}
		if err == nil {
			break
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return
		}
		n.logger.Warn("barrier failed; retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	// The state now holds every request result of earlier terms: request
	// stamps go on from the newest stamp this node applied, by the time
	// since, and never from below the largest remembered (requestClock);
	// never from this node's wall clock, which may run ahead of the last
	// leader's.
	latest, found := n.store.View().LatestRequestTime()
	n.leaderMu.Lock()
	if ctx.Err() != nil {
		// This term ended while the barrier ran.
		n.leaderMu.Unlock()
		return
	}
	n.leaderReady.Store(true)
	n.readyTerm.Store(term)
	n.requestClock.start(latest, found)
	n.leaderMu.Unlock()
	n.logger.Info("leader ready", "applied_index", n.Applied())

	self := store.Member{NodeID: n.cfg.NodeID, RaftAddr: n.RaftAddr(), APIAddr: n.cfg.APIAddr}
	m := n.store.View().Member(self.NodeID)
	if m != nil {
		self.JoinedToVote = m.JoinedToVote // addresses only
	}
	if m == nil || *m != self {
		if err := n.upsertMember(ctx, self); err != nil {
			n.logger.Warn("could not publish own member record", "error", err)
		}
	}
	var running sync.WaitGroup
	for _, d := range duties {
		running.Add(1)
		go func() {
			defer running.Done()
			d(ctx)
		}()
	}
	<-ctx.Done()
	running.Wait()
}

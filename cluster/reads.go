package cluster

import (
	"context"
	"sync"
)

// Rounds coalesces concurrent callers of an expensive check into rounds: a
// caller always joins a round that starts after it arrived (never one that
// is already in flight, whose answer may predate the call), and every caller
// of a round gets that round's answer. Linearizable reads use it so that a
// burst of reads costs one leadership confirmation, not one each.
type Rounds struct {
	fn func(ctx context.Context) (uint64, error)

	mu      sync.Mutex
	running bool
	next    *round
	waiting int // callers registered for next
}

type round struct {
	done  chan struct{}
	value uint64
	err   error
}

// NewRounds returns a coalescer around fn.
func NewRounds(fn func(ctx context.Context) (uint64, error)) *Rounds {
	return &Rounds{fn: fn}
}

// Do waits for the next round to finish and returns its result.
func (r *Rounds) Do(ctx context.Context) (uint64, error) {
	r.mu.Lock()
	if r.next == nil {
		r.next = &round{done: make(chan struct{})}
	}
	rd := r.next
	r.waiting++
	if !r.running {
		r.startLocked()
	}
	r.mu.Unlock()
	select {
	case <-rd.done:
		return rd.value, rd.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Waiting returns how many callers wait for the round after the one in flight.
func (r *Rounds) Waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		return r.waiting
	}
	return 0
}

func (r *Rounds) startLocked() {
	rd := r.next
	r.next = nil
	r.waiting = 0
	r.running = true
	go func() {
		// A round outlives any one caller's context.
		rd.value, rd.err = r.fn(context.Background())
		close(rd.done)
		r.mu.Lock()
		r.running = false
		if r.next != nil {
			r.startLocked()
		}
		r.mu.Unlock()
	}()
}

// verifyLeader confirms leadership with a quorum and returns the index of
// the last entry this node has applied. Every write acknowledged before the
// confirmation started was applied here first (acknowledgement waits for the
// leader's FSM), so a read that waits for this index sees all of them.
func (n *Node) verifyLeader(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	if !n.leaderReady.Load() {
		return 0, ErrLeaderNotReady
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, mapRaftError(err)
	}
	// Re-check: leadership may have been lost and regained during the round.
	if !n.leaderReady.Load() {
		return 0, ErrLeaderNotReady
	}
	return n.Applied(), nil
}

// ReadIndex returns an index that a linearizable read must wait for. Only
// the leader answers; ErrNotLeader elsewhere. Concurrent calls share one
// leadership confirmation.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	return n.verify.Do(ctx)
}

// WaitApplied blocks until this node has applied index, or ctx ends.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	hooked := false
	for {
		applied, advanced := n.fsm.Applied()
		if applied >= index {
			return nil
		}
		if !hooked && n.cfg.TestHooks.ReadWait != nil {
			hooked = true
			n.cfg.TestHooks.ReadWait(index)
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.shutdownCh:
			return ErrShutdown
		}
	}
}

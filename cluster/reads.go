package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
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

// verifyLeader returns the read index: the index that a node's state must
// reflect for a read to see every write that committed, and every state any
// read returned, before the read began.
//
// It takes Raft's commit index when the round starts and then confirms
// leadership with a quorum (confirmLeadership). Not the leader's applied index: the leader
// advances its commit index first and feeds its FSM later, while followers
// learn the same commit index and may apply an entry before the leader does.
// The whole round must fall inside the term whose barrier made this node
// ready, since a node that lost and regained leadership may hold a commit
// index behind entries another leader committed in between.
func (n *Node) verifyLeader(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	term := n.readyTerm.Load()
	if term == 0 || n.raft.CurrentTerm() != term {
		return 0, ErrLeaderNotReady
	}
	commit := n.raft.CommitIndex()
	if err := n.confirmLeadership(term); err != nil {
		return 0, err
	}
	// Leading in the same term before and after means this node led, ready,
	// all along: leadership within one term never comes back once lost.
	if n.readyTerm.Load() != term || n.raft.CurrentTerm() != term {
		return 0, ErrLeaderNotReady
	}
	return n.lastCommand(commit)
}

// confirmLeadership returns once a quorum of voters has acknowledged this
// node as leader, in this term, in answer to heartbeats sent after the call
// began: proof that this node still led after the call began. It writes
// nothing to the log.
//
// This is raft's VerifyLeader as changed in third_party/raft. Upstream's
// counts any successful replication response that arrives after it was
// called, including one to a request sent before (say, just before this
// process was paused), and counts non-voters' answers towards the quorum.
// A leader deposed while paused then confirms itself with its followers' old
// answers and serves a stale read; a chaos run caught exactly that. Here
// only the answer to a heartbeat sent to a voter after the verification was
// registered votes for it (TestVerifyLeaderIgnoresAnswersToEarlierHeartbeats
// and TestVerifyLeaderCountsVotersOnly in third_party/raft).
func (n *Node) confirmLeadership(term uint64) error {
	f := n.raft.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	timer := time.NewTimer(n.cfg.ApplyTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader) {
			// Stepped down before a quorum answered: nothing was written,
			// so the read may go to the next leader.
			return ErrNotLeader
		}
		if err != nil {
			return mapRaftError(err)
		}
	case <-timer.C:
		return fmt.Errorf("%w: no quorum acknowledged this leader within %s", ErrNoLeader, n.cfg.ApplyTimeout)
	case <-n.shutdownCh:
		return ErrShutdown
	}
	if !n.IsLeader() || n.raft.CurrentTerm() != term {
		return ErrNotLeader
	}
	return nil
}

// lastCommand maps a committed index to the index of the last entry at or
// below it that the FSM applies. No-op, barrier and configuration entries
// never reach the store, so no node's applied index ever equals theirs and a
// read waiting for one would hang. Usually zero to two steps back.
func (n *Node) lastCommand(index uint64) (uint64, error) {
	var l raft.Log
	for i := index; i > 0; i-- {
		err := n.logs.GetLog(i, &l)
		if errors.Is(err, raft.ErrLogNotFound) {
			// Compacted into a snapshot, which this node's FSM had applied
			// (or restored): every command at or below i is in its state.
			return n.Applied(), nil
		}
		if err != nil {
			return 0, fmt.Errorf("read index: log entry %d: %w", i, err)
		}
		if l.Type == raft.LogCommand {
			return i, nil
		}
	}
	return 0, nil
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

// WaitApplied blocks until this node's state reflects index (its applied
// index, kept in the store with the state, has reached it), or ctx ends.
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

package cluster

import (
	"context"
	"fmt"
	"time"
)

// renewable reports whether this node may acknowledge a lease renewal now,
// as nil, or why not: ctx's error when the request is already done, or
// ErrNotLeader, as a follower answers (the client fails over), when the
// node does not lead or has not heard from a quorum of voters within the
// leader lease timeout.
//
// Raft's state alone is not enough. A leader paused (SIGSTOP, a frozen VM,
// a long GC) for longer than a TTL is still Leader when it resumes, until
// raft's own lease check runs, and the heartbeats queued during the pause
// would be acknowledged first; meanwhile a newer leader may have expired
// those instances. Raft's QuorumContact is a time by which a quorum of
// voters answered this leader in its term, so no newer leader was elected
// before it. Within the leader lease timeout of it, a newer leader took
// over after now minus that timeout, and runs each lease at least TTL plus
// that same timeout from its takeover (leaseTable.sync): past the TTL from
// any heartbeat sent before now. The check is made once the request has
// arrived, so whatever delays the answer afterwards changes nothing.
func (n *Node) renewable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	if !n.IsLeader() || !n.leases.inContact(n.raft.QuorumContact()) {
		return ErrNotLeader
	}
	return nil
}

// inContact reports whether a leader whose quorum contact is c (zero: none)
// heard from its quorum within the leader lease timeout, the grace a newer
// leader gives every lease. c is raft's monotonic reading, so its age is
// measured on the real clock, never the table's. A refusal begins a run of
// refusals unless one is under way; contact within the timeout ends it.
func (t *leaseTable) inContact(c time.Time) bool {
	if !c.IsZero() {
		age := time.Since(c) + t.pause()
		if age <= t.grace {
			if t.refusing.Load() != nil {
				t.refusing.Store(nil)
			}
			return true
		}
		t.logger.Debug("refusing lease renewals: no quorum contact within the leader lease timeout",
			"contact_age", age, "leader_lease_timeout", t.grace)
	}
	if t.refusing.Load() == nil {
		t.refusing.CompareAndSwap(nil, &refusalRun{began: time.Now(), pause: t.pause()})
	}
	return false
}

// refusalRun is when a leader's current run of renewals refused for want
// of quorum contact began: on the real clock, like the contact's age, and
// with the test pause then, so that a pause growing during the run counts
// as time the run lasted.
type refusalRun struct {
	began time.Time
	pause time.Duration
}

// endRefusals forgets the run of refusals under way: the node took or lost
// the lead, and a run of another term says nothing about this one.
func (t *leaseTable) endRefusals() { t.refusing.Store(nil) }

// RefusingRenewalsLong reports whether this node, still Raft's leader, has
// refused lease renewals for want of quorum contact for longer than the
// leader lease timeout: the run of refusals (from the first refused renewal,
// until one is acknowledged in contact) has lasted longer than that timeout,
// and its last quorum contact (or, with none in this term, its taking the
// lead) is more than twice that timeout old.
//
// Raft steps a leader down once it has gone a leader lease timeout without
// hearing from a quorum, so a leader still refusing by then is one raft's
// own check keeps in place: in an asymmetric partition the newer-term
// answers of the heartbeat path count as contact there, not here. Its
// clients get nothing from staying: the KeepAlive streams connected to it
// end, so they reconnect to a node that relays to the real leader.
//
// Both conditions matter. The contact's age alone would end every stream
// at the first renewal a leader refuses after a pause longer than twice the
// timeout (SIGSTOP, a frozen VM, a long GC), when the renewals queued
// meanwhile are refused before fresh heartbeat answers come in: a burst of
// reconnects from a leader about to be in contact again, or to step down.
// The run alone, which only a renewal made in contact ends, could span
// contact regained between two renewals, and it keeps none of the margin
// that a new leader's first round of heartbeats, or followers slow but
// within what raft's lease check allows, need (the contact's age of twice
// the timeout).
func (n *Node) RefusingRenewalsLong() bool {
	if !n.IsLeader() {
		return false
	}
	var since time.Time
	if p := n.leadingSince.Load(); p != nil {
		since = *p
	}
	return n.leases.refusingLong(n.raft.QuorumContact(), since)
}

// refusingLong reports whether renewals have been refused for longer than
// the leader lease timeout, given the leader's quorum contact c and when it
// took the lead (zero: unknown): a run of refusals (inContact) that has
// lasted longer than the timeout, and a contact (or with none, the taking
// of the lead) more than twice the timeout old; no known time refuses
// nothing yet. Like inContact it measures on the real clock.
func (t *leaseTable) refusingLong(c, leading time.Time) bool {
	run := t.refusing.Load()
	if run == nil {
		return false
	}
	if c.IsZero() {
		c = leading
	}
	if c.IsZero() {
		return false
	}
	pause := t.pause()
	if time.Since(c)+pause <= 2*t.grace {
		return false
	}
	return time.Since(run.began)+pause-run.pause > t.grace
}

// pause is how long the tests pretend this process was stopped (paused,
// and Config.TestHooks.ContactPause).
func (t *leaseTable) pause() time.Duration {
	p := time.Duration(t.paused.Load())
	if t.contactPause != nil {
		p += t.contactPause()
	}
	return p
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/roster-registry/roster/store"
)

// Heartbeat renews the TTL lease of an instance on the leader and returns
// the TTL. It never writes to Raft, except when the lease had already
// expired and the instance is kept critical (deregister_critical_after):
// then it commits the instance passing again before answering.
//
// Errors: ErrNotLeader / ErrLeaderNotReady (retry at the leader), also
// from a leader that has not heard from a quorum within the leader lease
// timeout (renewable); ctx's error when ctx is done; store.ErrNotFound for
// an unknown instance or a lease whose expiry is being committed;
// ErrNoLease for an instance registered without a TTL.
func (n *Node) Heartbeat(ctx context.Context, k store.Key) (time.Duration, error) {
	if err := n.renewable(ctx); err != nil {
		return 0, err
	}
	return n.leases.heartbeat(ctx, k)
}

// heartbeat renews a lease, committing the instance passing again first
// when its lease had expired.
func (t *leaseTable) heartbeat(ctx context.Context, k store.Key) (time.Duration, error) {
	r, err := t.renew(k, opHeartbeat)
	if err != nil {
		return 0, err
	}
	if r.revive {
		rev, err := t.prop.SetHealth(ctx, k, r.regRev, store.HealthPassing, ReasonHeartbeatResumed)
		t.reviveDone(k, r.regRev, rev, err)
		if err != nil {
			if errors.Is(err, store.ErrStaleRegistration) {
				return 0, fmt.Errorf("heartbeat %s: re-registered meanwhile: %w", k, store.ErrNotFound)
			}
			return 0, err
		}
	}
	t.heartbeats.Add(1)
	return r.ttl, nil
}

// ReportHealth renews the TTL lease of an instance, as Heartbeat does, and
// sets its status to h with reason when it is not h already, committing the
// same SetHealth command the cluster's own checks and lease expiry commit.
// It returns the TTL and the revision of the change (the instance's
// mod_revision when nothing changed). A status equal to the current one
// writes nothing to Raft, so a process reporting "passing" at heartbeat
// rate costs what heartbeats cost.
//
// Errors: as Heartbeat's.
func (n *Node) ReportHealth(ctx context.Context, k store.Key, h store.Health, reason string) (time.Duration, uint64, error) {
	if err := n.renewable(ctx); err != nil {
		return 0, 0, err
	}
	return n.leases.report(ctx, k, h, reason)
}

// report renews a lease and commits the reported status when it differs.
// An expired lease is revived straight into the reported status. An
// acknowledged report counts as a heartbeat: it is one renewal.
func (t *leaseTable) report(ctx context.Context, k store.Key, h store.Health, reason string) (time.Duration, uint64, error) {
	r, err := t.renew(k, opReport)
	if err != nil {
		return 0, 0, err
	}
	inst, err := t.store.View().Instance(nil, k)
	if err != nil {
		if r.revive {
			t.reviveDone(k, r.regRev, 0, err)
		}
		return 0, 0, fmt.Errorf("report health of %s: %w", k, err)
	}
	if !r.revive && inst.RegistrationRevision == r.regRev && inst.Status == h {
		t.heartbeats.Add(1)
		return r.ttl, inst.ModRevision, nil
	}
	rev, err := t.prop.SetHealth(ctx, k, r.regRev, h, reason)
	if r.revive {
		t.reviveDone(k, r.regRev, rev, err)
	}
	if err != nil {
		if errors.Is(err, store.ErrStaleRegistration) {
			return 0, 0, fmt.Errorf("report health of %s: re-registered meanwhile: %w", k, store.ErrNotFound)
		}
		return 0, 0, err
	}
	t.heartbeats.Add(1)
	return r.ttl, rev, nil
}

// Leases returns how many TTL leases this node runs: all of them on a ready
// leader, 0 elsewhere.
func (n *Node) Leases() int { return n.leases.count() }

// SelfPreservation reports whether this leader holds lease expiry, and for
// which services. On a follower it reports nothing held; the settings in
// force are SelfPreservationSettings, on any node.
func (n *Node) SelfPreservation() SelfPreservation { return n.leases.selfPreservation() }

// SelfPreserving reports whether this leader holds lease expiry of a
// service (namespace/service), or of every service when service is empty.
func (n *Node) SelfPreserving(namespace, service string) bool {
	return n.leases.holds(namespace, service)
}

// LeaseState is the leader's view of one TTL lease.
type LeaseState struct {
	ID  string
	TTL time.Duration
	// LastRenewed is the last acknowledged renewal (heartbeat or health
	// report), or when the lease started: its registration, or, after a
	// leader change, the moment this leader took the lease over (never
	// later than now, though such a lease's deadline also counts the
	// leader lease timeout).
	LastRenewed time.Time
	// Deadline is when the lease runs out without another renewal.
	Deadline time.Time
}

// ServiceLeases returns the TTL leases of one service, ordered by instance
// id. Renewals live in the leader's memory only, so only a ready leader
// answers: ErrNotLeader / ErrLeaderNotReady elsewhere.
func (n *Node) ServiceLeases(namespace, service string) ([]LeaseState, error) {
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	return n.leases.service(namespace, service)
}

// service lists the leases of one service.
func (t *leaseTable) service(namespace, service string) ([]LeaseState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return nil, ErrLeaderNotReady
	}
	if !t.isLeader() {
		return nil, ErrNotLeader
	}
	now := t.clock.Now()
	var out []LeaseState
	for k, l := range t.leases {
		if k.Namespace != namespace || k.Service != service {
			continue
		}
		renewed := l.lastRenew
		if renewed.After(now) {
			renewed = now // adopted at a failover with the grace ahead
		}
		out = append(out, LeaseState{ID: k.ID, TTL: l.ttl, LastRenewed: renewed, Deadline: l.deadline})
	}
	slices.SortFunc(out, func(a, b LeaseState) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

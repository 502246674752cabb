package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roster-registry/roster/store"
)

// Heartbeat renews the TTL lease of an instance on the leader and returns
// the TTL. It never writes to Raft, except when the lease had already
// expired and the instance is kept critical (deregister_critical_after):
// then it commits the instance passing again before answering.
//
// Errors: ErrNotLeader / ErrLeaderNotReady (retry at the leader);
// store.ErrNotFound for an unknown instance or a lease whose expiry is
// being committed; ErrNoLease for an instance registered without a TTL.
func (n *Node) Heartbeat(ctx context.Context, k store.Key) (time.Duration, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	r, err := n.leases.renew(k)
	if err != nil {
		return 0, err
	}
	if r.revive {
		_, err := n.SetHealth(ctx, k, r.regRev, store.HealthPassing, "heartbeat resumed")
		n.leases.reviveDone(k, r.regRev, err)
		if err != nil {
			if errors.Is(err, store.ErrStaleRegistration) {
				return 0, fmt.Errorf("heartbeat %s: re-registered meanwhile: %w", k, store.ErrNotFound)
			}
			return 0, err
		}
	}
	return r.ttl, nil
}

// LeaseRegistered tells the lease timers about a registration this leader
// just committed at rev, so a heartbeat sent as soon as Register returns
// finds its lease. The timers also follow the store on their own; this only
// closes the gap until they have caught up.
func (n *Node) LeaseRegistered(inst *store.Instance, rev uint64) {
	n.leases.adopt(inst, rev)
}

// Leases returns how many TTL leases this node runs: all of them on a ready
// leader, 0 elsewhere.
func (n *Node) Leases() int { return n.leases.count() }

// SelfPreservation reports whether this leader holds lease expiry, and for
// which services. On a follower it reports nothing held.
func (n *Node) SelfPreservation() SelfPreservation { return n.leases.selfPreservation() }

// SetSelfPreservationThreshold changes the self-preservation threshold
// while this node leads (0 turns it off); a new leader starts again from
// its configuration.
func (n *Node) SetSelfPreservationThreshold(v float64) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if v < 0 || v > 1 {
		return fmt.Errorf("self-preservation threshold %v: %w", v, ErrInvalidThreshold)
	}
	return n.leases.setThreshold(v)
}

// ErrInvalidThreshold: a self-preservation threshold outside [0, 1].
var ErrInvalidThreshold = errors.New("threshold must be between 0 (off) and 1")

// SelfPreserving reports whether this leader holds lease expiry of a
// service (namespace/service), or of every service when service is empty.
func (n *Node) SelfPreserving(namespace, service string) bool {
	return n.leases.holds(namespace, service)
}

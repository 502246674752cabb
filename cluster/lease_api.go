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
	return n.leases.heartbeat(ctx, k)
}

// heartbeat renews a lease, committing the instance passing again first
// when its lease had expired.
func (t *leaseTable) heartbeat(ctx context.Context, k store.Key) (time.Duration, error) {
	r, err := t.renew(k)
	if err != nil {
		return 0, err
	}
	if r.revive {
		_, err := t.prop.SetHealth(ctx, k, r.regRev, store.HealthPassing, ReasonHeartbeatResumed)
		t.reviveDone(k, r.regRev, err)
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

package cluster

import (
	"sync/atomic"

	"github.com/roster-registry/roster/fsm"
)

// ApplyStat is the apply time histogram of one command type (see
// fsm.FSM.ApplyStats).
type ApplyStat = fsm.ApplyStat

// ApplyBuckets are the bounds, in seconds, of ApplyStat's buckets.
var ApplyBuckets = fsm.ApplyBuckets

// nodeStats are counters a node keeps for its metrics.
type nodeStats struct {
	gained            atomic.Uint64
	lost              atomic.Uint64
	autopilotRemovals atomic.Uint64
}

func (s *nodeStats) leadership(leading bool) {
	if leading {
		s.gained.Add(1)
	} else {
		s.lost.Add(1)
	}
}

// Stats are a node's counters and gauges, read at once for metrics.
type Stats struct {
	// LeadershipGained and LeadershipLost count the leadership changes
	// this node has seen since it started.
	LeadershipGained uint64
	LeadershipLost   uint64
	// Leases this node runs: all of them on a ready leader, 0 elsewhere.
	Leases int
	// HeldExpiries are leases past their deadline whose expiry
	// self-preservation holds (leader only).
	HeldExpiries int
	// Lease renewals acknowledged (heartbeats and health reports) and lease
	// expiries committed by this node while it led, since it started.
	Heartbeats  uint64
	Expirations uint64
	// AutopilotRemovals counts the failed servers autopilot removed while
	// this node led.
	AutopilotRemovals uint64
}

// Stats returns the node's counters. It reads existing state; nothing on
// the write or heartbeat path waits for it.
func (n *Node) Stats() Stats {
	return Stats{
		LeadershipGained: n.stats.gained.Load(),
		LeadershipLost:   n.stats.lost.Load(),
		Leases:           n.leases.count(),
		HeldExpiries:     n.leases.selfPreservation().Held,
		Heartbeats:       n.leases.heartbeats.Load(),
		Expirations:      n.leases.expired.Load(),

		AutopilotRemovals: n.stats.autopilotRemovals.Load(),
	}
}

// ApplyStats returns the FSM's apply times by command type.
func (n *Node) ApplyStats() []ApplyStat { return n.fsm.ApplyStats() }

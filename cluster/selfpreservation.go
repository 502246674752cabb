package cluster

import (
	"slices"
	"time"
)

// Self-preservation: when more than a share of all leases, or of one
// service's, would expire within a short window, the cause is far more
// likely a network problem between clients and the cluster than that many
// crashes, so the leader holds those expiries until heartbeats return, an
// operator turns it off, or a lease has been held for the maximum hold.
// Groups smaller than the minimum lease count never trip. A held lease's
// instance stays as it was, with a status reason saying it is held, since
// when and until when at the latest. Explicit deregistrations are never
// held.

// SelfPreservation describes what the leader holds.
type SelfPreservation struct {
	// Active: some lease expiry is being held.
	Active bool
	// All: every expiry is held (the share of all leases tripped).
	All bool
	// Services whose expiries are held, as namespace/service, sorted.
	Services []string
	// Held counts leases past their deadline that are being held.
	Held int
}

// assess decides whether expiry must be held: within the window, more than
// the threshold share of all leases (at least the minimum lease count of
// them), or of one service's (at least its minimum), would expire. "Would expire" counts leases already past
// their deadline, leases expired in the last window, and silent leases
// (no heartbeat for over half their TTL) whose deadline falls within the
// window: the signature of clients cut off from the cluster, seen before
// most of them have expired.
func (t *leaseTable) assess(now time.Time, s SelfPreservationSettings) (all bool, held map[serviceKey]bool) {
	if s.Threshold <= 0 {
		return false, nil
	}
	type count struct{ total, dying int }
	counts := map[serviceKey]*count{}
	var sum count
	get := func(sk serviceKey) *count {
		c := counts[sk]
		if c == nil {
			c = &count{}
			counts[sk] = c
		}
		return c
	}
	horizon := now.Add(s.Window)
	for _, l := range t.leases {
		if l.expired {
			continue
		}
		c := get(serviceKey{l.key.Namespace, l.key.Service})
		c.total++
		sum.total++
		if l.expiring || (!l.deadline.After(horizon) && now.Sub(l.lastRenew) > l.ttl/2) {
			c.dying++
			sum.dying++
		}
	}
	for _, r := range t.recent {
		c := get(r.svc)
		c.total++
		c.dying++
		sum.total++
		sum.dying++
	}
	trips := func(c count, minLeases int) bool {
		return c.total >= minLeases && float64(c.dying) > s.Threshold*float64(c.total)
	}
	if trips(sum, s.MinLeases) {
		return true, nil
	}
	for sk, c := range counts {
		if trips(*c, s.minLeases(sk)) {
			if held == nil {
				held = map[serviceKey]bool{}
			}
			held[sk] = true
		}
	}
	return false, held
}

// setSelfPreservation publishes the hold state and logs its changes; t.mu
// is held.
func (t *leaseTable) setSelfPreservation(all bool, held map[serviceKey]bool, due int, s SelfPreservationSettings) {
	active := all || len(held) > 0
	was := t.sp.Active
	changed := active != was || all != t.sp.All || len(held) != len(t.spSvc)
	for sk := range held {
		if !t.spSvc[sk] {
			changed = true
		}
	}
	if !changed {
		return
	}
	var names []string
	for sk := range held {
		names = append(names, sk.String())
	}
	slices.Sort(names)
	t.sp = SelfPreservation{Active: active, All: all, Services: names}
	t.spSvc = held
	switch {
	case active:
		t.logger.Warn("self-preservation: holding lease expiry; too many leases would expire at once",
			"all", all, "services", names, "due", due, "leases", len(t.leases), "threshold", s.Threshold, "window", s.Window,
			"min_leases", s.MinLeases, "max_hold", s.MaxHold)
	case was:
		t.logger.Info("self-preservation lifted; lease expiry resumes", "due", due, "leases", len(t.leases))
	}
}

func (t *leaseTable) selfPreservation() SelfPreservation {
	t.mu.Lock()
	defer t.mu.Unlock()
	sp := t.sp
	sp.Services = append([]string(nil), t.sp.Services...)
	if t.active {
		sp.Held = len(t.due)
	}
	return sp
}

func (t *leaseTable) holds(namespace, service string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.sp.Active {
		return false
	}
	return t.sp.All || (service != "" && t.spSvc[serviceKey{namespace, service}])
}

package cluster

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/store"
)

// ReasonLeaseExpired is the status reason of an instance whose TTL lease
// ran out; a heartbeat turns such an instance passing again.
const ReasonLeaseExpired = "ttl expired"

// Lease errors.
var (
	// ErrNoLease: the instance is registered without a TTL, so there is no
	// lease to renew.
	ErrNoLease = errors.New("instance has no ttl lease; register it with a ttl to heartbeat")
	// errLeaseExpiring: the lease ran out and its expiry is being committed.
	errLeaseExpiring = fmt.Errorf("lease expired: %w", store.ErrNotFound)
)

// lease is the leader's in-memory record of one TTL registration.
// Heartbeats move its deadline; only state changes go through Raft.
type lease struct {
	key    store.Key
	regRev uint64
	ttl    time.Duration
	dca    time.Duration // deregister_critical_after

	deadline  time.Time // expires when now >= deadline
	lastRenew time.Time
	// expiring: an expiry is being proposed; heartbeats answer NotFound.
	expiring bool
	// expired: the lease ran out and the instance is kept critical until
	// reapAt (deregister_critical_after); a heartbeat revives it.
	expired bool
	reapAt  time.Time
	// reviving counts heartbeats committing the instance passing again;
	// revived: one of them has since the lease was last found expired.
	reviving int
	revived  bool
	due      bool // in leaseTable.due
	inHeap   bool
	heapAt   time.Time // when the lease's live heap entry fires
}

// next is when the lease next needs the timer's attention.
func (l *lease) next() time.Time {
	if l.expired {
		return l.reapAt
	}
	return l.deadline
}

type leaseEntry struct {
	at time.Time
	l  *lease
}

// leaseHeap orders leases by the time they were scheduled. Entries go stale
// when a heartbeat moves a deadline; the timer re-files them when popped, so
// a heartbeat costs O(1) and each lease is re-filed at most once per TTL.
type leaseHeap []leaseEntry

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h leaseHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *leaseHeap) Push(x any)        { *h = append(*h, x.(leaseEntry)) }
func (h *leaseHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = leaseEntry{}
	*h = old[:len(old)-1]
	return e
}

type serviceKey struct{ namespace, service string }

func (s serviceKey) String() string { return s.namespace + "/" + s.service }

// leaseTable runs the TTL leases while this node leads.
type leaseTable struct {
	n      *Node
	logger hclog.Logger
	tick   time.Duration
	window time.Duration
	minSP  int
	grace  time.Duration

	mu        sync.Mutex
	active    bool
	seen      uint64 // the history revision the table has caught up with
	threshold float64
	leases    map[store.Key]*lease
	perSvc    map[serviceKey]int
	timers    leaseHeap
	due       map[*lease]struct{}
	recent    []recentExpiry
	sp        SelfPreservation
	spSvc     map[serviceKey]bool
}

type recentExpiry struct {
	at  time.Time
	svc serviceKey
}

func newLeaseTable(n *Node) *leaseTable {
	return &leaseTable{
		n:         n,
		logger:    n.logger.Named("lease"),
		tick:      n.cfg.LeaseTick,
		window:    n.cfg.SelfPreservationWindow,
		minSP:     n.cfg.SelfPreservationMinLeases,
		grace:     n.cfg.leaderLeaseTimeout(),
		threshold: n.cfg.selfPreservationThreshold(),
	}
}

// run is the leader duty: load every lease with a full TTL from now, follow
// registrations, expire what runs out. It ends when leadership is lost.
func (t *leaseTable) run(ctx context.Context) {
	t.mu.Lock()
	t.active = true
	t.seen = 0
	t.threshold = t.n.cfg.selfPreservationThreshold()
	t.leases = map[store.Key]*lease{}
	t.perSvc = map[serviceKey]int{}
	t.timers = nil
	t.due = map[*lease]struct{}{}
	t.recent = nil
	t.sp = SelfPreservation{Threshold: t.threshold}
	t.spSvc = nil
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.active = false
		t.leases, t.perSvc, t.timers, t.due, t.recent = nil, nil, nil, nil, nil
		t.sp, t.spSvc = SelfPreservation{}, nil
		t.mu.Unlock()
	}()

	follow := make(chan struct{})
	go func() {
		defer close(follow)
		followInstances(ctx, t.n.store, t.sync, t.change, t.caughtUp)
	}()
	defer func() { <-follow }()

	ticker := time.NewTicker(t.tick)
	defer ticker.Stop()
	sem := make(chan struct{}, 64)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		expire, reap := t.timerTick(time.Now())
		for _, l := range expire {
			sem <- struct{}{}
			inflight.Add(1)
			go func() {
				defer func() { <-sem; inflight.Done() }()
				t.expire(ctx, l)
			}()
		}
		for _, l := range reap {
			sem <- struct{}{}
			inflight.Add(1)
			go func() {
				defer func() { <-sem; inflight.Done() }()
				t.reap(ctx, l, "critical longer than deregister_critical_after")
			}()
		}
	}
}

// sync merges a full view: leases it does not know get a full TTL (plus the
// leader lease timeout, covering heartbeats a deposed leader acknowledged
// just before it stepped down) from now.
func (t *leaseTable) sync(v *store.View, rev uint64) {
	now := time.Now()
	present := map[store.Key]bool{}
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = v.Instances(func(inst *store.Instance) bool {
		if inst.TTL <= 0 {
			return true
		}
		k := inst.Key()
		present[k] = true
		if l := t.leases[k]; l != nil && l.regRev >= inst.RegistrationRevision {
			return true
		}
		l := t.put(inst, now.Add(t.grace))
		if inst.Status == store.HealthCritical && inst.StatusReason == ReasonLeaseExpired {
			l.expired = true
			l.reapAt = now.Add(inst.DeregisterCriticalAfter)
			t.schedule(l)
		}
		return true
	})
	for k, l := range t.leases {
		if !present[k] && l.regRev <= rev {
			t.drop(l)
		}
	}
}

// change follows one committed change.
func (t *leaseTable) change(ev *store.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.leases[ev.Key]
	switch ev.Type {
	case store.EventDelete:
		if l != nil && l.regRev <= ev.Revision {
			t.drop(l)
		}
	case store.EventPut:
		inst := ev.Instance
		if l != nil && l.regRev > inst.RegistrationRevision {
			return // a newer registration was adopted already
		}
		if inst.TTL <= 0 {
			if l != nil {
				t.drop(l)
			}
			return
		}
		if l != nil && l.regRev == inst.RegistrationRevision {
			return // a health or drain change of a known lease
		}
		t.put(inst, time.Now())
	}
}

func (t *leaseTable) caughtUp(rev uint64) {
	t.mu.Lock()
	t.seen = max(t.seen, rev)
	t.mu.Unlock()
}

// adopt starts the lease of a registration committed at rev, unless the
// table has already followed the history past it. It lets a heartbeat sent
// right after Register returned find its lease.
func (t *leaseTable) adopt(inst *store.Instance, rev uint64) {
	if inst.TTL <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active || rev <= t.seen {
		return
	}
	if l := t.leases[inst.Key()]; l != nil && l.regRev >= rev {
		return
	}
	// The registration may already be gone (deregistered or replaced in a
	// later revision the history follower has not reached yet): a lease for
	// it would let heartbeats succeed on an instance nobody can discover.
	if cur, err := t.n.store.View().Instance(nil, inst.Key()); err != nil || cur.RegistrationRevision != rev {
		return
	}
	c := *inst
	c.RegistrationRevision = rev
	t.put(&c, time.Now())
}

// put starts a lease for inst, replacing any older one; t.mu is held.
func (t *leaseTable) put(inst *store.Instance, now time.Time) *lease {
	k := inst.Key()
	if old := t.leases[k]; old != nil {
		t.drop(old)
	}
	l := &lease{key: k, regRev: inst.RegistrationRevision, ttl: inst.TTL, dca: inst.DeregisterCriticalAfter,
		deadline: now.Add(inst.TTL), lastRenew: now}
	t.leases[k] = l
	t.perSvc[serviceKey{k.Namespace, k.Service}]++
	t.schedule(l)
	return l
}

// drop forgets a lease; t.mu is held. A stale heap entry may remain; the
// timer skips it.
func (t *leaseTable) drop(l *lease) {
	if t.leases[l.key] != l {
		return
	}
	delete(t.leases, l.key)
	delete(t.due, l)
	l.due = false
	sk := serviceKey{l.key.Namespace, l.key.Service}
	if t.perSvc[sk]--; t.perSvc[sk] <= 0 {
		delete(t.perSvc, sk)
	}
}

// schedule files the lease for its next event. A later event (the usual
// heartbeat) leaves the filed entry alone; an earlier one (a revived lease
// whose deadline precedes its reap time) files another, and the timer skips
// whichever entry is no longer the live one.
func (t *leaseTable) schedule(l *lease) {
	at := l.next()
	if !l.inHeap || at.Before(l.heapAt) {
		l.inHeap, l.heapAt = true, at
		heap.Push(&t.timers, leaseEntry{at: at, l: l})
	}
}

// renewal is the outcome of one heartbeat.
type renewal struct {
	ttl    time.Duration
	regRev uint64
	// revive: the lease had expired and the instance is critical; the
	// caller must commit it passing again.
	revive bool
}

// renew moves a lease's deadline to now+TTL. It answers NotFound for an
// unknown instance or a lease whose expiry is already being committed, so an
// acknowledged heartbeat is never followed by an expiry before
// heartbeat+TTL.
func (t *leaseTable) renew(k store.Key) (renewal, error) {
	for attempt := 0; ; attempt++ {
		t.mu.Lock()
		if !t.active {
			t.mu.Unlock()
			return renewal{}, ErrLeaderNotReady
		}
		// Ask raft, not our own flag: after a step-down the duty stops a
		// moment later, and a deposed leader must not acknowledge anything.
		if t.n.raft.State() != raft.Leader {
			t.mu.Unlock()
			return renewal{}, ErrNotLeader
		}
		l := t.leases[k]
		if l == nil {
			seen := t.seen
			t.mu.Unlock()
			if attempt > 0 {
				return renewal{}, fmt.Errorf("heartbeat %s: %w", k, store.ErrNotFound)
			}
			if err := t.lookup(k, seen); err != nil {
				return renewal{}, err
			}
			continue
		}
		if l.expiring {
			t.mu.Unlock()
			return renewal{}, fmt.Errorf("heartbeat %s: %w", k, errLeaseExpiring)
		}
		now := time.Now()
		l.deadline, l.lastRenew = now.Add(l.ttl), now
		if l.due {
			l.due = false
			delete(t.due, l)
		}
		// While a revival is being committed, the instance is still critical
		// in the log: a heartbeat then must commit it too before it is
		// acknowledged, or a failed revival (or a new leader) would leave the
		// acknowledged instance critical and reap it.
		if l.expired {
			l.revived = false
		}
		r := renewal{ttl: l.ttl, regRev: l.regRev, revive: l.expired || l.reviving > 0}
		if r.revive {
			l.reviving++
		}
		l.expired = false
		t.schedule(l)
		t.mu.Unlock()
		return r, nil
	}
}

// lookup explains a heartbeat for an instance without a lease: unknown,
// registered without a TTL, or registered after what the table has followed
// (then it is adopted).
func (t *leaseTable) lookup(k store.Key, seen uint64) error {
	inst, err := t.n.store.View().Instance(nil, k)
	if err != nil {
		return fmt.Errorf("heartbeat %s: %w", k, err)
	}
	if inst.TTL <= 0 {
		return fmt.Errorf("heartbeat %s: %w", k, ErrNoLease)
	}
	if inst.RegistrationRevision <= seen {
		// Followed, yet no lease: it is being removed right now.
		return fmt.Errorf("heartbeat %s: %w", k, errLeaseExpiring)
	}
	t.adopt(inst, inst.RegistrationRevision)
	return nil
}

// reviveDone records the outcome of a heartbeat's revival. When every
// revival under way has failed, the lease is expired again, so the next
// heartbeat tries again; a stale registration loses its lease.
func (t *leaseTable) reviveDone(k store.Key, regRev uint64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.leases[k]
	if l == nil || l.regRev != regRev {
		return
	}
	if l.reviving > 0 {
		l.reviving--
	}
	if err == nil {
		l.revived = true
		return
	}
	if errors.Is(err, store.ErrStaleRegistration) || errors.Is(err, store.ErrNotFound) {
		t.drop(l)
		return
	}
	if l.reviving == 0 && !l.revived && !l.expiring {
		l.expired = true
		l.reapAt = time.Now().Add(l.dca)
	}
}

// timerTick collects what is due at now: leases to expire (unless held by
// self-preservation) and expired leases to reap.
func (t *leaseTable) timerTick(now time.Time) (expire, reap []*lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.timers) > 0 && !t.timers[0].at.After(now) {
		e := heap.Pop(&t.timers).(leaseEntry)
		l := e.l
		if !l.inHeap || !e.at.Equal(l.heapAt) {
			continue // superseded by an earlier entry
		}
		l.inHeap = false
		if t.leases[l.key] != l || l.expiring {
			continue
		}
		if l.next().After(now) {
			t.schedule(l)
			continue
		}
		if l.expired {
			l.expiring = true
			reap = append(reap, l)
			continue
		}
		l.due = true
		t.due[l] = struct{}{}
	}
	cut := 0
	for cut < len(t.recent) && now.Sub(t.recent[cut].at) > t.window {
		cut++
	}
	t.recent = t.recent[cut:]
	if len(t.due) == 0 {
		t.setSelfPreservation(false, nil, 0)
		return expire, reap
	}
	all, held := t.assess(now)
	t.setSelfPreservation(all, held, len(t.due))
	for l := range t.due {
		sk := serviceKey{l.key.Namespace, l.key.Service}
		if all || held[sk] {
			continue
		}
		delete(t.due, l)
		l.due = false
		l.expiring = true
		t.recent = append(t.recent, recentExpiry{at: now, svc: sk})
		expire = append(expire, l)
	}
	return expire, reap
}

// expire commits the end of a lease: the instance turns critical when it
// asked to be kept (deregister_critical_after), else it is removed.
func (t *leaseTable) expire(ctx context.Context, l *lease) {
	if l.dca <= 0 {
		t.reap(ctx, l, ReasonLeaseExpired)
		return
	}
	_, err := t.n.SetHealth(ctx, l.key, l.regRev, store.HealthCritical, ReasonLeaseExpired)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.leases == nil || t.leases[l.key] != l {
		return
	}
	switch {
	case err == nil:
		l.expiring = false
		l.expired = true
		l.reapAt = time.Now().Add(l.dca)
		t.schedule(l)
	case errors.Is(err, store.ErrStaleRegistration), errors.Is(err, store.ErrNotFound):
		t.drop(l)
	default:
		t.retryLater(ctx, l, err)
	}
}

// reap removes the registration of an expired lease.
func (t *leaseTable) reap(ctx context.Context, l *lease, reason string) {
	_, err := t.n.Reap(ctx, l.key, l.regRev, reason)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.leases == nil || t.leases[l.key] != l {
		return
	}
	switch {
	case err == nil, errors.Is(err, store.ErrStaleRegistration), errors.Is(err, store.ErrNotFound):
		t.drop(l)
	default:
		t.retryLater(ctx, l, err)
	}
}

// retryLater puts back a lease whose expiry did not commit; the next tick
// tries again. t.mu is held.
func (t *leaseTable) retryLater(ctx context.Context, l *lease, err error) {
	if ctx.Err() != nil {
		return // leadership is gone; the next leader starts afresh
	}
	t.logger.Warn("committing lease expiry failed; will retry", "instance", l.key.String(), "error", err)
	l.expiring = false
	t.schedule(l)
}

// count returns the number of leases, or 0 when not leading.
func (t *leaseTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.leases)
}

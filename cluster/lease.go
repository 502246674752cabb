package cluster

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-registry/roster/store"
)

// Status reasons the lease table writes.
const (
	// ReasonLeaseExpired is the status reason of an instance whose TTL
	// lease ran out; a heartbeat turns such an instance passing again.
	ReasonLeaseExpired = store.ReasonLeaseExpired
	// ReasonHeartbeatResumed is the status reason of an instance whose
	// heartbeats came back after its lease expired or was held.
	ReasonHeartbeatResumed = store.ReasonHeartbeatResumed
	// ReasonHeldPrefix starts the status reason of an instance whose lease
	// ran out while self-preservation holds its expiry; the rest says since
	// when and until when at the latest.
	ReasonHeldPrefix = "held by self-preservation"
)

// heldReason is the status reason of a lease held since since.
func heldReason(since time.Time, maxHold time.Duration) string {
	return fmt.Sprintf("%s since %s, expires at %s at the latest: no heartbeat within the ttl",
		ReasonHeldPrefix, since.UTC().Format(time.RFC3339), since.Add(maxHold).UTC().Format(time.RFC3339))
}

// Lease errors.
var (
	// ErrNoLease: the instance is registered without a TTL, so there is no
	// lease to renew. Its errors name what tried (leaseOp) and what to do.
	ErrNoLease = errors.New("instance has no TTL lease")
	// errLeaseExpiring: the lease ran out and its expiry is being committed.
	errLeaseExpiring = fmt.Errorf("lease expired: %w", store.ErrNotFound)
)

// leaseOp is what renews a lease: a heartbeat or a health report. Its
// errors name it.
type leaseOp struct {
	// name prefixes the instance in an error: "heartbeat default/web/1".
	name string
	// noLease tells an instance registered without a TTL what to do.
	noLease string
}

var (
	opHeartbeat = leaseOp{name: "heartbeat", noLease: "register it with a TTL to heartbeat"}
	opReport    = leaseOp{name: "report health of", noLease: "register it with --ttl to report its own health"}
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
	// expiredRev: a revision at which the state held it critical (the
	// expiry's commit, or the view that showed it).
	expired    bool
	expiredRev uint64
	reapAt     time.Time
	// reviving counts heartbeats committing the instance passing again;
	// revived: one of them has since the lease was last found expired;
	// revivedRev: the revision of the latest revival committed.
	reviving   int
	revived    bool
	revivedRev uint64
	// heldSince: self-preservation has held this lease's expiry since
	// then (zero: not held). A heartbeat ends the hold.
	heldSince time.Time
	// marked: the store shows the hold (held_since and status reason), as
	// of markRev; marking: a hold mark or its release is being committed.
	marked  bool
	markRev uint64
	marking bool
	due     bool // in leaseTable.due
	inHeap  bool
	heapAt  time.Time // when the lease's live heap entry fires
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

// leaseTable runs the TTL leases while this node leads. Time comes from
// its clock and every write goes through its proposer, so the whole lease
// logic runs in tests on a fake clock.
type leaseTable struct {
	logger   hclog.Logger
	clock    clock
	prop     proposer
	store    *store.Store
	isLeader func() bool
	tick     time.Duration
	grace    time.Duration
	defaults SelfPreservationSettings
	// beforeChange, when set, runs before each followed change (tests).
	beforeChange atomic.Pointer[func()]
	// paused (tests) is added to the age of the quorum contact, in
	// nanoseconds: as if the process had been stopped that long, its clock
	// moving on while raft ran nothing (leasecontact.go).
	paused atomic.Int64
	// contactPause is Config.TestHooks.ContactPause.
	contactPause func() time.Duration
	// refusing is the run of renewals refused for want of quorum contact
	// under way, nil when none is (leasecontact.go).
	refusing atomic.Pointer[refusalRun]

	mu     sync.Mutex
	active bool
	seen   uint64 // the history revision the table has caught up with
	cur    SelfPreservationSettings
	leases map[store.Key]*lease
	perSvc map[serviceKey]int
	timers leaseHeap
	due    map[*lease]struct{}
	// release: held leases that heartbeat again, whose mark is to go.
	release map[*lease]struct{}
	recent  []recentExpiry
	sp      SelfPreservation
	spSvc   map[serviceKey]bool

	// Counters for metrics, kept across terms.
	heartbeats atomic.Uint64
	expired    atomic.Uint64
}

type recentExpiry struct {
	at  time.Time
	svc serviceKey
}

func newLeaseTable(logger hclog.Logger, clk clock, p proposer, s *store.Store, isLeader func() bool, cfg *Config) *leaseTable {
	return &leaseTable{
		logger:   logger,
		clock:    clk,
		prop:     p,
		store:    s,
		isLeader: isLeader,
		tick:     cfg.LeaseTick,
		grace:    cfg.leaderLeaseTimeout(),
		defaults: cfg.selfPreservationDefaults(),

		contactPause: cfg.TestHooks.ContactPause,
	}
}

// settings returns the self-preservation settings in force now.
func (t *leaseTable) settings() SelfPreservationSettings {
	return overlay(t.defaults, t.store.View().SelfPreservation())
}

// start resets the table for a new term.
func (t *leaseTable) start() {
	cur := t.settings()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active = true
	t.seen = 0
	t.cur = cur
	t.leases = map[store.Key]*lease{}
	t.perSvc = map[serviceKey]int{}
	t.timers = nil
	t.due = map[*lease]struct{}{}
	t.release = map[*lease]struct{}{}
	t.recent = nil
	t.sp = SelfPreservation{}
	t.spSvc = nil
}

// stop forgets everything when the term ends.
func (t *leaseTable) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active = false
	t.leases, t.perSvc, t.timers, t.due, t.release, t.recent = nil, nil, nil, nil, nil, nil
	t.sp, t.spSvc = SelfPreservation{}, nil
}

// run is the leader duty: load every lease with a full TTL from now, follow
// registrations, expire what runs out. It ends when leadership is lost.
func (t *leaseTable) run(ctx context.Context) {
	t.start()
	defer t.stop()

	follow := make(chan struct{})
	go func() {
		defer close(follow)
		followInstances(ctx, t.store, t.sync, t.change, t.caughtUp)
	}()
	defer func() { <-follow }()

	ticker := t.clock.NewTicker(t.tick)
	defer ticker.Stop()
	sem := make(chan struct{}, 64)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	spawn := func(fn func()) {
		sem <- struct{}{}
		inflight.Add(1)
		go func() {
			defer func() { <-sem; inflight.Done() }()
			fn()
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
		t.timerTick(t.clock.Now()).do(ctx, t, spawn)
	}
}

// leaseWork is what one timer tick decided to commit.
type leaseWork struct {
	expire, reap, hold, release []*lease
}

// do commits the work, each item through spawn.
func (w leaseWork) do(ctx context.Context, t *leaseTable, spawn func(func())) {
	for _, l := range w.expire {
		spawn(func() { t.expire(ctx, l) })
	}
	for _, l := range w.reap {
		spawn(func() { t.reap(ctx, l, "critical longer than deregister_critical_after") })
	}
	for _, l := range w.hold {
		spawn(func() { t.mark(ctx, l, true) })
	}
	for _, l := range w.release {
		spawn(func() { t.mark(ctx, l, false) })
	}
}

// sync merges a full view: leases it does not know get a full TTL (plus the
// leader lease timeout, covering heartbeats a deposed leader acknowledged
// just before it stepped down) from now.
func (t *leaseTable) sync(v *store.View, rev uint64) {
	now := t.clock.Now()
	present := map[store.Key]bool{}
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = v.Instances(func(inst *store.Instance) bool {
		if inst.TTL <= 0 {
			return true
		}
		k := inst.Key()
		present[k] = true
		expired := inst.Status == store.HealthCritical && inst.StatusReason() == ReasonLeaseExpired
		// Keep the lease of this very registration, or of a newer one
		// adopted after v was taken. A newer one the view does not hold
		// (v is a backup restored over it) would be reaped as stale at its
		// deadline and leave the registration in v without a lease.
		if l := t.leases[k]; l != nil && (l.regRev == inst.RegistrationRevision || l.regRev > rev) {
			// The state holds this registration expired (a backup of it
			// restored, say) while the lease is live: mark it so, or its
			// heartbeats would renew it and never revive the instance. Not
			// while a revival or an expiry of its own is under way, nor when
			// v predates the latest revival.
			if expired && !l.expired && l.regRev == inst.RegistrationRevision &&
				l.reviving == 0 && !l.expiring && v.Revision() >= l.revivedRev {
				t.markExpired(l, now, inst)
			}
			// The reverse: the state holds it not critical (a backup taken
			// while it was alive, restored) while the lease has expired.
			// An expired lease never expires again, so it would stay so
			// with no heartbeat behind it until its reap: give it a full
			// lease from now, as a new leader would. Not while a revival
			// or a reap is under way, nor when v predates the expiry.
			if inst.Status != store.HealthCritical && l.expired && l.regRev == inst.RegistrationRevision &&
				l.reviving == 0 && !l.expiring && v.Revision() >= l.expiredRev {
				t.put(inst, now.Add(t.grace))
			}
			return true
		}
		l := t.put(inst, now.Add(t.grace))
		if expired {
			t.markExpired(l, now, inst)
		}
		return true
	})
	for k, l := range t.leases {
		if !present[k] && l.regRev <= rev {
			t.drop(l)
		}
	}
}

// markExpired records that the state holds l's instance critical for its
// expired lease: a heartbeat revives it, and it is reaped after its
// DeregisterCriticalAfter. t.mu is held.
func (t *leaseTable) markExpired(l *lease, now time.Time, inst *store.Instance) {
	l.expired, l.expiredRev = true, max(l.expiredRev, inst.ModRevision)
	l.reapAt = now.Add(inst.DeregisterCriticalAfter())
	t.schedule(l)
}

// change follows one committed change, made at revision rev.
func (t *leaseTable) change(rev uint64, ev *store.Event) {
	if hook := t.beforeChange.Load(); hook != nil {
		(*hook)()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.leases[ev.Key()]
	switch ev.Type() {
	case store.EventDelete:
		if l != nil && l.regRev <= rev {
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
			// A health, drain or hold change of a known lease: a status
			// change clears a hold mark.
			if inst.ModRevision > l.markRev {
				l.marked, l.markRev = inst.HeldSince() != 0, inst.ModRevision
			}
			return
		}
		t.put(inst, t.clock.Now())
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
	if cur, err := t.store.View().Instance(nil, inst.Key()); err != nil || cur.RegistrationRevision != rev {
		return
	}
	c := *inst
	c.RegistrationRevision = rev
	t.put(&c, t.clock.Now())
}

// put starts a lease for inst, replacing any older one; t.mu is held.
func (t *leaseTable) put(inst *store.Instance, now time.Time) *lease {
	k := inst.Key()
	if old := t.leases[k]; old != nil {
		t.drop(old)
	}
	l := &lease{key: k, regRev: inst.RegistrationRevision, ttl: inst.TTL, dca: inst.DeregisterCriticalAfter(),
		deadline: now.Add(inst.TTL), lastRenew: now}
	if inst.HeldSince() != 0 {
		// Held under an earlier leader: the hold keeps its start, so a
		// failover never extends it beyond the maximum.
		l.marked, l.markRev, l.heldSince = true, inst.ModRevision, time.Unix(0, inst.HeldSince())
	}
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
	delete(t.release, l)
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
func (t *leaseTable) renew(k store.Key, op leaseOp) (renewal, error) {
	for attempt := 0; ; attempt++ {
		t.mu.Lock()
		if !t.active {
			t.mu.Unlock()
			return renewal{}, ErrLeaderNotReady
		}
		// Ask raft, not our own flag: after a step-down the duty stops a
		// moment later, and a deposed leader must not acknowledge anything.
		if !t.isLeader() {
			t.mu.Unlock()
			return renewal{}, ErrNotLeader
		}
		l := t.leases[k]
		if l == nil {
			seen := t.seen
			t.mu.Unlock()
			if attempt > 0 {
				return renewal{}, fmt.Errorf("%s %s: %w", op.name, k, store.ErrNotFound)
			}
			if err := t.lookup(k, seen, op); err != nil {
				return renewal{}, err
			}
			continue
		}
		if l.expiring {
			t.mu.Unlock()
			return renewal{}, fmt.Errorf("%s %s: %w", op.name, k, errLeaseExpiring)
		}
		now := t.clock.Now()
		l.deadline, l.lastRenew = now.Add(l.ttl), now
		if l.due {
			l.due = false
			delete(t.due, l)
		}
		// A heartbeat ends a hold; its mark goes at the next tick.
		l.heldSince = time.Time{}
		if l.marked || l.marking {
			t.release[l] = struct{}{}
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
func (t *leaseTable) lookup(k store.Key, seen uint64, op leaseOp) error {
	inst, err := t.store.View().Instance(nil, k)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op.name, k, err)
	}
	if inst.TTL <= 0 {
		return fmt.Errorf("%s %s: %w; %s", op.name, k, ErrNoLease, op.noLease)
	}
	if inst.RegistrationRevision <= seen {
		// Followed, yet no lease: it is being removed right now.
		return fmt.Errorf("%s %s: %w", op.name, k, errLeaseExpiring)
	}
	t.adopt(inst, inst.RegistrationRevision)
	return nil
}

// reviveDone records the outcome of a heartbeat's revival. When every
// revival under way has failed, the lease is expired again, so the next
// heartbeat tries again; a stale registration loses its lease.
func (t *leaseTable) reviveDone(k store.Key, regRev, rev uint64, err error) {
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
		l.revivedRev = max(l.revivedRev, rev)
		return
	}
	if errors.Is(err, store.ErrStaleRegistration) || errors.Is(err, store.ErrNotFound) {
		t.drop(l)
		return
	}
	if l.reviving == 0 && !l.revived && !l.expiring {
		l.expired = true
		l.reapAt = t.clock.Now().Add(l.dca)
	}
}

// timerTick collects what is due at now: leases to expire, expired leases
// to reap, and the hold marks to commit or release. A lease whose expiry
// self-preservation holds stays due; once it has been held for the maximum
// hold it expires all the same.
func (t *leaseTable) timerTick(now time.Time) leaseWork {
	settings := t.settings()
	t.mu.Lock()
	defer t.mu.Unlock()
	var w leaseWork
	if !t.active {
		return w
	}
	t.cur = settings
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
			w.reap = append(w.reap, l)
			continue
		}
		l.due = true
		t.due[l] = struct{}{}
	}
	cut := 0
	for cut < len(t.recent) && now.Sub(t.recent[cut].at) > settings.Window {
		cut++
	}
	t.recent = t.recent[cut:]
	for l := range t.release {
		if t.leases[l.key] != l || !l.marked || l.due || l.expiring {
			delete(t.release, l)
			continue
		}
		if l.marking {
			continue // a mark still in flight; released once it lands
		}
		delete(t.release, l)
		l.marking = true
		w.release = append(w.release, l)
	}
	if len(t.due) == 0 {
		t.setSelfPreservation(false, nil, 0, settings)
		return w
	}
	all, held := t.assess(now, settings)
	t.setSelfPreservation(all, held, len(t.due), settings)
	for l := range t.due {
		sk := serviceKey{l.key.Namespace, l.key.Service}
		if all || held[sk] {
			if l.heldSince.IsZero() {
				l.heldSince = now
			}
			if now.Sub(l.heldSince) < settings.MaxHold {
				if !l.marked && !l.marking {
					l.marking = true
					w.hold = append(w.hold, l)
				}
				continue
			}
			t.logger.Warn("self-preservation: lease held for the maximum; expiring it",
				"instance", l.key.String(), "held_since", l.heldSince.UTC().Format(time.RFC3339), "max_hold", settings.MaxHold)
		}
		delete(t.due, l)
		l.due = false
		l.expiring = true
		t.recent = append(t.recent, recentExpiry{at: now, svc: sk})
		w.expire = append(w.expire, l)
	}
	return w
}

// mark commits a hold mark of a held lease (held), or its release once
// heartbeats are back.
func (t *leaseTable) mark(ctx context.Context, l *lease, held bool) {
	var since time.Time
	reason := ReasonHeartbeatResumed
	t.mu.Lock()
	if held {
		if l.heldSince.IsZero() {
			// It heartbeat after the tick that decided to mark it.
			l.marking = false
			t.mu.Unlock()
			return
		}
		since = l.heldSince
		reason = heldReason(since, t.cur.MaxHold)
	}
	t.mu.Unlock()
	rev, err := t.prop.holdMark(ctx, l.key, l.regRev, since, reason)
	t.mu.Lock()
	defer t.mu.Unlock()
	l.marking = false
	if t.leases == nil || t.leases[l.key] != l {
		return
	}
	switch {
	case err == nil:
		// Marked as far as this leader is concerned, even when the store
		// left a critical instance alone: proposing again would not change
		// that.
		l.marked, l.markRev = held, max(l.markRev, rev)
		if held && !l.due {
			t.release[l] = struct{}{} // it heartbeat while being marked
		}
	case errors.Is(err, store.ErrStaleRegistration), errors.Is(err, store.ErrNotFound):
		t.drop(l)
	default:
		if ctx.Err() == nil {
			t.logger.Warn("committing a self-preservation hold mark failed; will retry", "instance", l.key.String(), "error", err)
		}
		if !held {
			t.release[l] = struct{}{}
		}
	}
}

// expire commits the end of a lease: the instance turns critical when it
// asked to be kept (deregister_critical_after), else it is removed.
func (t *leaseTable) expire(ctx context.Context, l *lease) {
	if l.dca <= 0 {
		t.reap(ctx, l, ReasonLeaseExpired)
		return
	}
	rev, err := t.prop.SetHealth(ctx, l.key, l.regRev, store.HealthCritical, ReasonLeaseExpired)
	if err == nil {
		t.expired.Add(1)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.leases == nil || t.leases[l.key] != l {
		return
	}
	switch {
	case err == nil:
		l.expiring = false
		l.expired, l.expiredRev = true, max(l.expiredRev, rev)
		l.heldSince, l.marked = time.Time{}, false
		l.reapAt = t.clock.Now().Add(l.dca)
		t.schedule(l)
	case errors.Is(err, store.ErrStaleRegistration), errors.Is(err, store.ErrNotFound):
		t.drop(l)
	default:
		t.retryLater(ctx, l, err)
	}
}

// reap removes the registration of an expired lease.
func (t *leaseTable) reap(ctx context.Context, l *lease, reason string) {
	_, err := t.prop.Reap(ctx, l.key, l.regRev, reason)
	if err == nil && reason == ReasonLeaseExpired {
		t.expired.Add(1)
	}
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

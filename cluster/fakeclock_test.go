package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roster-registry/roster/store"
)

// fakeClock is a clock that moves only when a test advances it. Tickers and
// timers fire (without blocking) when their time is reached.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
	timers  []*fakeTimer
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock and fires what came due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.tickers {
		if !t.stopped && !t.next.After(c.now) {
			select {
			case t.ch <- c.now:
			default:
			}
			for !t.next.After(c.now) {
				t.next = t.next.Add(t.d)
			}
		}
	}
	for _, t := range c.timers {
		if t.armed && !t.at.After(c.now) {
			t.armed = false
			select {
			case t.ch <- c.now:
			default:
			}
		}
	}
}

func (c *fakeClock) NewTicker(d time.Duration) clockTicker {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTicker{c: c, d: d, next: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.tickers = append(c.tickers, t)
	return t
}

func (c *fakeClock) NewTimer(d time.Duration) clockTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), armed: true, ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	return t
}

type fakeTicker struct {
	c       *fakeClock
	d       time.Duration
	next    time.Time
	stopped bool
	ch      chan time.Time
}

func (t *fakeTicker) C() <-chan time.Time { return t.ch }
func (t *fakeTicker) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.stopped = true
}

type fakeTimer struct {
	c     *fakeClock
	at    time.Time
	armed bool
	ch    chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }
func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}
func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.at, t.armed = t.c.now.Add(d), true
	return was
}

// storeProposer commits straight into a store, one index per command, as
// the FSM would. before, when set, runs first and may fail the command.
type storeProposer struct {
	mu     sync.Mutex
	s      *store.Store
	index  uint64
	before func(cmd string, k store.Key) error
	calls  []string
}

func (p *storeProposer) write(cmd string, k store.Key, fn func(w *store.WriteTxn) (uint64, error)) (uint64, error) {
	p.mu.Lock()
	before := p.before
	p.calls = append(p.calls, cmd+" "+k.String())
	p.mu.Unlock()
	if before != nil {
		if err := before(cmd, k); err != nil {
			return 0, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.index++
	w := p.s.Begin(p.index)
	defer w.Abort()
	rev, err := fn(w)
	if err != nil {
		return 0, err
	}
	if err := w.Commit(); err != nil {
		return 0, err
	}
	return rev, nil
}

func (p *storeProposer) SetHealth(_ context.Context, k store.Key, regRev uint64, h store.Health, reason string) (uint64, error) {
	return p.write("health-"+h.String(), k, func(w *store.WriteTxn) (uint64, error) {
		return w.SetHealth(k, regRev, h, reason, 1)
	})
}

func (p *storeProposer) Reap(_ context.Context, k store.Key, regRev uint64, _ string) (uint64, error) {
	return p.write("reap", k, func(w *store.WriteTxn) (uint64, error) { return w.Reap(k, regRev) })
}

func (p *storeProposer) holdMark(_ context.Context, k store.Key, regRev uint64, since time.Time, reason string) (uint64, error) {
	var ns int64
	cmd := "release"
	if !since.IsZero() {
		ns, cmd = since.UnixNano(), "hold"
	}
	return p.write(cmd, k, func(w *store.WriteTxn) (uint64, error) { return w.SetHeld(k, regRev, ns, reason) })
}

func (p *storeProposer) register(inst *store.Instance) uint64 {
	rev, err := p.write("register", inst.Key(), func(w *store.WriteTxn) (uint64, error) { return w.Register(inst, 1) })
	if err != nil {
		panic(err)
	}
	return rev
}

func (p *storeProposer) count(cmd string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		if len(c) > len(cmd) && c[:len(cmd)+1] == cmd+" " {
			n++
		}
	}
	return n
}

var errInjected = errors.New("injected failure")

// leaseHarness runs a lease table on a fake clock over a store it commits
// to directly. Everything happens on the test's goroutine: a tick commits
// its work before the next one.
type leaseHarness struct {
	t        *testing.T
	clock    *fakeClock
	store    *store.Store
	prop     *storeProposer
	tbl      *leaseTable
	cfg      Config
	followed uint64
	// alive heartbeats each of these instances (svc/id) every period.
	alive     map[string]time.Time
	alivePace time.Duration
}

func newLeaseHarness(t *testing.T, configure func(*Config)) *leaseHarness {
	t.Helper()
	cfg := Config{NodeID: "t", InMemory: true, LeaderLeaseTimeout: 500 * time.Millisecond}
	if configure != nil {
		configure(&cfg)
	}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	s := store.New(store.DefaultOptions())
	h := &leaseHarness{t: t, clock: newFakeClock(), store: s, prop: &storeProposer{s: s}, cfg: cfg,
		alive: map[string]time.Time{}, alivePace: 500 * time.Millisecond}
	h.tbl = newLeaseTable(cfg.Logger, h.clock, h.prop, s, func() bool { return true }, &cfg)
	h.term()
	return h
}

// term starts a new leader term: the table forgets everything and loads
// the store afresh, as a new leader's does.
func (h *leaseHarness) term() {
	h.tbl.stop()
	h.tbl.start()
	v := h.store.View()
	h.tbl.sync(v, v.Revision())
	h.tbl.caughtUp(v.Revision())
	h.followed = v.Revision()
}

// follow feeds the table what was committed since it last looked.
func (h *leaseHarness) follow() {
	revs, _, _, err := h.store.History().Since(h.followed, 1<<20)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, r := range revs {
		for _, ev := range r.Events {
			h.tbl.change(r.Revision, ev)
		}
		h.followed = r.Revision
	}
	h.tbl.caughtUp(h.followed)
}

func key(svc, id string) store.Key { return store.Key{Namespace: "default", Service: svc, ID: id} }

func (h *leaseHarness) register(svc, id string, ttl, dca time.Duration) {
	inst := &store.Instance{Namespace: "default", Service: svc, ID: id, Address: "10.0.0.1", Port: 80, Weight: 100, TTL: ttl}
	inst.SetDeregisterCriticalAfter(dca)
	h.prop.register(inst)
	h.follow()
}

func (h *leaseHarness) heartbeat(svc, id string) error {
	_, err := h.tbl.heartbeat(context.Background(), key(svc, id))
	h.follow()
	return err
}

// advance moves the clock tick by tick, running each tick's work.
func (h *leaseHarness) advance(d time.Duration) {
	for end := h.clock.Now().Add(d); h.clock.Now().Before(end); {
		step := min(h.cfg.LeaseTick, end.Sub(h.clock.Now()))
		h.clock.Advance(step)
		for name, last := range h.alive {
			if h.clock.Now().Sub(last) >= h.alivePace {
				svc, id, _ := strings.Cut(name, "/")
				if err := h.heartbeat(svc, id); err != nil {
					h.t.Fatalf("heartbeat of %s at %s: %v", name, h.elapsed(), err)
				}
				h.alive[name] = h.clock.Now()
			}
		}
		h.tbl.timerTick(h.clock.Now()).do(context.Background(), h.tbl, func(fn func()) { fn() })
		h.follow()
	}
}

func (h *leaseHarness) instance(svc, id string) *store.Instance {
	inst, err := h.store.View().Instance(nil, key(svc, id))
	if err != nil {
		return nil
	}
	return inst
}

// state describes an instance as the tests name it: gone, passing,
// critical, or held (passing, with a hold reason).
func (h *leaseHarness) state(svc, id string) string {
	inst := h.instance(svc, id)
	switch {
	case inst == nil:
		return "gone"
	case inst.HeldSince() != 0:
		if inst.Status != store.HealthPassing || len(inst.StatusReason()) < len(ReasonHeldPrefix) ||
			inst.StatusReason()[:len(ReasonHeldPrefix)] != ReasonHeldPrefix {
			return fmt.Sprintf("bad hold: %v %q", inst.Status, inst.StatusReason())
		}
		return "held"
	default:
		return inst.Status.String()
	}
}

// keepAlive heartbeats svc/id from now on.
func (h *leaseHarness) keepAlive(names ...string) {
	for _, n := range names {
		h.alive[n] = h.clock.Now()
	}
}

// elapsed is the fake time since the harness started.
func (h *leaseHarness) elapsed() time.Duration { return h.clock.Now().Sub(newFakeClock().now) }

// until advances the clock to at (fake time since the start).
func (h *leaseHarness) until(at time.Duration) {
	if d := at - h.elapsed(); d > 0 {
		h.advance(d)
	}
}

// settings commits replicated self-preservation settings.
func (h *leaseHarness) settings(s store.SelfPreservationSettings) {
	h.prop.mu.Lock()
	defer h.prop.mu.Unlock()
	h.prop.index++
	w := h.store.Begin(h.prop.index)
	defer w.Abort()
	if err := w.ChangeSelfPreservation(false, s); err != nil {
		h.t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		h.t.Fatal(err)
	}
}

package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-registry/roster/store"
)

// checkRunner runs the active health checks while this node leads. Time
// comes from its clock and every transition goes through its proposer, so
// tests drive it with a fake clock and fake probes. Each check has its own
// loop; probes share a pool of CheckWorkers slots, so a
// thousand slow targets cannot make a thousand concurrent connections.
// Only transitions are committed, each carrying the registration revision.
type checkRunner struct {
	logger    hclog.Logger
	clock     clock
	prop      proposer
	store     *store.Store
	workers   int
	newProber func(*store.Check) prober

	mu     sync.Mutex
	checks map[store.Key]*checkState
	slots  chan struct{}
	wg     sync.WaitGroup
}

// checkState is the leader's view of one instance's check. Its counters
// start from zero and its status from the stored one when a leader takes
// over, so a new leader proposes nothing until its own results meet a
// threshold.
type checkState struct {
	key    store.Key
	regRev uint64
	check  store.Check
	ttl    time.Duration
	dca    time.Duration

	status        store.Health
	successes     uint32
	failures      uint32
	criticalSince time.Time

	probe  prober
	cancel context.CancelFunc
}

func newCheckRunner(logger hclog.Logger, clk clock, p proposer, s *store.Store, workers int) *checkRunner {
	return &checkRunner{logger: logger, clock: clk, prop: p, store: s, workers: workers, newProber: newProber}
}

// run is the leader duty.
func (r *checkRunner) run(ctx context.Context) {
	r.mu.Lock()
	r.checks = map[store.Key]*checkState{}
	r.slots = make(chan struct{}, r.workers)
	r.mu.Unlock()
	followInstances(ctx, r.store, r.sync, r.change, func(uint64) {})
	r.mu.Lock()
	for _, c := range r.checks {
		c.cancel()
	}
	r.checks = nil
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *checkRunner) sync(v *store.View, _ uint64) {
	present := map[store.Key]bool{}
	_ = v.Instances(func(inst *store.Instance) bool {
		if inst.Check() != nil {
			present[inst.Key()] = true
			r.upsert(inst)
		}
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, c := range r.checks {
		if !present[k] {
			c.cancel()
			delete(r.checks, k)
		}
	}
}

func (r *checkRunner) change(_ uint64, ev *store.Event) {
	if ev.Type() == store.EventPut && ev.Instance.Check() != nil {
		r.upsert(ev.Instance)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.checks[ev.Key()]; c != nil {
		c.cancel()
		delete(r.checks, ev.Key())
	}
}

// upsert starts the check of inst unless the same registration's same
// check already runs.
func (r *checkRunner) upsert(inst *store.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.checks == nil {
		return
	}
	k := inst.Key()
	if c := r.checks[k]; c != nil {
		if c.regRev == inst.RegistrationRevision && c.check == *inst.Check() {
			return
		}
		c.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkState{
		key: k, regRev: inst.RegistrationRevision, check: *inst.Check(),
		ttl: inst.TTL, dca: inst.DeregisterCriticalAfter(),
		status: inst.Status, cancel: cancel,
	}
	if c.status == store.HealthCritical {
		// Never reap early: the critical time counts from when this leader
		// first saw it.
		c.criticalSince = r.clock.Now()
	}
	c.probe = r.newProber(&c.check)
	r.checks[k] = c
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer c.probe.close()
		r.loop(ctx, c)
	}()
}

// loop probes one instance every interval. The first probe comes at a
// random point of the first interval, so checks taken over together by a new
// leader do not all fire at once.
func (r *checkRunner) loop(ctx context.Context, c *checkState) {
	wait := time.Duration(rand.Int64N(int64(max(c.check.Interval, time.Millisecond))))
	t := r.clock.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		pctx, cancel := context.WithTimeout(ctx, c.check.Timeout)
		h, reason := c.probe.probe(pctx)
		cancel()
		<-r.slots
		if ctx.Err() != nil {
			return
		}
		if !r.observe(ctx, c, h, reason) {
			return
		}
		t.Reset(c.check.Interval)
	}
}

// observe counts one result and commits a transition when a threshold is
// met. It reports false when the registration is gone.
func (r *checkRunner) observe(ctx context.Context, c *checkState, h store.Health, reason string) bool {
	want := c.status
	switch h {
	case store.HealthCritical:
		c.successes = 0
		c.failures++
		if c.status != store.HealthCritical && c.failures >= c.check.FailuresBeforeCritical {
			want = store.HealthCritical
		}
	default:
		c.failures = 0
		c.successes++
		switch {
		case c.status == store.HealthCritical || c.status == store.HealthUnspecified:
			if c.successes >= c.check.SuccessesBeforePassing {
				want = h
			}
		case c.status != h:
			// passing <-> warning: the instance answers either way.
			want = h
		}
		if want != c.status && c.ttl > 0 && r.leaseExpired(c) {
			// A check does not revive an instance whose lease ran out;
			// only a heartbeat does.
			want = c.status
		}
	}
	if want != c.status {
		_, err := r.prop.SetHealth(ctx, c.key, c.regRev, want, reason)
		switch {
		case err == nil:
			r.logger.Debug("health transition", "instance", c.key.String(), "from", c.status, "to", want, "reason", reason)
			c.status = want
			if want == store.HealthCritical {
				c.criticalSince = r.clock.Now()
			}
		case errors.Is(err, store.ErrStaleRegistration), errors.Is(err, store.ErrNotFound):
			return false
		default:
			if ctx.Err() == nil {
				r.logger.Warn("committing health transition failed; the next result retries", "instance", c.key.String(), "error", err)
			}
		}
	}
	if c.status == store.HealthCritical && c.dca > 0 && r.clock.Now().Sub(c.criticalSince) >= c.dca {
		_, err := r.prop.Reap(ctx, c.key, c.regRev, "critical longer than deregister_critical_after")
		if err == nil || errors.Is(err, store.ErrStaleRegistration) || errors.Is(err, store.ErrNotFound) {
			return false
		}
	}
	return true
}

func (r *checkRunner) leaseExpired(c *checkState) bool {
	inst, err := r.store.View().Instance(nil, c.key)
	return err == nil && inst.Status == store.HealthCritical && inst.StatusReason() == ReasonLeaseExpired
}

// count returns how many checks run here.
func (r *checkRunner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.checks)
}

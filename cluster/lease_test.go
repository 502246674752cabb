package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roster-registry/roster/store"
)

// leaseStep advances the fake clock to at (since the start), then does
// what it says and checks the instances it names.
type leaseStep struct {
	at       time.Duration
	failover bool     // a new leader term starts (after advancing)
	beat     []string // svc/id heartbeat once
	alive    []string // svc/id heartbeat from now on
	want     map[string]string
}

type leaseCase struct {
	name      string
	configure func(*Config)
	settings  *store.SelfPreservationSettings
	instances map[string][]string // service -> ids, registered at 0
	ttl, dca  time.Duration
	alive     []string // svc/id heartbeating from the start
	steps     []leaseStep
	check     func(t *testing.T, h *leaseHarness)
}

func ids(prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func names(svc string, ids ...string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, svc+"/"+id)
	}
	return out
}

func all(state string, names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = state
	}
	return m
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func runLeaseCase(t *testing.T, tc leaseCase) *leaseHarness {
	h := newLeaseHarness(t, tc.configure)
	if tc.settings != nil {
		h.settings(*tc.settings)
	}
	for svc, ids := range tc.instances {
		for _, id := range ids {
			h.register(svc, id, tc.ttl, tc.dca)
		}
	}
	h.keepAlive(tc.alive...)
	for _, st := range tc.steps {
		h.until(st.at)
		if st.failover {
			h.term()
		}
		for _, n := range st.beat {
			svc, id, _ := strings.Cut(n, "/")
			if err := h.heartbeat(svc, id); err != nil {
				t.Fatalf("at %s: heartbeat %s: %v", st.at, n, err)
			}
		}
		h.keepAlive(st.alive...)
		for n, want := range st.want {
			svc, id, _ := strings.Cut(n, "/")
			if got := h.state(svc, id); got != want {
				inst := h.instance(svc, id)
				t.Fatalf("at %s: %s is %s, want %s (%+v)", st.at, n, got, want, inst)
			}
		}
	}
	if tc.check != nil {
		tc.check(t, h)
	}
	return h
}

func u32(v uint32) *uint32 { return &v }

// TestSelfPreservation runs the hold logic on a fake clock: when a trip
// holds expiry, what the held instances show, what bounds a hold, and the
// minimum lease counts (for the whole cluster and per service).
func TestSelfPreservation(t *testing.T) {
	const ttl = 2 * time.Second
	fleet := ids("f", 12)
	live, dead := names("web", fleet[:4]...), names("web", fleet[4:]...)
	maxHold := func(d time.Duration) func(*Config) { return func(c *Config) { c.SelfPreservationMaxHold = d } }
	cases := []leaseCase{
		{
			// The reproduction: a fresh node, three instances with 2s TTLs,
			// one kept alive. Twenty seconds later the two dead ones must
			// be gone, not held: 3 leases is below the default minimum.
			name: "3 instances, 2 die: no trip", ttl: ttl,
			instances: map[string][]string{"web": {"a", "b", "c"}},
			alive:     []string{"web/a"},
			steps: []leaseStep{
				{at: 1900 * time.Millisecond, want: all("passing", "web/a", "web/b", "web/c")},
				{at: 2500 * time.Millisecond, want: merge(all("passing", "web/a"), all("gone", "web/b", "web/c"))},
				{at: 20 * time.Second, want: merge(all("passing", "web/a"), all("gone", "web/b", "web/c"))},
			},
		},
		{
			name: "small cluster, 2 of 3 services lose their instance: no trip", ttl: ttl,
			instances: map[string][]string{"x": {"a"}, "y": {"a"}, "z": {"a"}},
			alive:     []string{"x/a"},
			steps: []leaseStep{
				{at: 2500 * time.Millisecond, want: merge(all("passing", "x/a"), all("gone", "y/a", "z/a"))},
			},
		},
		{
			name: "12 instances, 8 die at once: held, marked, and released after the maximum hold", ttl: ttl,
			configure: maxHold(time.Minute),
			instances: map[string][]string{"web": fleet},
			alive:     live,
			steps: []leaseStep{
				{at: 1900 * time.Millisecond, want: all("passing", append(live, dead...)...)},
				{at: 2500 * time.Millisecond, want: merge(all("passing", live...), all("held", dead...))},
				{at: 61500 * time.Millisecond, want: merge(all("passing", live...), all("held", dead...))},
				{at: 62500 * time.Millisecond, want: merge(all("passing", live...), all("gone", dead...))},
			},
			check: func(t *testing.T, h *leaseHarness) {
				// One mark per held lease, not one per tick.
				if n := h.prop.count("hold"); n != len(dead) {
					t.Fatalf("%d hold marks for %d held leases", n, len(dead))
				}
			},
		},
		{
			name: "a held lease with deregister_critical_after turns critical after the maximum hold", ttl: ttl, dca: time.Hour,
			configure: maxHold(30 * time.Second),
			instances: map[string][]string{"web": fleet},
			alive:     live,
			steps: []leaseStep{
				{at: 3 * time.Second, want: all("held", dead...)},
				{at: 32500 * time.Millisecond, want: merge(all("passing", live...), all("critical", dead...))},
			},
			check: func(t *testing.T, h *leaseHarness) {
				inst := h.instance("web", fleet[5])
				if inst.StatusReason() != ReasonLeaseExpired || inst.HeldSince() != 0 {
					t.Fatalf("after the hold: %q held_since=%d", inst.StatusReason(), inst.HeldSince())
				}
			},
		},
		{
			name: "heartbeats return during a hold: the mark is released", ttl: ttl,
			instances: map[string][]string{"web": fleet},
			alive:     live,
			steps: []leaseStep{
				{at: 5 * time.Second, want: all("held", dead...), alive: dead},
				{at: 6 * time.Second, want: all("passing", append(live, dead...)...)},
				{at: 30 * time.Second, want: all("passing", append(live, dead...)...)},
			},
			check: func(t *testing.T, h *leaseHarness) {
				if r := h.instance("web", fleet[7]).StatusReason(); r != ReasonHeartbeatResumed {
					t.Fatalf("released instance's reason %q", r)
				}
				if sp := h.tbl.selfPreservation(); sp.Active || sp.Held != 0 {
					t.Fatalf("self-preservation still reported: %+v", sp)
				}
			},
		},
		{
			name: "a failover does not restart the hold's clock", ttl: ttl,
			configure: maxHold(time.Minute),
			instances: map[string][]string{"web": fleet},
			alive:     live,
			steps: []leaseStep{
				{at: 40 * time.Second, failover: true, want: all("held", dead...)},
				{at: 61500 * time.Millisecond, want: all("held", dead...)},
				{at: 62500 * time.Millisecond, want: merge(all("passing", live...), all("gone", dead...))},
			},
		},
		{
			name: "the replicated per-service minimum lets a 3-instance service trip", ttl: ttl,
			settings:  &store.SelfPreservationSettings{ServiceMinLeases: map[string]uint32{"default/web": 3}},
			instances: map[string][]string{"web": {"a", "b", "c"}, "api": {"a", "b", "c"}},
			alive:     []string{"web/a", "api/a"},
			steps: []leaseStep{
				{at: 3 * time.Second, want: merge(all("passing", "web/a", "api/a"), all("held", "web/b", "web/c"), all("gone", "api/b", "api/c"))},
			},
		},
		{
			name: "the replicated cluster minimum applies to every group", ttl: ttl,
			settings:  &store.SelfPreservationSettings{MinLeases: u32(3)},
			instances: map[string][]string{"web": {"a", "b", "c"}},
			alive:     []string{"web/a"},
			steps: []leaseStep{
				{at: 3 * time.Second, want: merge(all("passing", "web/a"), all("held", "web/b", "web/c"))},
			},
		},
		{
			name: "a configured minimum of 3 trips too", ttl: ttl,
			configure: func(c *Config) { c.SelfPreservationMinLeases = 3 },
			instances: map[string][]string{"web": {"a", "b", "c"}},
			alive:     []string{"web/a"},
			steps: []leaseStep{
				{at: 3 * time.Second, want: all("held", "web/b", "web/c")},
			},
		},
		{
			name: "the replicated threshold 0 turns it off", ttl: ttl,
			settings:  &store.SelfPreservationSettings{Threshold: new(float64)},
			instances: map[string][]string{"web": fleet},
			alive:     live,
			steps: []leaseStep{
				{at: 2500 * time.Millisecond, want: merge(all("passing", live...), all("gone", dead...))},
			},
		},
		{
			name: "a configured threshold 0 turns it off", ttl: ttl,
			configure: func(c *Config) { c.SelfPreservationThreshold = new(float64) },
			instances: map[string][]string{"web": fleet},
			alive:     live,
			steps: []leaseStep{
				{at: 2500 * time.Millisecond, want: all("gone", dead...)},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runLeaseCase(t, tc) })
	}
}

// TestHeldInstanceShowsIt: a held instance stays passing, and its status
// reason, in the store and in the change history that watches stream, says
// it is held, since when and until when at the latest.
func TestHeldInstanceShowsIt(t *testing.T) {
	h := newLeaseHarness(t, func(c *Config) { c.SelfPreservationMaxHold = 10 * time.Minute })
	fleet := ids("f", 12)
	for _, id := range fleet {
		h.register("web", id, 2*time.Second, 0)
	}
	h.keepAlive(names("web", fleet[:4]...)...)
	start := h.clock.Now()
	h.until(3 * time.Second)
	inst := h.instance("web", "f9")
	since := start.Add(2 * time.Second)
	want := fmt.Sprintf("held by self-preservation since %s, expires at %s at the latest: no heartbeat within the ttl",
		since.Format(time.RFC3339), since.Add(10*time.Minute).Format(time.RFC3339))
	if inst.Status != store.HealthPassing || inst.StatusReason() != want || inst.HeldSince() != since.UnixNano() {
		t.Fatalf("held instance: %v %q held_since=%d\nwant reason %q", inst.Status, inst.StatusReason(), inst.HeldSince(), want)
	}
	if !inst.Healthy() {
		t.Fatal("a held instance is not healthy: self-preservation would not keep it discoverable")
	}
	revs, _, _, err := h.store.History().Since(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, r := range revs {
		for _, ev := range r.Events {
			if ev.Type() == store.EventPut && ev.Key() == key("web", "f9") && ev.Instance.StatusReason() == want {
				seen = true
			}
		}
	}
	if !seen {
		t.Fatal("no change event carries the held status reason")
	}
	sp := h.tbl.selfPreservation()
	if !sp.Active || !sp.All || sp.Held != 8 {
		t.Fatalf("self-preservation report %+v", sp)
	}
}

// TestLeaseExpiry: expiry after the TTL (never before), heartbeats keeping
// a lease, deregister_critical_after, and a new leader giving every lease a
// full TTL plus the leader lease timeout.
func TestLeaseExpiry(t *testing.T) {
	const ttl = 2 * time.Second
	off := func(c *Config) { c.SelfPreservationThreshold = new(float64) }
	cases := []leaseCase{
		{
			name: "silent lease is removed after its ttl", ttl: ttl, configure: off,
			instances: map[string][]string{"web": {"a"}},
			steps: []leaseStep{
				{at: 1900 * time.Millisecond, want: all("passing", "web/a")},
				{at: 2100 * time.Millisecond, want: all("gone", "web/a")},
			},
		},
		{
			name: "heartbeats keep a lease for many ttls", ttl: ttl, configure: off,
			instances: map[string][]string{"web": {"a"}},
			alive:     []string{"web/a"},
			steps:     []leaseStep{{at: time.Minute, want: all("passing", "web/a")}},
		},
		{
			name: "deregister_critical_after keeps it critical, then removes it", ttl: ttl, dca: 5 * time.Second, configure: off,
			instances: map[string][]string{"web": {"a"}},
			steps: []leaseStep{
				{at: 2100 * time.Millisecond, want: all("critical", "web/a")},
				{at: 6900 * time.Millisecond, want: all("critical", "web/a")},
				{at: 7200 * time.Millisecond, want: all("gone", "web/a")},
			},
		},
		{
			// Last heartbeat at 1.5s, deadline 3.5s; the new leader at 3s
			// gives a full TTL plus the 500ms leader lease timeout.
			name: "failover grace: a new leader gives a full ttl", ttl: ttl, configure: off,
			instances: map[string][]string{"web": {"a"}},
			steps: []leaseStep{
				{at: 1500 * time.Millisecond, beat: []string{"web/a"}},
				{at: 3 * time.Second, failover: true, want: all("passing", "web/a")},
				{at: 5400 * time.Millisecond, want: all("passing", "web/a")},
				{at: 5600 * time.Millisecond, want: all("gone", "web/a")},
			},
		},
		{
			name: "failover grace for an expired, kept instance: reap counts from the new leader", ttl: ttl, dca: 5 * time.Second, configure: off,
			instances: map[string][]string{"web": {"a"}},
			steps: []leaseStep{
				{at: 6 * time.Second, failover: true, want: all("critical", "web/a")},
				{at: 10900 * time.Millisecond, want: all("critical", "web/a")},
				{at: 11200 * time.Millisecond, want: all("gone", "web/a")},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runLeaseCase(t, tc) })
	}
}

// TestRevival: a heartbeat on an expired, kept lease commits the instance
// passing before it is acknowledged; when that commit fails, the lease is
// expired again and the next heartbeat tries again.
func TestRevival(t *testing.T) {
	for _, failFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("revival fails first=%v", failFirst), func(t *testing.T) {
			h := newLeaseHarness(t, func(c *Config) { c.SelfPreservationThreshold = new(float64) })
			h.register("web", "a", 2*time.Second, 10*time.Second)
			h.until(2500 * time.Millisecond)
			if s := h.state("web", "a"); s != "critical" {
				t.Fatalf("silent instance is %s", s)
			}
			if failFirst {
				h.prop.before = func(cmd string, _ store.Key) error {
					if cmd == "health-passing" {
						h.prop.before = nil
						return errInjected
					}
					return nil
				}
				if err := h.heartbeat("web", "a"); err == nil {
					t.Fatal("a heartbeat whose revival failed was acknowledged")
				}
				if s := h.state("web", "a"); s != "critical" {
					t.Fatalf("after a failed revival the instance is %s", s)
				}
			}
			if err := h.heartbeat("web", "a"); err != nil {
				t.Fatal(err)
			}
			if inst := h.instance("web", "a"); inst.Status != store.HealthPassing || inst.StatusReason() != ReasonHeartbeatResumed {
				t.Fatalf("revived instance %v %q", inst.Status, inst.StatusReason())
			}
			rev := h.clock.Now()
			h.until(h.elapsed() + 1900*time.Millisecond)
			if s := h.state("web", "a"); s != "passing" {
				t.Fatalf("revived instance is %s before its ttl", s)
			}
			h.until(h.elapsed() + 300*time.Millisecond)
			if s := h.state("web", "a"); s != "critical" {
				t.Fatalf("silent again after revival: %s", s)
			}
			h.until(rev.Sub(newFakeClock().now) + 12500*time.Millisecond)
			if s := h.state("web", "a"); s != "gone" {
				t.Fatalf("critical past deregister_critical_after: %s", s)
			}
		})
	}
}

// TestLateExpireNeverDeletesReregistration: the instance is registered
// again just before the lease's expiry, reap or hold mark commits. The
// late command is about the old registration and must change nothing; the
// new registration gets a fresh lease.
func TestLateExpireNeverDeletesReregistration(t *testing.T) {
	cases := []struct {
		name    string
		cmd     string
		dca     time.Duration
		fleet   bool // enough silent leases to trip self-preservation
		trigger time.Duration
	}{
		{name: "expire by reap", cmd: "reap", trigger: 2500 * time.Millisecond},
		{name: "expire to critical", cmd: "health-critical", dca: time.Minute, trigger: 2500 * time.Millisecond},
		{name: "reap after deregister_critical_after", cmd: "reap", dca: 3 * time.Second, trigger: 6 * time.Second},
		{name: "hold mark", cmd: "hold", fleet: true, trigger: 2500 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newLeaseHarness(t, nil)
			n := 1
			if tc.fleet {
				n = 12
			}
			for i := 0; i < n; i++ {
				h.register("web", fmt.Sprintf("f%d", i), 2*time.Second, tc.dca)
			}
			var again uint64
			h.prop.before = func(cmd string, k store.Key) error {
				if cmd == tc.cmd && k == key("web", "f0") && again == 0 {
					again = h.prop.register(&store.Instance{Namespace: "default", Service: "web", ID: "f0", Address: "10.0.0.2",
						Port: 80, Weight: 100, TTL: 2 * time.Second})
				}
				return nil
			}
			h.until(tc.trigger)
			if again == 0 {
				t.Fatalf("no %s of web/f0 was proposed", tc.cmd)
			}
			h.prop.before = nil
			inst := h.instance("web", "f0")
			if inst == nil || inst.RegistrationRevision != again || inst.Status != store.HealthPassing || inst.HeldSince() != 0 {
				t.Fatalf("the re-registration (revision %d) was changed by a late %s: %+v", again, tc.cmd, inst)
			}
			// The new registration has its own lease: it heartbeats, and it
			// expires on its own schedule.
			if err := h.heartbeat("web", "f0"); err != nil {
				t.Fatalf("heartbeat of the re-registration: %v", err)
			}
		})
	}
}

// TestRegisterAdoptsItsLease: Node.Register starts the lease itself, so
// whichever front end registered, the lease runs when Register returns,
// even while the lease table's follower of the store is behind.
func TestRegisterAdoptsItsLease(t *testing.T) {
	n := newReadyLeader(t)
	gate := make(chan struct{})
	hook := func() { <-gate }
	n.leases.beforeChange.Store(&hook)
	defer close(gate)

	inst := &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: "10.0.0.1", Port: 80, Weight: 100, TTL: time.Minute}
	if _, err := n.Register(context.Background(), inst, ""); err != nil {
		t.Fatal(err)
	}
	if got := n.Leases(); got != 1 {
		t.Fatalf("leases right after Register returned: %d, want 1", got)
	}
}

// TestHeldInstanceTurningCriticalIsMarkedOnce: a check turns a held
// instance critical, which clears its hold mark, and a critical instance is
// never marked. The leader must not propose a mark again at every tick.
func TestHeldInstanceTurningCriticalIsMarkedOnce(t *testing.T) {
	h := newLeaseHarness(t, nil)
	fleet := ids("f", 12)
	for _, id := range fleet {
		h.register("web", id, 2*time.Second, 0)
	}
	h.keepAlive(names("web", fleet[:4]...)...)
	h.until(3 * time.Second)
	inst := h.instance("web", "f9")
	if _, err := h.prop.SetHealth(context.Background(), inst.Key(), inst.RegistrationRevision, store.HealthCritical, "http GET /: 500"); err != nil {
		t.Fatal(err)
	}
	h.follow()
	h.until(13 * time.Second)
	marks := 0
	h.prop.mu.Lock()
	for _, c := range h.prop.calls {
		if c == "hold default/web/f9" {
			marks++
		}
	}
	h.prop.mu.Unlock()
	if marks > 2 {
		t.Fatalf("%d hold marks proposed for one held lease over 100 ticks", marks)
	}
	if s := h.state("web", "f9"); s != "critical" {
		t.Fatalf("f9 is %s", s)
	}
}

// TestEveryRenewalIsCounted: a health report renews a lease as a heartbeat
// does (how Consul clients heartbeat, with PassTTL and UpdateTTL), so the
// heartbeat count includes it, whether or not the report changes the
// status; a renewal that fails is not counted.
func TestEveryRenewalIsCounted(t *testing.T) {
	h := newLeaseHarness(t, nil)
	h.register("web", "a", 10*time.Second, 0)
	report := func(s store.Health) {
		t.Helper()
		if _, _, err := h.tbl.report(context.Background(), key("web", "a"), s, ""); err != nil {
			t.Fatalf("report %v: %v", s, err)
		}
		h.follow()
	}
	if err := h.heartbeat("web", "a"); err != nil {
		t.Fatal(err)
	}
	report(store.HealthPassing) // unchanged: nothing committed
	report(store.HealthWarning) // changed: committed
	report(store.HealthPassing)
	if _, _, err := h.tbl.report(context.Background(), key("web", "nobody"), store.HealthPassing, ""); err == nil {
		t.Fatal("report of an unknown instance succeeded")
	}
	if got := h.tbl.heartbeats.Load(); got != 4 {
		t.Fatalf("heartbeats counted %d after one heartbeat and three health reports, want 4", got)
	}
}

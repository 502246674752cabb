package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-registry/roster/store"
)

// TestCheckTransitions runs the check runner's counting on a fake clock:
// thresholds before a transition, warning without a threshold, reaping
// after deregister_critical_after counted on the clock, and no revival of
// an expired lease by a check.
func TestCheckTransitions(t *testing.T) {
	type step struct {
		advance time.Duration
		result  store.Health
		want    string // passing, warning, critical or gone
	}
	cases := []struct {
		name    string
		ttl     time.Duration
		dca     time.Duration
		expired bool // the lease ran out before the checks start
		steps   []step
	}{
		{name: "thresholds both ways", steps: []step{
			{result: store.HealthPassing, want: "critical"},
			{result: store.HealthPassing, want: "passing"},
			{result: store.HealthCritical, want: "passing"},
			{result: store.HealthPassing, want: "passing"},
			{result: store.HealthCritical, want: "passing"},
			{result: store.HealthCritical, want: "critical"},
		}},
		{name: "warning needs no threshold once passing", steps: []step{
			{result: store.HealthPassing}, {result: store.HealthPassing, want: "passing"},
			{result: store.HealthWarning, want: "warning"},
			{result: store.HealthPassing, want: "passing"},
		}},
		{name: "reaped after deregister_critical_after on the clock", dca: 10 * time.Second, steps: []step{
			{result: store.HealthCritical, want: "critical"},
			{advance: 9 * time.Second, result: store.HealthCritical, want: "critical"},
			{advance: time.Second, result: store.HealthCritical, want: "gone"},
		}},
		{name: "a check does not revive an expired lease", ttl: time.Second, expired: true, steps: []step{
			{result: store.HealthPassing}, {result: store.HealthPassing}, {result: store.HealthPassing, want: "critical"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			s := store.New(store.DefaultOptions())
			p := &storeProposer{s: s}
			r := newCheckRunner(hclog.NewNullLogger(), clk, p, s, 1)
			chk := store.Check{TCP: "127.0.0.1:1", Interval: time.Second, Timeout: time.Second, FailuresBeforeCritical: 2, SuccessesBeforePassing: 2}
			inst := &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: "10.0.0.1", Port: 80, Weight: 100,
				TTL: tc.ttl}
			inst.SetDeregisterCriticalAfter(tc.dca)
			inst.SetCheck(&chk)
			regRev := p.register(inst)
			if tc.expired {
				if _, err := p.SetHealth(context.Background(), inst.Key(), regRev, store.HealthCritical, ReasonLeaseExpired); err != nil {
					t.Fatal(err)
				}
			}
			cur, _ := s.View().Instance(nil, inst.Key())
			c := &checkState{key: inst.Key(), regRev: regRev, check: chk, ttl: tc.ttl, dca: tc.dca, status: cur.Status}
			if c.status == store.HealthCritical {
				c.criticalSince = clk.Now()
			}
			for i, st := range tc.steps {
				clk.Advance(st.advance)
				r.observe(context.Background(), c, st.result, "probe")
				if st.want == "" {
					continue
				}
				got := "gone"
				if inst, err := s.View().Instance(nil, inst.Key()); err == nil {
					got = inst.Status.String()
				}
				if got != st.want {
					t.Fatalf("step %d: %s, want %s", i, got, st.want)
				}
			}
		})
	}
}

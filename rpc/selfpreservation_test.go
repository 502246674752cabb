package rpc_test

import (
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

func f64(v float64) *float64 { return &v }
func u32(v uint32) *uint32   { return &v }

// TestSelfPreservationSettingsSurviveLeaderChange: the operator's settings
// are committed through Raft. Every node reports them from its own state,
// and a new leader uses them instead of its configuration (before, a new
// leader started again from its configured threshold).
func TestSelfPreservationSettingsSurviveLeaderChange(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := c.Followers()[0]
	resp, err := f.Cluster().SetSelfPreservation(ctx, &rosterv1.SetSelfPreservationRequest{
		Threshold: f64(0.3), MinLeases: u32(4), MaxHold: durationpb.New(2 * time.Minute),
		ServiceMinLeases: map[string]uint32{"default/web": 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Threshold != 0.3 || resp.MinLeases != 4 || resp.MaxHold.AsDuration() != 2*time.Minute || resp.ServiceMinLeases["default/web"] != 2 ||
		resp.Window.AsDuration() != cluster.DefaultSelfPreservationWindow {
		t.Fatalf("settings in force: %v", resp)
	}
	same := func(nd *testcluster.Node, threshold float64) bool {
		st, err := nd.Cluster().Status(ctx, &rosterv1.StatusRequest{})
		return err == nil && st.SelfPreservationThreshold == threshold && st.SelfPreservationMinLeases == 4 &&
			st.SelfPreservationMaxHold.AsDuration() == 2*time.Minute && st.SelfPreservationServiceMinLeases["default/web"] == 2
	}
	c.Eventually("every node reports the settings from its own state", 10*time.Second, func() bool {
		for _, nd := range c.Running() {
			if !same(nd, 0.3) {
				return false
			}
		}
		return true
	})

	old := c.WaitLeader()
	c.Stop(old)
	leader := c.WaitLeader()
	if got := leader.Node.SelfPreservationSettings(); got.Threshold != 0.3 || got.MinLeases != 4 || got.MaxHold != 2*time.Minute {
		t.Fatalf("the new leader %s uses %+v", leader.ID, got)
	}
	if !same(leader, 0.3) {
		t.Fatal("the new leader's status does not report the settings")
	}

	// A request that sets nothing turns self-preservation off (what a
	// client sending threshold 0 sends), and changes nothing else.
	if _, err := leader.Cluster().SetSelfPreservation(ctx, &rosterv1.SetSelfPreservationRequest{}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("self-preservation off on every node", 10*time.Second, func() bool {
		for _, nd := range c.Running() {
			if !same(nd, 0) {
				return false
			}
		}
		return true
	})
	// Reset: each leader uses its configuration again.
	resp, err = leader.Cluster().SetSelfPreservation(ctx, &rosterv1.SetSelfPreservationRequest{Reset_: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Threshold != cluster.DefaultSelfPreservationThreshold || resp.MinLeases != cluster.DefaultSelfPreservationMinLeases ||
		resp.MaxHold.AsDuration() != cluster.DefaultSelfPreservationMaxHold || len(resp.ServiceMinLeases) != 0 {
		t.Fatalf("after reset: %v", resp)
	}
}

// TestSetSelfPreservationRejectsBadValues: out-of-range settings get
// InvalidArgument and change nothing.
func TestSetSelfPreservationRejectsBadValues(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	ctx := testcluster.Ctx(t)
	nd := c.WaitLeader()
	for name, req := range map[string]*rosterv1.SetSelfPreservationRequest{
		"threshold above 1":         {Threshold: f64(1.5)},
		"threshold below 0":         {Threshold: f64(-0.1)},
		"threshold NaN":             {Threshold: f64(math.NaN())},
		"min leases 0":              {MinLeases: u32(0)},
		"max hold too short":        {MaxHold: durationpb.New(500 * time.Millisecond)},
		"max hold too long":         {MaxHold: durationpb.New(48 * time.Hour)},
		"service without a slash":   {ServiceMinLeases: map[string]uint32{"web": 3}},
		"service with a bad name":   {ServiceMinLeases: map[string]uint32{"default/no spaces": 3}},
		"service with no namespace": {ServiceMinLeases: map[string]uint32{"/web": 3}},
	} {
		_, err := nd.Cluster().SetSelfPreservation(ctx, req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	st, err := nd.Cluster().Status(ctx, &rosterv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.SelfPreservationThreshold != cluster.DefaultSelfPreservationThreshold || st.SelfPreservationMinLeases != cluster.DefaultSelfPreservationMinLeases {
		t.Fatalf("a rejected change changed the settings: %v", st)
	}
}

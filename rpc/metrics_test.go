package rpc_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// forwardedCalls returns roster_forwarded_calls_total of s by method (all
// codes summed).
func forwardedCalls(t *testing.T, s *rpc.Server) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "roster_forwarded_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestRelayedCallsAreLabelledWithTheirMethod: a follower's linearizable
// read relays a read-index round to the leader, shared by every read of the
// moment whatever its method; the round is counted as the method it calls
// on the leader, Cluster/ReadIndex, never with an empty method.
func TestRelayedCallsAreLabelledWithTheirMethod(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Registry().ListServices(ctx, &rosterv1.ListServicesRequest{}); err != nil {
		t.Fatal(err)
	}
	if f.Server.ReadIndexRounds() == 0 {
		t.Fatalf("the follower made no read-index round (leader %s)", leader.ID)
	}
	got := forwardedCalls(t, f.Server)
	if n, ok := got[""]; ok {
		t.Errorf("%v relayed calls counted with an empty method (all: %v)", n, got)
	}
	if got["roster.v1.Cluster/ReadIndex"] == 0 || got["roster.v1.Registry/Register"] == 0 {
		t.Errorf("relayed calls by method %v; want roster.v1.Cluster/ReadIndex and roster.v1.Registry/Register", got)
	}
}

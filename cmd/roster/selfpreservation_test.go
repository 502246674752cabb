package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

func (f *fakeServer) SetSelfPreservation(_ context.Context, req *rosterv1.SetSelfPreservationRequest) (*rosterv1.SetSelfPreservationResponse, error) {
	if err := f.record("SetSelfPreservation", req); err != nil {
		return nil, err
	}
	return &rosterv1.SetSelfPreservationResponse{Threshold: req.GetThreshold(), MinLeases: 10,
		MaxHold: durationpb.New(15 * time.Minute), Window: durationpb.New(10 * time.Second),
		ServiceMinLeases: req.GetServiceMinLeases()}, nil
}

// TestSelfPreservationCommand: the flags given, and only those, reach the
// request; without flags the command only reads the status.
func TestSelfPreservationCommand(t *testing.T) {
	tests := []struct {
		args  []string
		check func(r *rosterv1.SetSelfPreservationRequest) bool
	}{
		{[]string{"--off"}, func(r *rosterv1.SetSelfPreservationRequest) bool {
			return r.Threshold != nil && *r.Threshold == 0 && r.MinLeases == nil && r.MaxHold == nil && !r.Reset_
		}},
		{[]string{"--threshold", "0.6", "--min-leases", "20", "--max-hold", "30m"}, func(r *rosterv1.SetSelfPreservationRequest) bool {
			return *r.Threshold == 0.6 && *r.MinLeases == 20 && r.MaxHold.AsDuration() == 30*time.Minute
		}},
		{[]string{"--service-min-leases", "payments=3", "--service-min-leases", "batch/jobs=0"}, func(r *rosterv1.SetSelfPreservationRequest) bool {
			return r.Threshold == nil && len(r.ServiceMinLeases) == 2 && r.ServiceMinLeases["default/payments"] == 3 && r.ServiceMinLeases["batch/jobs"] == 0
		}},
		{[]string{"--reset"}, func(r *rosterv1.SetSelfPreservationRequest) bool { return r.Reset_ && r.Threshold == nil }},
	}
	for _, tt := range tests {
		f := startFake(t)
		code, stdout, stderr := runCLI(t, testContext(t), f.addr, append([]string{"self-preservation"}, tt.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", tt.args, code, stderr)
		}
		calls := f.calls("SetSelfPreservation")
		if len(calls) != 1 || !tt.check(calls[0].(*rosterv1.SetSelfPreservationRequest)) {
			t.Fatalf("%v sent %v", tt.args, calls)
		}
		if !strings.Contains(stdout, "MAX HOLD") {
			t.Fatalf("%v printed %q", tt.args, stdout)
		}
	}
	f := startFake(t)
	code, stdout, stderr := runCLI(t, testContext(t), f.addr, "self-preservation")
	if code != 0 || len(f.calls("SetSelfPreservation")) != 0 || len(f.calls("Status")) != 1 || !strings.Contains(stdout, "HOLDING") {
		t.Fatalf("show: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

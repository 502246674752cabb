package main

import (
	"context"
	"encoding/json"
	"regexp"
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

// TestSelfPreservationShowsUnreadableServices: a Status filtered for the
// token (services it may not read are counted, not named) never reads as
// "every service"; that is said only when the leader holds every expiry.
func TestSelfPreservationShowsUnreadableServices(t *testing.T) {
	for _, tc := range []struct {
		name       string
		services   []string
		unreadable uint32
		minLeases  map[string]uint32
		minHidden  uint32
		holding    string
		min        string
	}{
		{"every expiry", nil, 0, nil, 0, "every service", "-"},
		{"only unreadable services", nil, 2, nil, 3, "2 services you may not read", "3 services you may not read"},
		{"some readable", []string{"default/web"}, 1, map[string]uint32{"default/web": 2}, 1,
			"default/web and 1 service you may not read", "default/web=2 and 1 service you may not read"},
	} {
		f := startFake(t)
		f.mu.Lock()
		f.status = &rosterv1.StatusResponse{NodeId: "n1", State: "leader", LeaderId: "n1", SelfPreservation: true,
			SelfPreservationThreshold: 0.5, SelfPreservationServices: tc.services, SelfPreservationUnreadableServices: tc.unreadable,
			SelfPreservationServiceMinLeases: tc.minLeases, SelfPreservationUnreadableServiceMinLeases: tc.minHidden}
		f.mu.Unlock()
		code, stdout, stderr := runCLI(t, testContext(t), f.addr, "self-preservation")
		if code != 0 {
			t.Fatalf("%s: exit %d, stderr %q", tc.name, code, stderr)
		}
		if want := "HOLDING " + tc.holding + "\n"; !strings.Contains(squeeze(stdout), want) {
			t.Errorf("%s: printed\n%s\nwant a line %q", tc.name, stdout, want)
		}
		if want := "SERVICE MIN LEASES " + tc.min + "\n"; !strings.Contains(squeeze(stdout), want) {
			t.Errorf("%s: printed\n%s\nwant a line %q", tc.name, stdout, want)
		}

		code, stdout, stderr = runCLI(t, testContext(t), f.addr, "-o", "json", "self-preservation")
		if code != 0 {
			t.Fatalf("%s json: exit %d, stderr %q", tc.name, code, stderr)
		}
		var out struct {
			Active                     bool     `json:"active"`
			Services                   []string `json:"services"`
			UnreadableServices         uint32   `json:"unreadable_services"`
			UnreadableServiceMinLeases uint32   `json:"unreadable_service_min_leases"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("%s json: %v in %q", tc.name, err, stdout)
		}
		if !out.Active || len(out.Services) != len(tc.services) || out.UnreadableServices != tc.unreadable || out.UnreadableServiceMinLeases != tc.minHidden {
			t.Errorf("%s json: %+v", tc.name, out)
		}
	}
}

// squeeze turns every run of spaces or tabs into one space.
func squeeze(s string) string {
	return regexp.MustCompile(`[ \t]+`).ReplaceAllString(s, " ")
}

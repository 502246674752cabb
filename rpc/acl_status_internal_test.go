package rpc

import (
	"slices"
	"testing"

	"github.com/roster-registry/roster/acl"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestFilterStatusKeepsReadableServices covers the held services too,
// which a test cluster does not easily trip.
func TestFilterStatusKeepsReadableServices(t *testing.T) {
	rule, err := acl.ParseRule("service:web:read")
	if err != nil {
		t.Fatal(err)
	}
	held := []string{"default/db", "default/web", "payments/web"}
	r := &rosterv1.StatusResponse{
		Instances:                        7,
		SelfPreservation:                 true,
		SelfPreservationServices:         held,
		SelfPreservationServiceMinLeases: map[string]uint32{"default/db": 1, "default/web": 2},
	}
	filterStatus(&caller{policy: acl.NewPolicy([]acl.Rule{rule}), name: "token t"}, r)
	if want := []string{"default/web", "payments/web"}; !slices.Equal(r.SelfPreservationServices, want) {
		t.Errorf("held services %v, want %v", r.SelfPreservationServices, want)
	}
	if len(r.SelfPreservationServiceMinLeases) != 1 || r.SelfPreservationServiceMinLeases["default/web"] != 2 {
		t.Errorf("service minimums %v", r.SelfPreservationServiceMinLeases)
	}
	if !slices.Equal(held, []string{"default/db", "default/web", "payments/web"}) {
		t.Errorf("the answer's slice was filtered in place: %v", held)
	}
	if r.Instances != 7 || !r.SelfPreservation {
		t.Errorf("counts changed: %v", r)
	}
}

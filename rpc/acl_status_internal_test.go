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
	if r.SelfPreservationUnreadableServices != 1 || r.SelfPreservationUnreadableServiceMinLeases != 1 {
		t.Errorf("unreadable counted as %d held, %d minimums; want 1 and 1",
			r.SelfPreservationUnreadableServices, r.SelfPreservationUnreadableServiceMinLeases)
	}
}

// TestFilterStatusCountsUnreadableServices: when self-preservation holds
// only services the token may not read, the filtered answer says so with a
// count, and cannot be read as "holds every expiry" (self_preservation set,
// no services named, nothing counted).
func TestFilterStatusCountsUnreadableServices(t *testing.T) {
	rule, err := acl.ParseRule("service:web:read")
	if err != nil {
		t.Fatal(err)
	}
	r := &rosterv1.StatusResponse{
		SelfPreservation:                 true,
		SelfPreservationServices:         []string{"default/db", "payments/api"},
		SelfPreservationServiceMinLeases: map[string]uint32{"default/db": 1},
		HeldExpiries:                     4,
	}
	filterStatus(&caller{policy: acl.NewPolicy([]acl.Rule{rule}), name: "token t"}, r)
	if len(r.SelfPreservationServices) != 0 || len(r.SelfPreservationServiceMinLeases) != 0 {
		t.Errorf("names left: held %v, minimums %v", r.SelfPreservationServices, r.SelfPreservationServiceMinLeases)
	}
	if !r.SelfPreservation || r.HeldExpiries != 4 {
		t.Errorf("self_preservation %v, %d held expiries; want true and 4", r.SelfPreservation, r.HeldExpiries)
	}
	if r.SelfPreservationUnreadableServices != 2 || r.SelfPreservationUnreadableServiceMinLeases != 1 {
		t.Errorf("unreadable counted as %d held, %d minimums; want 2 and 1 (else it reads as holding every expiry)",
			r.SelfPreservationUnreadableServices, r.SelfPreservationUnreadableServiceMinLeases)
	}

	// Holding every expiry, for a token that reads nothing: nothing named,
	// nothing counted, as for any caller.
	all := &rosterv1.StatusResponse{SelfPreservation: true}
	filterStatus(&caller{policy: acl.NewPolicy(nil), name: "anonymous token"}, all)
	if len(all.SelfPreservationServices) != 0 || all.SelfPreservationUnreadableServices != 0 {
		t.Errorf("holding every expiry, filtered: %v, %d unreadable", all.SelfPreservationServices, all.SelfPreservationUnreadableServices)
	}
}

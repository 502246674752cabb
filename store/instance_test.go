package store

import (
	"testing"
	"unsafe"

	"google.golang.org/protobuf/proto"
)

// TestInstanceRecordSize: a million instances may be held at once, so the
// record stays in Go's 128-byte size class; a new field goes behind Labels
// or the rare fields, or pays 16 bytes an instance knowingly.
func TestInstanceRecordSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are pinned for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Instance{}); got != 128 {
		t.Fatalf("Instance is %d bytes, want 128", got)
	}
}

// TestHealthOf: wire values outside the four healths read as unspecified
// instead of wrapping into one of them.
func TestHealthOf(t *testing.T) {
	for v, want := range map[int32]Health{0: HealthUnspecified, 1: HealthPassing, 2: HealthWarning, 3: HealthCritical,
		4: HealthUnspecified, -1: HealthUnspecified, 257: HealthUnspecified, 259: HealthUnspecified} {
		if got := HealthOf(v); got != want {
			t.Errorf("HealthOf(%d) = %v, want %v", v, got, want)
		}
	}
}

// TestLabelsRoundTrip: an instance reads back through its record exactly,
// the highest port included; no labels and empty ones are the same.
func TestLabelsRoundTrip(t *testing.T) {
	if NewLabels(nil, map[string]string{}, "") != nil || NewLabels([]string{}, nil, "") != nil {
		t.Fatal("empty labels are not nil")
	}
	for _, l := range []*Labels{nil, {Zone: "eu-1a"}, {Tags: []string{"a", "b"}}, {Metadata: map[string]string{"k": "v"}, Zone: "z"}} {
		in := inst("web", "a", 65535)
		in.Labels = l
		raw, err := MarshalInstance(in)
		if err != nil {
			t.Fatal(err)
		}
		out := InstanceFromRecord(InstanceToRecord(in))
		raw2, err := MarshalInstance(out)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(InstanceToRecord(in), InstanceToRecord(out)) || string(raw) != string(raw2) || out.Port != 65535 || !sameLabels(in, out) {
			t.Fatalf("labels %+v: read back %+v", l, out.Labels)
		}
	}
	a, b := inst("web", "a", 80), inst("web", "a", 80)
	b.Labels = &Labels{Tags: []string{}, Metadata: map[string]string{}}
	if !sameRegistration(a, b) {
		t.Fatal("an instance with empty labels is not the same registration as one with none")
	}
}

// TestStatusReasons: every reason reads back as it was set, through the
// record too; the common ones take no seldom set fields, and replacing an
// uncommon reason with a common one drops its text.
func TestStatusReasons(t *testing.T) {
	for _, reason := range []string{"", ReasonRegistered, ReasonLeaseExpired, ReasonHeartbeatResumed,
		"held by self-preservation since 12:00", "Registered", "ttl expired "} {
		in := inst("web", "a", 80)
		in.SetStatusReason(reason)
		if got := in.StatusReason(); got != reason {
			t.Fatalf("set %q, read %q", reason, got)
		}
		common := reason == "" || reason == ReasonRegistered || reason == ReasonLeaseExpired || reason == ReasonHeartbeatResumed
		if common != (in.rare == nil) {
			t.Fatalf("reason %q: seldom set fields %+v", reason, in.rare)
		}
		out := InstanceFromRecord(InstanceToRecord(in))
		if got := out.StatusReason(); got != reason || !proto.Equal(InstanceToRecord(in), InstanceToRecord(out)) {
			t.Fatalf("reason %q read back from the record as %q", reason, got)
		}
		out.SetStatusReason(ReasonRegistered)
		if out.StatusReason() != ReasonRegistered || out.rare != nil {
			t.Fatalf("after %q, the common reason left %+v", reason, out.rare)
		}
	}
	// A copy that changes its reason leaves the stored instance's alone.
	stored := inst("web", "a", 80)
	stored.SetStatusReason("check output: 503")
	next := stored.modified()
	next.SetStatusReason("check output: 200")
	if stored.StatusReason() != "check output: 503" || next.StatusReason() != "check output: 200" {
		t.Fatalf("stored %q, copy %q", stored.StatusReason(), next.StatusReason())
	}
}

// TestWeightFromRecord: a record's weight beyond what the record holds
// saturates instead of wrapping (every API refuses more than MaxWeight).
func TestWeightFromRecord(t *testing.T) {
	r := InstanceToRecord(inst("web", "a", 80))
	for w, want := range map[uint32]uint16{0: 0, 100: 100, 65535: 65535, 65536: 65535, 1 << 31: 65535} {
		r.Weight = w
		if got := InstanceFromRecord(r).Weight; got != want {
			t.Errorf("record weight %d read as %d, want %d", w, got, want)
		}
	}
}

// TestReregistrationKeepsAnUncommonReason: an instance without a TTL keeps
// its health and its status reason, however uncommon, across an identical
// registration (a no-op) and a changed one (a new revision).
func TestReregistrationKeepsAnUncommonReason(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, inst("web", "a", 80))
	w := s.Begin(2)
	if _, err := w.SetHealth(Key{DefaultNamespace, "web", "a"}, 1, HealthCritical, "check output: 503", 5); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	for n, port := range []uint16{80, 81} {
		rev := register(t, s, uint64(3+n), inst("web", "a", port))
		got, err := s.View().Instance(nil, Key{DefaultNamespace, "web", "a"})
		if err != nil {
			t.Fatal(err)
		}
		wantRev := uint64(2)
		if port != 80 {
			wantRev = uint64(3 + n)
		}
		if rev != wantRev || got.Status != HealthCritical || got.StatusReason() != "check output: 503" || got.Port != port {
			t.Fatalf("port %d: revision %d (want %d), %v %q", port, rev, wantRev, got.Status, got.StatusReason())
		}
	}
}

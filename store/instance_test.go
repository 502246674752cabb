package store

import (
	"testing"
	"unsafe"

	"google.golang.org/protobuf/proto"
)

// TestInstanceRecordSize: a million instances may be held at once, so the
// record stays in Go's 144-byte size class; a new field goes behind Labels
// or the rare fields, or pays 16 bytes an instance knowingly.
func TestInstanceRecordSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are pinned for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Instance{}); got != 144 {
		t.Fatalf("Instance is %d bytes, want 144", got)
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

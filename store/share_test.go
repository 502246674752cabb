package store

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
)

// withParts is instance id of service svc with its own copies of the
// given tags, metadata and zone, as a decoded log entry has.
func withParts(svc, id string, tags []string, md map[string]string, zone string) *Instance {
	i := inst(svc, id, 80)
	i.Labels = NewLabels(slices.Clone(tags), maps.Clone(md), zone)
	return i
}

func stored(t *testing.T, s *Store, svc, id string) *Instance {
	t.Helper()
	i, err := s.View().Instance(nil, Key{DefaultNamespace, svc, id})
	if err != nil || i == nil {
		t.Fatalf("instance %s/%s: %v, %v", svc, id, i, err)
	}
	return i
}

// sameParts reports whether a and b hold the very same tag list and
// metadata map, not merely equal ones.
func sameParts(a, b *Instance) bool {
	return &a.Tags()[0] == &b.Tags()[0] &&
		reflect.ValueOf(a.Metadata()).UnsafePointer() == reflect.ValueOf(b.Metadata()).UnsafePointer()
}

// TestInstancesOfAServiceShareEqualParts: instances registered with equal
// tags and metadata hold one copy of them, through health and drain
// changes and a snapshot restore; an instance with other metadata keeps
// its own, and every instance reads back exactly what it registered.
func TestInstancesOfAServiceShareEqualParts(t *testing.T) {
	s := New(DefaultOptions())
	tags := []string{"v2", "http"}
	md := map[string]string{"version": "2.14.3", "team": "payments"}
	other := map[string]string{"version": "2.15.0", "team": "payments"}
	register(t, s, 1, withParts("web", "a", tags, md, "eu-1a"))
	register(t, s, 2, withParts("web", "b", tags, md, "eu-1a"))
	register(t, s, 3, withParts("web", "c", tags, other, "eu-1b"))
	register(t, s, 4, withParts("api", "d", tags, md, "eu-1a"))
	register(t, s, 5, withParts("web", "e", tags, md, "eu-1b"))

	a, b, c, d := stored(t, s, "web", "a"), stored(t, s, "web", "b"), stored(t, s, "web", "c"), stored(t, s, "api", "d")
	e := stored(t, s, "web", "e")
	if !sameParts(a, b) || a.Labels != b.Labels {
		t.Fatal("two instances with equal tags, metadata and zone hold separate copies")
	}
	if !sameParts(a, e) || a.Labels == e.Labels || e.Zone() != "eu-1b" || a.Zone() != "eu-1a" {
		t.Fatalf("instances that differ in zone only: tags and metadata shared %v, labels shared %v, zones %q %q",
			sameParts(a, e), a.Labels == e.Labels, a.Zone(), e.Zone())
	}
	if !maps.Equal(c.Metadata(), other) || !maps.Equal(a.Metadata(), md) || !slices.Equal(c.Tags(), tags) || c.Zone() != "eu-1b" {
		t.Fatalf("read back %v %v %q and %v, want %v %v eu-1b and %v", c.Tags(), c.Metadata(), c.Zone(), a.Metadata(), tags, other, md)
	}
	if !maps.Equal(d.Metadata(), md) || d.Service != "api" {
		t.Fatalf("another service's instance reads back %s %v", d.Service, d.Metadata())
	}

	w := s.Begin(6)
	if _, err := w.SetHealth(a.Key(), a.RegistrationRevision, HealthCritical, "check failed", 5); err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetMaintenance(b.Key(), false, "drain"); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	a2, b2 := stored(t, s, "web", "a"), stored(t, s, "web", "b")
	if a2.Status != HealthCritical || b2.Enabled || !sameParts(a2, b2) || !sameParts(a2, a) {
		t.Fatalf("after a health and a drain change: status %v enabled %v, shared %v", a2.Status, b2.Enabled, sameParts(a2, b2))
	}

	var fresh []*Instance
	_ = s.View().Instances(func(i *Instance) bool {
		fresh = append(fresh, withParts(i.Service, i.ID, i.Tags(), i.Metadata(), i.Zone()))
		return true
	})
	if err := s.Restore(func(r *Restorer) error {
		r.SetRevision(6)
		for _, i := range fresh {
			if err := r.Instance(i); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if a3, b3 := stored(t, s, "web", "a"), stored(t, s, "web", "b"); !sameParts(a3, b3) || sameParts(a3, a) {
		t.Fatal("instances restored from a snapshot do not share their equal parts among themselves")
	}
	register(t, s, 7, withParts("web", "f", tags, md, "eu-1a"))
	if f, a3 := stored(t, s, "web", "f"), stored(t, s, "web", "a"); !sameParts(f, a3) || f.Labels != a3.Labels {
		t.Fatal("an instance registered after a restore does not share with the restored ones")
	}
}

// TestEmptyLabelsAreStoredAsNone: labels with nothing in them, nil or
// empty, are stored as none and never remembered by the sharer.
func TestEmptyLabelsAreStoredAsNone(t *testing.T) {
	s := New(DefaultOptions())
	a := inst("web", "a", 80)
	a.Labels = &Labels{Tags: []string{}, Metadata: map[string]string{}}
	register(t, s, 1, a)
	if got := stored(t, s, "web", "a"); got.Labels != nil {
		t.Fatalf("stored labels %+v, want none", got.Labels)
	}
	if n := len(s.shared.services[[2]string{DefaultNamespace, "web"}].labels); n != 0 {
		t.Fatalf("the sharer remembers %d labels for an instance with none", n)
	}
}

// TestSharerForgetsAServiceWithNoInstances: what a service's instances
// shared is dropped with its last instance, so a registry whose services
// come and go keeps nothing for the gone ones.
func TestSharerForgetsAServiceWithNoInstances(t *testing.T) {
	s := New(DefaultOptions())
	for k := range 3 {
		register(t, s, uint64(k+1), withParts(fmt.Sprintf("svc-%d", k), "a", []string{"x"}, map[string]string{"k": "v"}, ""))
	}
	w := s.Begin(10)
	for k := range 3 {
		if _, err := w.Deregister(Key{DefaultNamespace, fmt.Sprintf("svc-%d", k), "a"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.shared.services); n != 0 {
		t.Fatalf("the sharer still holds %d services after their last instances left", n)
	}
}

// TestRecentKeepsTheMostRecentlyUsed: a hit moves to the front; a miss is
// put at the front and pushes the least recently used out past sharedKeep.
func TestRecentKeepsTheMostRecentlyUsed(t *testing.T) {
	var l []string
	eq := func(a, b string) bool { return a == b }
	for _, v := range []string{"a", "b", "c", "d", "b", "e"} {
		recent(&l, v, eq, sharedKeep)
	}
	if want := []string{"e", "b", "d", "c"}; !slices.Equal(l, want) {
		t.Fatalf("list = %v, want %v", l, want)
	}
}

// TestSharerForgetsWhatAnAbortedWriteAdded: a write that registers a new
// service and aborts leaves nothing in the sharer, since the service then
// has no instance whose removal would forget it.
func TestSharerForgetsWhatAnAbortedWriteAdded(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, withParts("web", "a", []string{"x"}, nil, ""))
	w := s.Begin(2)
	for _, i := range []*Instance{withParts("web", "b", []string{"x"}, nil, ""), withParts("new", "a", []string{"y"}, nil, "")} {
		if _, err := w.Register(i, 2); err != nil {
			t.Fatal(err)
		}
	}
	w.Abort()
	if _, ok := s.shared.services[[2]string{DefaultNamespace, "new"}]; ok {
		t.Fatal("the sharer still holds a service that only an aborted write registered")
	}
	if _, ok := s.shared.services[[2]string{DefaultNamespace, "web"}]; !ok {
		t.Fatal("an aborted write made the sharer forget a service it knew before")
	}
}

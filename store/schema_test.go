package store

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"github.com/hashicorp/go-memdb"
)

// TestKeyIndexesBuildStringFieldKeys: the instance and service key indexes
// build the bytes go-memdb's CompoundIndex of StringFieldIndexes builds, so
// keys sort and match as they did with those, and refuse an object with an
// empty name as they did.
func TestKeyIndexesBuildStringFieldKeys(t *testing.T) {
	compound := func(fields ...string) *memdb.CompoundIndex {
		c := &memdb.CompoundIndex{}
		for _, f := range fields {
			c.Indexes = append(c.Indexes, &memdb.StringFieldIndex{Field: f})
		}
		return c
	}
	nsSvcID, nsSvc := compound("Namespace", "Service", "ID"), compound("Namespace", "Service")
	for _, k := range []Key{{"default", "web", "a"}, {"prod", "web-2", "10.0.0.1:80"}, {"", "web", "a"}, {"default", "", "a"}, {"default", "web", ""}} {
		i := &Instance{Namespace: k.Namespace, Service: k.Service, ID: k.ID}
		wantOK, want, _ := nsSvcID.FromObject(i)
		ok, got, err := instanceKeyIndex{}.FromObject(i)
		if err != nil || ok != wantOK || !bytes.Equal(got, want) {
			t.Errorf("instance %+v: %v %q %v, want %v %q", k, ok, got, err, wantOK, want)
		}
		want, _ = nsSvcID.FromArgs(k.Namespace, k.Service, k.ID)
		if got, err := (instanceKeyIndex{}).FromArgs(k); err != nil || !bytes.Equal(got, want) {
			t.Errorf("instance lookup %+v: %q %v, want %q", k, got, err, want)
		}
		if got, err := (instanceKeyIndex{}).FromArgs(i); err != nil || !bytes.Equal(got, want) {
			t.Errorf("instance lookup by *Instance %+v: %q %v, want %q", k, got, err, want)
		}
		if got, err := (instanceKeyIndex{}).PrefixFromArgs(k); err != nil || !bytes.Equal(got, want) {
			t.Errorf("whole key as a prefix %+v: %q %v, want %q", k, got, err, want)
		}
		want, _ = nsSvc.FromArgs(k.Namespace, k.Service)
		if got, err := (instanceKeyIndex{}).PrefixFromArgs(k.Namespace, k.Service); err != nil || !bytes.Equal(got, want) {
			t.Errorf("service prefix %+v: %q %v, want %q", k, got, err, want)
		}
		if got, err := (serviceKeyIndex{}).FromArgs(k.Namespace, k.Service); err != nil || !bytes.Equal(got, want) {
			t.Errorf("service lookup %+v: %q %v, want %q", k, got, err, want)
		}
		want, _ = (&memdb.StringFieldIndex{Field: "Namespace"}).FromArgs(k.Namespace)
		if got, err := (serviceKeyIndex{}).PrefixFromArgs(k.Namespace); err != nil || !bytes.Equal(got, want) {
			t.Errorf("namespace prefix %+v: %q %v, want %q", k, got, err, want)
		}
		r := &serviceRow{Namespace: k.Namespace, Service: k.Service}
		wantOK, want, _ = nsSvc.FromObject(r)
		ok, got, err = serviceKeyIndex{}.FromObject(r)
		if err != nil || ok != wantOK || !bytes.Equal(got, want) {
			t.Errorf("service row %+v: %v %q %v, want %v %q", k, ok, got, err, wantOK, want)
		}
	}
	// Wrong arguments are errors, never a panic or a silent miss.
	for _, args := range [][]any{{}, {"default", "web", "a"}, {Key{}, Key{}}, {42}} {
		if _, err := (instanceKeyIndex{}).FromArgs(args...); err == nil {
			t.Errorf("instance lookup with %v: no error", args)
		}
	}
	for _, args := range [][]any{{}, {"a", "b", "c"}, {42}, {Key{}, "x"}} {
		if _, err := (instanceKeyIndex{}).PrefixFromArgs(args...); err == nil {
			t.Errorf("instance prefix with %v: no error", args)
		}
	}
	if _, err := (serviceKeyIndex{}).FromArgs("default"); err == nil {
		t.Error("service lookup with one name: no error")
	}
	if _, _, err := (instanceKeyIndex{}).FromObject(&serviceRow{}); err == nil {
		t.Error("instance index of a service row: no error")
	}
}

// TestNamespaceCountMatchesWholeNames: a namespace's count is read from a
// prefix of the services' key; a namespace whose name extends it is not
// counted.
func TestNamespaceCountMatchesWholeNames(t *testing.T) {
	s := New(DefaultOptions())
	for n, ns := range []string{"prod", "prod2", "prod", "pro"} {
		i := inst("web", string(rune('a'+n)), 80)
		i.Namespace = ns
		register(t, s, uint64(n+1), i)
	}
	if got := s.View().NamespaceCount("prod"); got != 2 {
		t.Fatalf("namespace prod counts %d instances, want 2", got)
	}
	if got := s.View().Count(); got != 4 {
		t.Fatalf("count %d, want 4", got)
	}
}

// TestInstanceLookupFindsNoShorterKey: a lookup is a longest-prefix match
// of the whole key (instanceAt), which finds the instance with exactly that
// key and never a stored one whose names the names asked for start with
// (TestInstanceLookupIsExact covers the other way round).
func TestInstanceLookupFindsNoShorterKey(t *testing.T) {
	s := New(DefaultOptions())
	stored := []Key{{DefaultNamespace, "web", "ab"}, {DefaultNamespace, "web2", "a"}, {DefaultNamespace, "we", "b"}, {"prod", "web", "a"}}
	for n, k := range stored {
		i := inst(k.Service, k.ID, 80)
		i.Namespace = k.Namespace
		register(t, s, uint64(n+1), i)
	}
	v := s.View()
	for _, k := range stored {
		i, err := v.Instance(nil, k)
		if err != nil || i == nil || i.Key() != k {
			t.Fatalf("lookup %v: %+v, %v", k, i, err)
		}
	}
	for _, k := range []Key{{DefaultNamespace, "web", "a"}, {DefaultNamespace, "web", "abc"}, {DefaultNamespace, "we", "a"},
		{DefaultNamespace, "web2", "ab"}, {"prod", "web2", "a"}, {"pro", "web", "a"}, {DefaultNamespace, "w", "eb"}} {
		if i, err := v.Instance(nil, k); !errors.Is(err, ErrNotFound) {
			t.Fatalf("lookup of absent %v found %+v, %v", k, i, err)
		}
	}
}

// TestAnInstanceNamesAreItsIndexKey: a stored instance's namespace,
// service and id point into one array that is also its index key, so the
// index keeps no key of its own and reading it back allocates nothing,
// through a health change and a restore; a copy whose names were replaced
// gets its own key, with the new names.
func TestAnInstanceNamesAreItsIndexKey(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, inst("web", "a", 80))
	keyOf := func(i *Instance) []byte {
		t.Helper()
		ok, k, err := instanceKeyIndex{}.FromObject(i)
		if !ok || err != nil {
			t.Fatalf("instance %s: no key: %v", i.Key(), err)
		}
		return k
	}
	isItsNames := func(i *Instance) {
		t.Helper()
		k := keyOf(i)
		if want := nameKey(i.Namespace, i.Service, i.ID); !bytes.Equal(k, want) || cap(k) != len(k) {
			t.Fatalf("instance %s: key %q (capacity %d), want %q with no spare capacity", i.Key(), k, cap(k), want)
		}
		if unsafe.SliceData(k) != unsafe.StringData(i.Namespace) || &k[len(i.Namespace)+1] != unsafe.StringData(i.Service) ||
			&k[len(i.Namespace)+len(i.Service)+2] != unsafe.StringData(i.ID) {
			t.Fatalf("instance %s: its names are not its key's bytes", i.Key())
		}
		if n := testing.AllocsPerRun(10, func() { keyOf(i) }); n != 0 {
			t.Fatalf("instance %s: reading its key allocates %v times", i.Key(), n)
		}
	}
	a := stored(t, s, "web", "a")
	isItsNames(a)

	w := s.Begin(2)
	if _, err := w.SetHealth(a.Key(), a.RegistrationRevision, HealthCritical, "check failed", 2); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	isItsNames(stored(t, s, "web", "a"))

	if err := s.Restore(func(r *Restorer) error {
		r.SetRevision(2)
		return r.Instance(inst("web", "a", 80))
	}); err != nil {
		t.Fatal(err)
	}
	a = stored(t, s, "web", "a")
	isItsNames(a)

	for _, change := range []func(c *Instance){
		func(c *Instance) { c.ID = "b" },
		func(c *Instance) { c.ID = "abc" },
		func(c *Instance) { c.Service = "api" },
		func(c *Instance) { c.Namespace = "prod" },
		func(c *Instance) { c.Namespace, c.Service, c.ID = "web", "a", "x" },
	} {
		c := a.Clone()
		change(c)
		if got, want := keyOf(c), nameKey(c.Namespace, c.Service, c.ID); !bytes.Equal(got, want) {
			t.Errorf("copy renamed %s: key %q, want %q", c.Key(), got, want)
		}
		m := a.modified()
		change(m)
		if got, want := keyOf(m), nameKey(m.Namespace, m.Service, m.ID); !bytes.Equal(got, want) {
			t.Errorf("modified copy renamed %s: key %q, want %q", m.Key(), got, want)
		}
	}
	register(t, s, 3, inst("web", "abc", 80))
	c := stored(t, s, "web", "abc").Clone()
	c.ID = c.ID[:2]
	if got, want := keyOf(c), nameKey(c.Namespace, c.Service, "ab"); !bytes.Equal(got, want) {
		t.Errorf("copy with its id shortened in place: key %q, want %q", got, want)
	}
	b := a.Clone()
	b.ID = "b"
	register(t, s, 4, b)
	if got := stored(t, s, "web", "b"); got.ID != "b" || stored(t, s, "web", "a").ID != "a" {
		t.Fatalf("a renamed copy registered: %s", got.Key())
	}
	isItsNames(stored(t, s, "web", "b"))
}

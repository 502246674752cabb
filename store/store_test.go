package store

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
)

func inst(svc, id string, port uint16) *Instance {
	return &Instance{Namespace: DefaultNamespace, Service: svc, ID: id, Address: "10.0.0.1", Port: port, Weight: 100}
}

func register(t *testing.T, s *Store, index uint64, i *Instance) uint64 {
	t.Helper()
	w := s.Begin(index)
	defer w.Abort()
	rev, err := w.Register(i, int64(index))
	if err != nil {
		t.Fatalf("register at %d: %v", index, err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return rev
}

func TestStoreWrites(t *testing.T) {
	type step struct {
		name    string
		index   uint64
		op      func(w *WriteTxn) (uint64, error)
		wantRev uint64
		wantErr error
	}
	key := Key{DefaultNamespace, "web", "a"}
	ttl := inst("web", "a", 80)
	ttl.TTL = 10 * time.Second
	tests := []struct {
		name      string
		steps     []step
		wantCount int
		wantStore uint64 // registry revision at the end
		check     func(t *testing.T, v *View)
	}{
		{
			name: "register then identical register is a no-op",
			steps: []step{
				{"first", 5, func(w *WriteTxn) (uint64, error) { return w.Register(inst("web", "a", 80), 1) }, 5, nil},
				{"same", 6, func(w *WriteTxn) (uint64, error) { return w.Register(inst("web", "a", 80), 2) }, 5, nil},
			},
			wantCount: 1, wantStore: 5,
			check: func(t *testing.T, v *View) {
				i, _ := v.Instance(nil, key)
				if i.CreateRevision != 5 || i.ModRevision != 5 || i.Status != HealthPassing || !i.Enabled {
					t.Errorf("got %+v", i)
				}
			},
		},
		{
			name: "changed register bumps mod revision, keeps create revision",
			steps: []step{
				{"first", 5, func(w *WriteTxn) (uint64, error) { return w.Register(inst("web", "a", 80), 1) }, 5, nil},
				{"port", 9, func(w *WriteTxn) (uint64, error) { return w.Register(inst("web", "a", 81), 2) }, 9, nil},
			},
			wantCount: 1, wantStore: 9,
			check: func(t *testing.T, v *View) {
				i, _ := v.Instance(nil, key)
				if i.CreateRevision != 5 || i.ModRevision != 9 || i.Port != 81 {
					t.Errorf("got %+v", i)
				}
			},
		},
		{
			name: "ttl re-register always starts a new lease",
			steps: []step{
				{"first", 3, func(w *WriteTxn) (uint64, error) { return w.Register(ttl, 1) }, 3, nil},
				{"again", 4, func(w *WriteTxn) (uint64, error) { return w.Register(ttl, 2) }, 4, nil},
				{"stale reap", 5, func(w *WriteTxn) (uint64, error) { return w.Reap(key, 3) }, 0, ErrStaleRegistration},
			},
			wantCount: 1, wantStore: 4,
			check: func(t *testing.T, v *View) {
				i, _ := v.Instance(nil, key)
				if i.RegistrationRevision != 4 || i.CreateRevision != 3 {
					t.Errorf("got %+v", i)
				}
			},
		},
		{
			name: "deregister, then deregister again is not found",
			steps: []step{
				{"reg", 2, func(w *WriteTxn) (uint64, error) { return w.Register(inst("web", "a", 80), 1) }, 2, nil},
				{"dereg", 3, func(w *WriteTxn) (uint64, error) { return w.Deregister(key) }, 3, nil},
				{"again", 4, func(w *WriteTxn) (uint64, error) { return w.Deregister(key) }, 0, ErrNotFound},
			},
			wantCount: 0, wantStore: 3,
		},
		{
			name: "health transitions and no-op health",
			steps: []step{
				{"reg", 2, func(w *WriteTxn) (uint64, error) { return w.Register(inst("web", "a", 80), 1) }, 2, nil},
				{"crit", 3, func(w *WriteTxn) (uint64, error) { return w.SetHealth(key, 2, HealthCritical, "ttl expired", 7) }, 3, nil},
				{"crit again", 4, func(w *WriteTxn) (uint64, error) { return w.SetHealth(key, 2, HealthCritical, "x", 8) }, 3, nil},
				{"wrong reg", 5, func(w *WriteTxn) (uint64, error) { return w.SetHealth(key, 1, HealthPassing, "x", 8) }, 0, ErrStaleRegistration},
				{"missing", 6, func(w *WriteTxn) (uint64, error) {
					return w.SetHealth(Key{DefaultNamespace, "web", "zz"}, 2, HealthPassing, "x", 8)
				}, 0, ErrNotFound},
			},
			wantCount: 1, wantStore: 3,
			check: func(t *testing.T, v *View) {
				i, _ := v.Instance(nil, key)
				if i.Status != HealthCritical || i.StatusReason() != "ttl expired" || i.StatusChangedAt != 7 || i.Healthy() {
					t.Errorf("got %+v", i)
				}
			},
		},
		{
			name: "maintenance drains and restores",
			steps: []step{
				{"reg", 2, func(w *WriteTxn) (uint64, error) { return w.Register(inst("web", "a", 80), 1) }, 2, nil},
				{"drain", 3, func(w *WriteTxn) (uint64, error) { return w.SetMaintenance(key, false, "deploy") }, 3, nil},
				{"drain again", 4, func(w *WriteTxn) (uint64, error) { return w.SetMaintenance(key, false, "deploy") }, 3, nil},
				{"re-register keeps drain", 5, func(w *WriteTxn) (uint64, error) { return w.Register(inst("web", "a", 80), 1) }, 3, nil},
				{"re-register elsewhere keeps drain", 6, func(w *WriteTxn) (uint64, error) { return w.Register(inst("web", "a", 81), 1) }, 6, nil},
			},
			wantCount: 1, wantStore: 6,
			check: func(t *testing.T, v *View) {
				i, _ := v.Instance(nil, key)
				if i.Enabled || i.MaintenanceReason() != "deploy" || i.Healthy() || i.Port != 81 {
					t.Errorf("got %+v", i)
				}
			},
		},
		{
			name: "checked instance starts critical",
			steps: []step{
				{"reg", 2, func(w *WriteTxn) (uint64, error) {
					i := inst("web", "a", 80)
					i.SetCheck(&Check{TCP: "127.0.0.1:80", Interval: time.Second, Timeout: time.Second})
					return w.Register(i, 1)
				}, 2, nil},
			},
			wantCount: 1, wantStore: 2,
			check: func(t *testing.T, v *View) {
				i, _ := v.Instance(nil, key)
				if i.Status != HealthCritical {
					t.Errorf("got %v", i.Status)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(DefaultOptions())
			for _, st := range tt.steps {
				w := s.Begin(st.index)
				rev, err := st.op(w)
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("%s: err = %v, want %v", st.name, err, st.wantErr)
				}
				if rev != st.wantRev {
					t.Fatalf("%s: revision = %d, want %d", st.name, rev, st.wantRev)
				}
				if err := w.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			v := s.View()
			_, insts, err := v.Service(nil, DefaultNamespace, "web")
			if err != nil {
				t.Fatal(err)
			}
			if len(insts) != tt.wantCount {
				t.Errorf("instances = %d, want %d", len(insts), tt.wantCount)
			}
			if got := v.Revision(); got != tt.wantStore {
				t.Errorf("revision = %d, want %d", got, tt.wantStore)
			}
			if tt.check != nil {
				tt.check(t, v)
			}
		})
	}
}

func TestStoredObjectsAreImmutable(t *testing.T) {
	s := New(DefaultOptions())
	reg := inst("web", "a", 80)
	reg.Labels = &Labels{Tags: []string{"v1"}}
	register(t, s, 1, reg)
	reg.Labels.Tags[0] = "mutated"
	reg.Port = 1
	got, _ := s.View().Instance(nil, reg.Key())
	if got.Tags()[0] != "v1" || got.Port != 80 {
		t.Fatalf("stored instance changed through the caller's pointer: %+v", got)
	}
	old := s.View()
	register(t, s, 2, inst("web", "a", 81))
	before, _ := old.Instance(nil, reg.Key())
	if before.Port != 80 || old.Revision() != 1 {
		t.Fatalf("an old view changed: port %d revision %d", before.Port, old.Revision())
	}
}

func TestQueries(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, inst("web", "b", 80))
	register(t, s, 2, inst("web", "a", 80))
	register(t, s, 3, inst("api", "a", 80))
	other := inst("web", "a", 80)
	other.Namespace = "prod"
	register(t, s, 4, other)
	register(t, s, 5, &Instance{Namespace: "prod2", Service: "x", ID: "1", Port: 1})

	v := s.View()
	rev, insts, _ := v.Service(nil, DefaultNamespace, "web")
	if len(insts) != 2 || insts[0].ID != "a" || insts[1].ID != "b" || rev != 2 {
		t.Fatalf("web: rev %d %v", rev, insts)
	}
	all, _ := v.Services(nil, "", 0)
	want := []string{"default/api", "default/web", "prod/web", "prod2/x"}
	if len(all) != len(want) {
		t.Fatalf("services = %v", all)
	}
	for i, sv := range all {
		if sv.Namespace+"/"+sv.Service != want[i] {
			t.Errorf("services[%d] = %s/%s, want %s", i, sv.Namespace, sv.Service, want[i])
		}
	}
	var ns []string
	_ = v.Namespace("prod", func(i *Instance) bool { ns = append(ns, i.Key().String()); return true })
	if len(ns) != 1 || ns[0] != "prod/web/a" {
		t.Fatalf("namespace prod = %v (a prefix must not match prod2)", ns)
	}
	// A service never seen reports 0.
	if rev, _, _ := v.Service(nil, DefaultNamespace, "never"); rev != 0 {
		t.Fatalf("unknown service: rev %d, want 0", rev)
	}
	// A deleted service reports the last extinction, its own deletion.
	w := s.Begin(6)
	_, _ = w.Deregister(Key{DefaultNamespace, "api", "a"})
	_ = w.Commit()
	rev, insts, _ = s.View().Service(nil, DefaultNamespace, "api")
	if len(insts) != 0 || rev != 6 {
		t.Fatalf("deleted service: rev %d, %d instances", rev, len(insts))
	}
	// Changes to services that keep instances move neither an absent
	// service's revision nor a never-seen one's: a blocking query on them
	// is not woken by the rest of the registry.
	register(t, s, 7, inst("web", "c", 80))
	w = s.Begin(8)
	_, _ = w.Deregister(Key{DefaultNamespace, "web", "c"})
	_ = w.Commit()
	for _, svc := range []string{"api", "never"} {
		if rev, _, _ := s.View().Service(nil, DefaultNamespace, svc); rev != 6 {
			t.Fatalf("%s after other services changed: rev %d, want 6", svc, rev)
		}
	}
	if got := s.View().Revision(); got != 8 {
		t.Fatalf("registry revision %d, want 8", got)
	}
}

func TestWatchSetFiresOnChange(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, inst("web", "a", 80))
	ws := memdb.NewWatchSet()
	if _, _, err := s.View().Service(ws, DefaultNamespace, "web"); err != nil {
		t.Fatal(err)
	}
	register(t, s, 2, inst("api", "a", 80))
	register(t, s, 3, inst("web", "b", 80))
	if timedOut := ws.Watch(time.After(5 * time.Second)); timedOut {
		t.Fatal("watch set did not fire on a change to the service")
	}
}

func TestRestoreReplacesStateAtomically(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, inst("web", "a", 80))
	old := s.View()
	abandon := s.AbandonCh()

	err := s.Restore(func(r *Restorer) error {
		if err := r.Instance(inst("api", "z", 1)); err != nil {
			return err
		}
		return errors.New("corrupt record")
	})
	if err == nil {
		t.Fatal("restore with a failing fill succeeded")
	}
	if _, err := s.View().Instance(nil, Key{DefaultNamespace, "web", "a"}); err != nil {
		t.Fatalf("failed restore lost state: %v", err)
	}

	restored := inst("api", "z", 1)
	restored.CreateRevision, restored.ModRevision = 40, 40
	if err := s.Restore(func(r *Restorer) error {
		r.SetRevision(42)
		r.ServiceRevision(DefaultNamespace, "api", 42)
		return r.Instance(restored)
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-abandon:
	default:
		t.Fatal("abandon channel not closed by restore")
	}
	v := s.View()
	rev, insts, _ := v.Service(nil, DefaultNamespace, "api")
	if v.Revision() != 42 || rev != 42 || len(insts) != 1 {
		t.Fatalf("after restore: revision %d, service rev %d, %v", v.Revision(), rev, insts)
	}
	if _, err := old.Instance(nil, Key{DefaultNamespace, "web", "a"}); err != nil {
		t.Fatalf("a view taken before restore changed: %v", err)
	}
	if c, _ := s.History().Bounds(); c != 42 {
		t.Fatalf("history compacted = %d, want 42", c)
	}
}

func TestHashIsDeterministic(t *testing.T) {
	build := func(order []string) string {
		s := New(DefaultOptions())
		for n, id := range order {
			i := inst("web", id, 80)
			i.Labels = &Labels{Metadata: map[string]string{"a": "1", "b": "2", "c": "3"}}
			register(t, s, uint64(n+1), i)
		}
		h, err := s.View().Hash()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if a, b := build([]string{"x", "y"}), build([]string{"x", "y"}); a != b {
		t.Fatalf("same writes, different hashes %s %s", a, b)
	}
	if a, b := build([]string{"x", "y"}), build([]string{"y", "x"}); a == b {
		t.Fatal("different revisions, same hash")
	}
}

func TestAppliedIndexMovesWithTheState(t *testing.T) {
	s := New(DefaultOptions())
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	_, ch := s.Applied()
	register(t, s, 3, inst("web", "a", 80))
	if v := s.View(); v.Applied() != 3 || v.Revision() != 3 || !closed(ch) {
		t.Fatalf("after a change at 3: applied %d revision %d, notified %v", v.Applied(), v.Revision(), closed(ch))
	}
	// A write that changes nothing moves the applied index, not the revision.
	_, ch = s.Applied()
	w := s.Begin(4)
	if _, err := w.Deregister(Key{DefaultNamespace, "web", "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deregister unknown: %v", err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if v := s.View(); v.Applied() != 4 || v.Revision() != 3 || !closed(ch) {
		t.Fatalf("after a no-op at 4: applied %d revision %d, notified %v", v.Applied(), v.Revision(), closed(ch))
	}
	_, ch = s.Applied()
	if err := s.Restore(func(r *Restorer) error { r.SetRevision(8); r.SetApplied(9); return nil }); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Applied(); a != 9 || s.Revision() != 8 || !closed(ch) {
		t.Fatalf("after restore: applied %d revision %d, notified %v", a, s.Revision(), closed(ch))
	}
}

// TestServiceSummaryCounts: a summary counts the instances of each status
// and the drained ones; passing counts only the healthy (passing and
// enabled) ones.
func TestServiceSummaryCounts(t *testing.T) {
	s := New(DefaultOptions())
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		register(t, s, uint64(i+1), inst("web", id, 80))
	}
	w := s.Begin(6)
	defer w.Abort()
	key := func(id string) Key { return inst("web", id, 80).Key() }
	if _, err := w.SetHealth(key("b"), 2, HealthWarning, "slow", 6); err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetHealth(key("c"), 3, HealthCritical, "down", 6); err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetHealth(key("d"), 4, HealthCritical, "down", 6); err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetMaintenance(key("d"), false, "patching"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetMaintenance(key("e"), false, "patching"); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	all, err := s.View().Services(nil, "", 0)
	if err != nil || len(all) != 1 {
		t.Fatalf("services = %v, %v", all, err)
	}
	got := all[0]
	want := ServiceSummary{Namespace: DefaultNamespace, Service: "web", Instances: 5, Passing: 1, Warning: 1, Critical: 2, Drained: 2}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("summary = %+v, want %+v", got, want)
	}
}

// TestServiceSummaryDetail: with WithTags a summary holds the sorted union
// of its instances' tags, with WithInstanceIDs their ids in order, each
// service its own; without them, neither.
func TestServiceSummaryDetail(t *testing.T) {
	s := New(DefaultOptions())
	shared := NewLabels([]string{"v2", "blue"}, nil, "")
	for i, in := range []*Instance{
		inst("api", "x", 80),
		inst("web", "a", 80), inst("web", "b", 80), inst("web", "c", 80), inst("web", "d", 80),
	} {
		switch in.ID {
		case "a", "b":
			in.Labels = shared
		case "c":
			in.Labels = NewLabels([]string{"canary", "v2"}, nil, "")
		}
		register(t, s, uint64(i+1), in)
	}
	got, err := s.View().Services(nil, DefaultNamespace, WithTags|WithInstanceIDs)
	if err != nil {
		t.Fatal(err)
	}
	want := []ServiceSummary{
		{Namespace: DefaultNamespace, Service: "api", Instances: 1, Passing: 1, IDs: []string{"x"}},
		{Namespace: DefaultNamespace, Service: "web", Instances: 4, Passing: 4,
			Tags: []string{"blue", "canary", "v2"}, IDs: []string{"a", "b", "c", "d"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("with detail:\n got %+v\nwant %+v", got, want)
	}
	bare, err := s.View().Services(nil, DefaultNamespace, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, sum := range bare {
		if sum.Tags != nil || sum.IDs != nil {
			t.Fatalf("without detail: %+v", sum)
		}
	}
}

// TestInstanceLookupIsExact: a lookup finds the instance with exactly its
// key, whether or not it watches, and never one whose id, service or
// namespace merely starts with the one asked for.
func TestInstanceLookupIsExact(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, inst("web", "a1", 80))
	register(t, s, 2, inst("webx", "a", 81))
	register(t, s, 3, inst("web", "b", 82))
	v := s.View()
	for _, ws := range []memdb.WatchSet{nil, memdb.NewWatchSet()} {
		for _, k := range []Key{{DefaultNamespace, "web", "a"}, {DefaultNamespace, "we", "a"}, {"def", "web", "a1"}, {DefaultNamespace, "web", "c"}} {
			if got, err := v.Instance(ws, k); !errors.Is(err, ErrNotFound) {
				t.Errorf("watching=%v: %s: got %v, %v; want not found", ws != nil, k, got, err)
			}
		}
		for k, port := range map[Key]uint16{{DefaultNamespace, "web", "a1"}: 80, {DefaultNamespace, "webx", "a"}: 81, {DefaultNamespace, "web", "b"}: 82} {
			if got, err := v.Instance(ws, k); err != nil || got.Port != port {
				t.Errorf("watching=%v: %s: got %v, %v; want port %d", ws != nil, k, got, err, port)
			}
		}
	}
	w := s.Begin(4)
	defer w.Abort()
	if _, err := w.Deregister(Key{DefaultNamespace, "web", "a"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deregistering web/a, a prefix of web/a1: %v, want not found", err)
	}
}

// TestAWatchAskedOfAnOlderViewFiresAtOnce: a reader that looked an
// instance up without watching, and asks to watch it in the same view only
// after it changed, is woken at once: the change marked it although no one
// watched it then.
func TestAWatchAskedOfAnOlderViewFiresAtOnce(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, inst("web", "a", 80))
	register(t, s, 2, inst("web", "b", 80))
	k := Key{DefaultNamespace, "web", "a"}
	old := s.View()
	if _, err := old.Instance(nil, k); err != nil {
		t.Fatal(err)
	}
	register(t, s, 3, inst("web", "a", 81))

	ws := memdb.NewWatchSet()
	if got, err := old.Instance(ws, k); err != nil || got.Port != 80 {
		t.Fatalf("the older view reads %v, %v", got, err)
	}
	if timedOut := ws.Watch(time.After(5 * time.Second)); timedOut {
		t.Fatal("a watch asked of a view older than a change to the instance did not fire")
	}
	quiet := memdb.NewWatchSet()
	if _, err := old.Instance(quiet, Key{DefaultNamespace, "web", "b"}); err != nil {
		t.Fatal(err)
	}
	if timedOut := quiet.Watch(time.After(50 * time.Millisecond)); !timedOut {
		t.Fatal("the watch of an instance nothing changed fired")
	}
}

// TestRareFieldsAreNeverShared: the seldom set fields behind one pointer
// are copied on write, so changing them on a copy of a stored instance
// (as every writer does) leaves the stored one as it was, and an instance
// with none of them set holds no pointer.
func TestRareFieldsAreNeverShared(t *testing.T) {
	s := New(DefaultOptions())
	reg := inst("web", "a", 80)
	reg.TTL = time.Second
	reg.SetDeregisterCriticalAfter(time.Minute)
	register(t, s, 1, reg)
	k := reg.Key()
	reg.SetDeregisterCriticalAfter(time.Hour) // the caller's copy, after the write
	if _, err := func() (uint64, error) {
		w := s.Begin(2)
		defer w.Abort()
		rev, err := w.SetMaintenance(k, false, "deploy")
		if err == nil {
			err = w.Commit()
		}
		return rev, err
	}(); err != nil {
		t.Fatal(err)
	}
	v1 := s.View()
	drained, _ := v1.Instance(nil, k)
	if drained.MaintenanceReason() != "deploy" || drained.DeregisterCriticalAfter() != time.Minute {
		t.Fatalf("drained: reason %q, deregister after %v", drained.MaintenanceReason(), drained.DeregisterCriticalAfter())
	}
	w := s.Begin(3)
	if _, err := w.SetMaintenance(k, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if again, _ := v1.Instance(nil, k); again.MaintenanceReason() != "deploy" {
		t.Fatalf("re-enabling changed the older state's reason to %q", again.MaintenanceReason())
	}
	enabled, _ := s.View().Instance(nil, k)
	if enabled.MaintenanceReason() != "" || enabled.DeregisterCriticalAfter() != time.Minute {
		t.Fatalf("enabled: reason %q, deregister after %v", enabled.MaintenanceReason(), enabled.DeregisterCriticalAfter())
	}

	var plain Instance
	plain.SetMaintenanceReason("x")
	plain.SetMaintenanceReason("")
	if plain.rare != nil {
		t.Fatal("an instance whose rare fields are all cleared still holds them")
	}
	chk := &Check{TCP: "127.0.0.1:80", Interval: time.Second}
	plain.SetCheck(chk)
	c := plain.Clone()
	if c.Check() == chk || *c.Check() != *chk {
		t.Fatal("Clone shares the check or changes it")
	}
}

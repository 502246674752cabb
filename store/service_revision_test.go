package store

import (
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
)

// TestServiceRevisionFollowsEveryInstanceChange: a service's revision is the
// last revision that changed any of its instances, whether the change
// added or removed one (the service row's count moves) or only replaced
// one (the row stays as it was). ServiceRevisions, which snapshots write,
// reports the same revision, and a restore from them reads it back.
func TestServiceRevisionFollowsEveryInstanceChange(t *testing.T) {
	s := New(DefaultOptions())
	a := Key{DefaultNamespace, "web", "a"}
	steps := []struct {
		name  string
		index uint64
		op    func(w *WriteTxn) error
		want  uint64 // web's revision after the step
	}{
		{"add a", 1, func(w *WriteTxn) error { _, err := w.Register(inst("web", "a", 80), 1); return err }, 1},
		{"add b", 2, func(w *WriteTxn) error { _, err := w.Register(inst("web", "b", 80), 2); return err }, 2},
		{"other service", 3, func(w *WriteTxn) error { _, err := w.Register(inst("api", "x", 80), 3); return err }, 2},
		{"replace a", 4, func(w *WriteTxn) error { _, err := w.Register(inst("web", "a", 81), 4); return err }, 4},
		{"identical b", 5, func(w *WriteTxn) error { _, err := w.Register(inst("web", "b", 80), 5); return err }, 4},
		{"drain a", 6, func(w *WriteTxn) error { _, err := w.SetMaintenance(a, false, "moving"); return err }, 6},
		{"health of a", 7, func(w *WriteTxn) error {
			i, err := w.instance(a)
			if err != nil {
				return err
			}
			_, err = w.SetHealth(a, i.RegistrationRevision, HealthWarning, "slow", 7)
			return err
		}, 7},
		{"remove b", 8, func(w *WriteTxn) error { _, err := w.Deregister(Key{DefaultNamespace, "web", "b"}); return err }, 8},
		{"other service again", 9, func(w *WriteTxn) error { _, err := w.Register(inst("api", "x", 81), 9); return err }, 8},
		{"re-enable a", 10, func(w *WriteTxn) error { _, err := w.SetMaintenance(a, true, ""); return err }, 10},
	}
	for _, st := range steps {
		w := s.Begin(st.index)
		if err := st.op(w); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		rev, _, err := s.View().Service(nil, DefaultNamespace, "web")
		if err != nil || rev != st.want {
			t.Fatalf("after %s: web revision %d (%v), want %d", st.name, rev, err, st.want)
		}
	}

	revs := map[string]uint64{}
	if err := s.View().ServiceRevisions(func(ns, svc string, rev uint64) { revs[ns+"/"+svc] = rev }); err != nil {
		t.Fatal(err)
	}
	if len(revs) != 2 || revs["default/web"] != 10 || revs["default/api"] != 9 {
		t.Fatalf("service revisions %v, want default/web 10 and default/api 9", revs)
	}

	// A snapshot of this state carries those revisions; the restored
	// store reports them.
	g := New(DefaultOptions())
	v := s.View()
	if err := g.Restore(func(r *Restorer) error {
		r.SetRevision(v.Revision())
		r.SetApplied(v.Applied())
		var err error
		if ierr := v.Instances(func(i *Instance) bool { err = r.Instance(i); return err == nil }); ierr != nil {
			return ierr
		}
		if err != nil {
			return err
		}
		return v.ServiceRevisions(r.ServiceRevision)
	}); err != nil {
		t.Fatal(err)
	}
	for svc, want := range map[string]uint64{"web": 10, "api": 9} {
		if rev, _, _ := g.View().Service(nil, DefaultNamespace, svc); rev != want {
			t.Fatalf("restored %s revision %d, want %d", svc, rev, want)
		}
	}
}

// TestWatchSetFiresOnReplacedInstance: replacing an instance, which leaves
// the service's row alone, still fires a watch on the service.
func TestWatchSetFiresOnReplacedInstance(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, inst("web", "a", 80))
	ws := memdb.NewWatchSet()
	if _, _, err := s.View().Service(ws, DefaultNamespace, "web"); err != nil {
		t.Fatal(err)
	}
	register(t, s, 2, inst("web", "a", 81))
	if timedOut := ws.Watch(time.After(5 * time.Second)); timedOut {
		t.Fatal("watch set did not fire when an instance of the service was replaced")
	}
}

// TestPrefixQueriesMatchWholeNames: a service's and a namespace's instances
// are read from a prefix of the instance key; a name that extends another
// (web2 after web, prod2 after prod) is never part of it.
func TestPrefixQueriesMatchWholeNames(t *testing.T) {
	s := New(DefaultOptions())
	at := func(ns, svc, id string) *Instance {
		i := inst(svc, id, 80)
		i.Namespace = ns
		return i
	}
	for n, i := range []*Instance{
		at("prod", "web2", "a"), at("prod", "web", "b"), at("prod", "we", "c"), at("prod", "web", "a"),
		at("prod2", "web", "a"), at("pro", "web", "z"),
	} {
		register(t, s, uint64(n+1), i)
	}
	v := s.View()
	keys := func(insts []*Instance) []string {
		var out []string
		for _, i := range insts {
			out = append(out, i.Key().String())
		}
		return out
	}
	rev, insts, err := v.Service(nil, "prod", "web")
	if got := keys(insts); err != nil || rev != 4 || len(got) != 2 || got[0] != "prod/web/a" || got[1] != "prod/web/b" {
		t.Fatalf("prod/web: revision %d, %v, %v; want 4 and prod/web/a, prod/web/b", rev, got, err)
	}
	var ns []string
	if err := v.Namespace("prod", func(i *Instance) bool { ns = append(ns, i.Key().String()); return true }); err != nil {
		t.Fatal(err)
	}
	want := []string{"prod/we/c", "prod/web/a", "prod/web/b", "prod/web2/a"}
	if len(ns) != len(want) {
		t.Fatalf("namespace prod = %v, want %v", ns, want)
	}
	for i := range want {
		if ns[i] != want[i] {
			t.Fatalf("namespace prod = %v, want %v", ns, want)
		}
	}
	sums, err := v.Services(nil, "prod", 0)
	if err != nil || len(sums) != 3 || sums[0].Service != "we" || sums[1].Service != "web" || sums[1].Instances != 2 || sums[2].Service != "web2" {
		t.Fatalf("services of prod = %+v, %v", sums, err)
	}
	if _, insts, _ := v.Service(nil, "prod", ""); len(insts) != 0 {
		t.Fatalf("a service with an empty name has instances: %v", keys(insts))
	}
}

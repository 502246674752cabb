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

package store

import (
	"testing"

	"github.com/hashicorp/go-memdb"
)

// TestViewTakenWhilePublishingShowsOneState: between a commit's database
// going in place (its watch channels closed) and its meta, no view is
// handed out; a reader arriving then, as one woken by those channels does,
// waits and gets the commit's state with the commit's revision and applied
// index, never the new state with the old numbers.
func TestViewTakenWhilePublishingShowsOneState(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, inst("web", "a", 80))
	ws := memdb.NewWatchSet()
	if _, _, err := s.View().Service(ws, DefaultNamespace, "web"); err != nil {
		t.Fatal(err)
	}
	got := make(chan *View, 1)
	hookRuns := 0
	s.published = func() {
		hookRuns++
		fired := false
		for ch := range ws {
			select {
			case <-ch:
				fired = true
			default:
			}
		}
		if !fired {
			t.Error("a watch on the changed service has not fired when the commit's database is in place")
		}
		if v := s.tryView(); v != nil {
			t.Errorf("a view (applied %d) was taken while a commit was publishing", v.Applied())
		}
		go func() { got <- s.View() }()
	}
	register(t, s, 2, inst("web", "a", 81))
	s.published = nil
	v := <-got
	i, err := v.Instance(nil, Key{DefaultNamespace, "web", "a"})
	if err != nil || hookRuns != 1 {
		t.Fatalf("instance %v, hook ran %d times", err, hookRuns)
	}
	if v.Applied() != 2 || v.Revision() != 2 || i.Port != 81 {
		t.Fatalf("view taken while publishing: applied %d revision %d port %d, want 2, 2, 81", v.Applied(), v.Revision(), i.Port)
	}
}

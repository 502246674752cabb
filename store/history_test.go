package store

import (
	"errors"
	"fmt"
	"testing"
	"unsafe"
)

// TestEventSize: the history keeps up to 100,000 events, so an event stays
// in Go's 16-byte size class (its type is read from what it holds, its
// revision from the Revision grouping it), and a transaction's first event
// with the list it starts in the 24-byte one.
func TestEventSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are pinned for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Event{}); got != 16 {
		t.Fatalf("Event is %d bytes, want 16", got)
	}
	if got := unsafe.Sizeof(firstEvent{}); got != 24 {
		t.Fatalf("firstEvent is %d bytes, want 24", got)
	}
	put, del := Event{Instance: &Instance{}, Prev: &Instance{}}, Event{Prev: &Instance{}}
	if put.Type() != EventPut || del.Type() != EventDelete {
		t.Fatalf("types %v and %v, want put and delete", put.Type(), del.Type())
	}
}

func TestHistoryGroupsRevisionsAndCompacts(t *testing.T) {
	s := New(Options{HistoryEvents: 4, HistoryBytes: 1 << 30})
	w := s.Begin(10)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := w.Register(inst("web", id, 80), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	revs, head, _, err := s.History().Since(0, 100)
	if err != nil || head != 10 || len(revs) != 1 || revs[0].Revision != 10 || len(revs[0].Events) != 3 {
		t.Fatalf("since 0: %v head %d err %v", revs, head, err)
	}
	for _, e := range revs[0].Events {
		if e.Type() != EventPut || e.Prev != nil {
			t.Fatalf("event %+v", e)
		}
	}
	register(t, s, 11, inst("web", "d", 80))
	register(t, s, 12, inst("web", "e", 80))
	// 5 events > 4: revision 10 (3 events) is compacted whole.
	if c, h := s.History().Bounds(); c != 10 || h != 12 {
		t.Fatalf("bounds = %d,%d want 10,12", c, h)
	}
	if _, _, _, err := s.History().Since(9, 100); !errors.Is(err, ErrCompacted) {
		t.Fatalf("since 9 after compaction: %v", err)
	}
	revs, _, _, err = s.History().Since(10, 1)
	if err != nil || len(revs) != 1 || revs[0].Revision != 11 {
		t.Fatalf("since 10 max 1: %v %v", revs, err)
	}
}

func TestHistoryNotifiesAndSkipsNoops(t *testing.T) {
	s := New(DefaultOptions())
	register(t, s, 1, inst("web", "a", 80))
	_, _, wait, _ := s.History().Since(1, 10)
	register(t, s, 2, inst("web", "a", 80)) // identical: no event
	select {
	case <-wait:
		t.Fatal("a no-op write woke watchers")
	default:
	}
	w := s.Begin(3)
	if _, err := w.Deregister(Key{DefaultNamespace, "web", "a"}); err != nil {
		t.Fatal(err)
	}
	_ = w.Commit()
	<-wait
	revs, _, _, _ := s.History().Since(1, 10)
	if len(revs) != 1 || revs[0].Revision != 3 || revs[0].Events[0].Type() != EventDelete || revs[0].Events[0].Prev == nil {
		t.Fatalf("delete event: %+v", revs)
	}
}

func BenchmarkRegister(b *testing.B) {
	s := New(DefaultOptions())
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	b.ReportAllocs()
	for n := 0; n < b.N; n++ {
		i := inst("web", ids[n%len(ids)], uint16(n%60000+1))
		w := s.Begin(uint64(n + 1))
		if _, err := w.Register(i, int64(n)); err != nil {
			b.Fatal(err)
		}
		_ = w.Commit()
	}
}

func TestHistoryBehindCountsEventsAfterARevision(t *testing.T) {
	s := New(Options{HistoryEvents: 5, HistoryBytes: 1 << 30})
	for i, id := range []string{"a", "b", "c", "d"} {
		register(t, s, uint64(10+i), inst("web", id, 80))
	}
	tests := []struct {
		rev  uint64
		want int
		err  error
	}{
		{9, 4, nil}, {10, 3, nil}, {12, 1, nil}, {13, 0, nil}, {99, 0, nil},
	}
	for _, tt := range tests {
		got, _, err := s.History().Behind(tt.rev)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("Behind(%d) = %d, %v; want %d, %v", tt.rev, got, err, tt.want, tt.err)
		}
	}
	// Two more events push the history past 5: revision 10 is compacted.
	register(t, s, 14, inst("web", "e", 80))
	register(t, s, 15, inst("web", "f", 80))
	if _, _, err := s.History().Behind(9); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Behind(9) after compaction: %v, want ErrCompacted", err)
	}
	if got, _, err := s.History().Behind(11); got != 4 || err != nil {
		t.Fatalf("Behind(11) = %d, %v; want 4", got, err)
	}
	s.History().reset(20)
	if _, _, err := s.History().Behind(15); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Behind(15) after reset to 20: %v, want ErrCompacted", err)
	}
	if got, _, err := s.History().Behind(20); got != 0 || err != nil {
		t.Fatalf("Behind(20) after reset = %d, %v", got, err)
	}
}

// BenchmarkInstanceLookup reads one instance by key out of 100,000 in one
// service, without a watch, as a lease renewal or a health check does.
func BenchmarkInstanceLookup(b *testing.B) {
	const n = 100_000
	s := New(DefaultOptions())
	keys := make([]Key, n)
	for k := 0; k < n; k += 64 {
		w := s.Begin(uint64(k + 1))
		for j := k; j < min(k+64, n); j++ {
			i := inst("web", fmt.Sprintf("web-%08x", uint32(j)*2654435761), 8080)
			keys[j] = i.Key()
			if _, err := w.Register(i, int64(k)); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	v := s.View()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if _, err := v.Instance(nil, keys[n%len(keys)]); err != nil {
			b.Fatal(err)
		}
	}
}

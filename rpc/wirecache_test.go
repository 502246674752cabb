package rpc

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/roster-registry/roster/store"
)

func wireTestEvent(rev uint64) *store.Event {
	k := store.Key{Namespace: "default", Service: "web", ID: "w1"}
	inst := &store.Instance{Namespace: k.Namespace, Service: k.Service, ID: k.ID, Address: "10.0.0.1", Port: 80, Weight: 100, ModRevision: rev}
	return &store.Event{Instance: inst}
}

// TestEventEncodedOnceForAllWatchers: concurrent watchers of one event
// share one encoding, and an event's entry goes when the event does.
func TestEventEncodedOnceForAllWatchers(t *testing.T) {
	s := &Server{}
	e := wireTestEvent(7)
	var wg sync.WaitGroup
	got := make([][]byte, 64)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = s.eventWire(7, e, false, false)
		}()
	}
	wg.Wait()
	for i := range got {
		if &got[i][0] != &got[0][0] || !bytes.Equal(got[i], got[0]) {
			t.Fatalf("watcher %d got its own encoding", i)
		}
	}
	s.eventWire(7, e, false, false)
	if n := s.watch.encodings.Load(); n != 1 {
		t.Fatalf("%d encodings of one event, want 1", n)
	}
	if s.watch.wire.size.Load() != 1 {
		t.Fatalf("cache holds %d entries, want 1", s.watch.wire.size.Load())
	}
	runtime.KeepAlive(e)

	// Once nothing holds the event, its entry is dropped.
	e = nil
	deadline := time.Now().Add(10 * time.Second)
	for s.watch.wire.size.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("cache still holds %d entries after the event was dropped", s.watch.wire.size.Load())
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

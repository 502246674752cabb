package client

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// nextEvent returns the next session event of kind, skipping others, or
// fails at the deadline.
func nextEvent(t *testing.T, s *Session, kind LeaseEventKind) LeaseEvent {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %v", kind)
			}
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %v event before the deadline", kind)
		}
	}
}

func TestKeepAliveReportsLostAndRestored(t *testing.T) {
	st := newFakeState()
	first, second := startFake(t, st), startFake(t, st)
	key := InstanceKey{Service: "web", ID: "w1"}
	st.put(key)
	c := newTestClient(t, first.addr, second.addr)

	s, err := c.KeepAlive(testContext(t), 150*time.Millisecond, key)
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}
	defer s.Close()
	if ev := nextEvent(t, s, StreamConnected); ev.Endpoint != first.addr {
		t.Fatalf("connected to %s, want %s", ev.Endpoint, first.addr)
	}
	// Renewals keep coming, one per ttl/3.
	waitFor(t, "three renewals", func() bool { return first.count("KeepAlive") >= 3 })

	st.remove(key, "")
	lost := nextEvent(t, s, LeaseLost)
	if lost.Instance != key.normal() || status.Code(lost.Err) != codes.NotFound {
		t.Fatalf("lost event %+v, want %v with NotFound", lost, key.normal())
	}
	st.put(key)
	if ev := nextEvent(t, s, LeaseRestored); ev.Instance != key.normal() {
		t.Fatalf("restored event for %v, want %v", ev.Instance, key.normal())
	}

	// The stream breaks; the session moves to the second server.
	first.cut <- status.Error(codes.Unavailable, "node shutting down")
	if ev := nextEvent(t, s, StreamBroken); ev.Endpoint != first.addr || status.Code(ev.Err) != codes.Unavailable {
		t.Fatalf("broken event %+v, want %s with Unavailable", ev, first.addr)
	}
	if ev := nextEvent(t, s, StreamConnected); ev.Endpoint != second.addr {
		t.Fatalf("reconnected to %s, want %s", ev.Endpoint, second.addr)
	}
	waitFor(t, "renewals on the second server", func() bool { return second.count("KeepAlive") >= 2 })

	s.Close()
	select {
	case _, ok := <-s.Events():
		for ok {
			_, ok = <-s.Events()
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events not closed after Close")
	}
}

func TestKeepAliveNeedsTTL(t *testing.T) {
	c := newTestClient(t, "127.0.0.1:1")
	if _, err := c.KeepAlive(testContext(t), 0); err == nil {
		t.Fatal("KeepAlive with zero ttl succeeded")
	}
}

package client

import (
	"context"
	"fmt"
	"slices"
	"strings"
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

// TestKeepAliveBatchesAndReportsEachInstance: a session renewing several
// instances sends them in one message and reports a lost lease for the one
// instance whose answer in the batch says NotFound.
func TestKeepAliveBatchesAndReportsEachInstance(t *testing.T) {
	st := newFakeState()
	f := startFake(t, st)
	keys := []InstanceKey{{Service: "web", ID: "w1"}, {Service: "web", ID: "w2"}, {Namespace: "prod", Service: "api", ID: "a1"}}
	s := sessionOn(t, f, keys, keys...)
	nextEvent(t, s, StreamConnected)
	waitFor(t, "three batched renewals", func() bool { return f.count("KeepAlive batch") >= 3 })
	if n := f.count("KeepAlive"); n != 0 {
		t.Fatalf("%d single renewals, want every renewal batched", n)
	}
	st.remove(keys[1], "")
	if lost := nextEvent(t, s, LeaseLost); lost.Instance != keys[1].normal() || status.Code(lost.Err) != codes.NotFound {
		t.Fatalf("lost event %+v, want %v with NotFound", lost, keys[1].normal())
	}
	st.put(keys[1])
	if ev := nextEvent(t, s, LeaseRestored); ev.Instance != keys[1].normal() {
		t.Fatalf("restored event for %v, want %v", ev.Instance, keys[1].normal())
	}
}

// TestKeepAliveFallsBackToOneEachOnAnOldServer: a session whose first
// batch (sent once a second instance is added) ends the stream of a server
// that does not know batches renews one instance a message from then on,
// and the leases are kept.
func TestKeepAliveFallsBackToOneEachOnAnOldServer(t *testing.T) {
	st := newFakeState()
	f := startFake(t, st)
	f.oldKeepAlive = true
	keys := []InstanceKey{{Service: "web", ID: "w1"}, {Service: "web", ID: "w2"}}
	s := sessionOn(t, f, keys, keys[0])
	nextEvent(t, s, StreamConnected)
	waitFor(t, "single renewals of the first instance", func() bool { return f.count("KeepAlive") >= 2 })
	s.Add(keys[1])
	if ev := nextEvent(t, s, StreamBroken); status.Code(ev.Err) != codes.InvalidArgument {
		t.Fatalf("stream ended with %v, want the old server's InvalidArgument", ev.Err)
	}
	nextEvent(t, s, StreamConnected)
	before := f.count("KeepAlive")
	waitFor(t, "single renewals of both instances", func() bool { return f.count("KeepAlive") >= before+6 })
	if n := f.count("KeepAlive batch"); n != 0 {
		t.Fatalf("the old server answered %d batches", n)
	}
}

// TestKeepAliveSplitsWhenABatchIsRefused: a server that refuses a batch as
// a whole in its answer gets one instance a message on the next stream; the
// stream after that tries batches again.
func TestKeepAliveSplitsWhenABatchIsRefused(t *testing.T) {
	st := newFakeState()
	f := startFake(t, st)
	f.maxBatch = 2
	keys := []InstanceKey{{Service: "web", ID: "w1"}, {Service: "web", ID: "w2"}, {Service: "web", ID: "w3"}}
	s := sessionOn(t, f, keys, keys...)
	nextEvent(t, s, StreamConnected)
	if ev := nextEvent(t, s, StreamBroken); status.Code(ev.Err) != codes.InvalidArgument {
		t.Fatalf("stream ended with %v, want the refusal's InvalidArgument", ev.Err)
	}
	nextEvent(t, s, StreamConnected)
	waitFor(t, "single renewals of all three", func() bool { return f.count("KeepAlive") >= 6 })
	if n := f.count("KeepAlive batch refused"); n != 1 {
		t.Fatalf("%d batches refused before the split, want 1", n)
	}
	f.cut <- status.Error(codes.Unavailable, "node shutting down")
	waitFor(t, "a batch tried again on the next stream", func() bool { return f.count("KeepAlive batch refused") >= 2 })
}

// sessionOn registers keys in f's state and starts a session with a
// 150 ms TTL renewing the given ones, closed when the test ends.
func sessionOn(t *testing.T, f *fakeServer, keys []InstanceKey, renew ...InstanceKey) *Session {
	t.Helper()
	for _, k := range keys {
		f.state.put(k)
	}
	s, err := newTestClient(t, f.addr).KeepAlive(testContext(t), 150*time.Millisecond, renew...)
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestKeepAliveNeedsTTL(t *testing.T) {
	c := newTestClient(t, "127.0.0.1:1")
	if _, err := c.KeepAlive(testContext(t), 0); err == nil {
		t.Fatal("KeepAlive with zero ttl succeeded")
	}
}

// clockSession starts a session renewing one instance of f's state with a
// 30 ms TTL (a renewal every 10 ms) on a client whose timers run on clk,
// closed when the test ends.
func clockSession(t *testing.T, f *fakeServer, clk *fakeClock) *Session {
	t.Helper()
	key := InstanceKey{Service: "web", ID: "w1"}
	f.state.put(key)
	s, err := newFakeClockClient(t, clk, f.addr).KeepAlive(testContext(t), 30*time.Millisecond, key)
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// advanceTick waits until the session's ticker is armed on clk for the
// next renewal, with the server having seen want renewals (counted as
// method) and no more, then moves clk by d.
func advanceTick(t *testing.T, f *fakeServer, clk *fakeClock, method string, want int, d time.Duration) {
	t.Helper()
	due := clk.Now().Add(10 * time.Millisecond)
	waitFor(t, fmt.Sprintf("renewal %d and the ticker armed for the next", want), func() bool {
		if n := f.count(method); n > want {
			t.Fatalf("%d renewals while the clock stood still, want %d", n, want)
		}
		return f.count(method) == want && slices.Contains(clk.pending(), due)
	})
	clk.Advance(d)
}

// TestKeepAliveRenewsOnTheClock: the session renews once every ttl/3 on
// the client's clock, and not before.
func TestKeepAliveRenewsOnTheClock(t *testing.T) {
	f := startFake(t, newFakeState())
	clk := newFakeClock()
	s := clockSession(t, f, clk)
	nextEvent(t, s, StreamConnected) // the first renewal, sent at once
	for want := 1; want <= 3; want++ {
		advanceTick(t, f, clk, "KeepAlive", want, 9*time.Millisecond)
		if n := f.count("KeepAlive"); n != want {
			t.Fatalf("renewal %d sent 9ms into an interval of 10ms", n)
		}
		clk.Advance(time.Millisecond)
		waitFor(t, fmt.Sprintf("renewal %d once the interval has passed", want+1), func() bool { return f.count("KeepAlive") == want+1 })
	}
}

// TestKeepAliveStallOnTheClock: a stream whose renewals go unanswered is
// given up, with DeadlineExceeded, at the first tick after the TTL has
// passed on the client's clock since it last heard from the server, and
// not before.
func TestKeepAliveStallOnTheClock(t *testing.T) {
	f := startFake(t, newFakeState())
	f.silentKeepAlive = true
	clk := newFakeClock()
	s := clockSession(t, f, clk)
	// The first renewal at 0, then one a tick: 10, 20 and 30 ms, the TTL
	// (not past it).
	for want := 1; want <= 3; want++ {
		advanceTick(t, f, clk, "KeepAlive unanswered", want, 10*time.Millisecond)
	}
	waitFor(t, "the renewal at the TTL", func() bool { return f.count("KeepAlive unanswered") == 4 })
	select {
	case ev := <-s.Events():
		t.Fatalf("session reported %v (%v) at the TTL, before it was past", ev.Kind, ev.Err)
	default:
	}
	clk.Advance(10 * time.Millisecond)
	ev := nextEvent(t, s, StreamBroken)
	if status.Code(ev.Err) != codes.DeadlineExceeded || !strings.Contains(ev.Err.Error(), "no keepalive answer") {
		t.Fatalf("stream broken with %v, want DeadlineExceeded: no keepalive answer", ev.Err)
	}
}

// TestKeepAliveEndsWhenClientCloses: a session whose context outlives its
// client ends when the client is closed: Done is closed and Events closes,
// as after Session.Close, rather than leaving a goroutine behind and Done
// open for the life of the context.
func TestKeepAliveEndsWhenClientCloses(t *testing.T) {
	st := newFakeState()
	f := startFake(t, st)
	key := InstanceKey{Service: "web", ID: "w1"}
	st.put(key)
	c := newTestClient(t, f.addr)
	s, err := c.KeepAlive(context.Background(), 150*time.Millisecond, key)
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}
	nextEvent(t, s, StreamConnected)
	c.Close()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session not done 5s after its client was closed")
	}
	for range s.Events() {
	}
}

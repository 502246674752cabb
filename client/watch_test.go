package client

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// collectWatch ranges over a watch in the background, sending each
// response's revision (and any final error) to the returned channels.
func collectWatch(ctx context.Context, c *Client, req *rosterv1.WatchRequest) (<-chan *rosterv1.WatchResponse, <-chan error) {
	out := make(chan *rosterv1.WatchResponse, 100)
	errc := make(chan error, 1)
	go func() {
		for resp, err := range c.Watch(ctx, req) {
			if err != nil {
				errc <- err
				return
			}
			out <- resp
		}
	}()
	return out, errc
}

// expectRevisions reads responses until it has seen the event revisions
// want, failing on anything else or at the deadline.
func expectRevisions(t *testing.T, out <-chan *rosterv1.WatchResponse, errc <-chan error, want ...uint64) {
	t.Helper()
	var got []uint64
	deadline := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case resp := <-out:
			for _, ev := range resp.GetEvents() {
				got = append(got, ev.GetRevision())
			}
		case err := <-errc:
			t.Fatalf("watch ended: %v (got revisions %v)", err, got)
		case <-deadline:
			t.Fatalf("got revisions %v before the deadline, want %v", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got revisions %v, want %v", got, want)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestWatchResumesWithoutGapOrRepeat(t *testing.T) {
	st := newFakeState()
	st.appendRevisions(1, 3)
	first, second := startFake(t, st), startFake(t, st)
	// The second server resends two revisions before the one asked for; the
	// client must drop them.
	second.overlap = 2
	c := newTestClient(t, first.addr, second.addr)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()

	out, errc := collectWatch(ctx, c, &rosterv1.WatchRequest{
		Service:   "web",
		StartRead: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE},
	})
	expectRevisions(t, out, errc, 1, 2, 3)

	// The first server's stream breaks; the watch moves to the second one.
	first.cut <- status.Error(codes.Unavailable, "node shutting down")
	st.appendRevisions(4, 6)
	expectRevisions(t, out, errc, 4, 5, 6)
	if got := second.starts(); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("second server watch start revisions %v, want [3]", got)
	}

	// A slow watcher cut off is resumed on the same server.
	second.cut <- status.Error(codes.ResourceExhausted, "watcher too slow")
	st.appendRevisions(7, 7)
	expectRevisions(t, out, errc, 7)
	if got := second.starts(); !slices.Equal(got, []uint64{3, 6}) {
		t.Fatalf("second server watch start revisions %v, want [3 6]", got)
	}
	if got := first.starts(); !slices.Equal(got, []uint64{0}) {
		t.Fatalf("first server watch start revisions %v, want [0]", got)
	}
	// start_read shapes only the first reset: resumed streams go without.
	if got := first.startReads(); !slices.Equal(got, []string{"CONSISTENCY_LINEARIZABLE"}) {
		t.Fatalf("first server start_read %v", got)
	}
	if got := second.startReads(); !slices.Equal(got, []string{"", ""}) {
		t.Fatalf("second server start_read %v, want none on resumed streams", got)
	}
}

// TestWatchKeepsItsRequestWhenResumed: a watch that asks for no
// prev_instance, and names itself for RequestProgress, does both again on
// the stream that resumes it, and the discovery cache, which keeps
// instances by id, asks for no prev_instance.
func TestWatchKeepsItsRequestWhenResumed(t *testing.T) {
	st := newFakeState()
	st.appendRevisions(1, 2)
	first, second := startFake(t, st), startFake(t, st)
	c := newTestClient(t, first.addr, second.addr)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	out, errc := collectWatch(ctx, c, &rosterv1.WatchRequest{Service: "web", OmitPrevInstance: true, ProgressId: "p-1"})
	expectRevisions(t, out, errc, 1, 2)
	first.cut <- status.Error(codes.Unavailable, "node shutting down")
	st.appendRevisions(3, 3)
	expectRevisions(t, out, errc, 3)
	if got := append(first.omitPrevs(), second.omitPrevs()...); !slices.Equal(got, []bool{true, true}) {
		t.Fatalf("omit_prev_instance of the first and the resumed stream: %v, want [true true]", got)
	}
	if got := append(first.progressIDs(), second.progressIDs()...); !slices.Equal(got, []string{"p-1", "p-1"}) {
		t.Fatalf("progress_id of the first and the resumed stream: %q, want [p-1 p-1]", got)
	}
	cancel()

	sub, err := c.Subscribe("web")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitFor(t, "the cache's watch", func() bool { return len(first.omitPrevs())+len(second.omitPrevs()) == 3 })
	if got := append(first.omitPrevs(), second.omitPrevs()...); !slices.Equal(got, []bool{true, true, true}) {
		t.Fatalf("omit_prev_instance of the streams: %v, want the cache's to ask for none", got)
	}
}

// TestWatchWithoutARequest: a nil request is an empty one (the default
// namespace, every service), not a panic.
func TestWatchWithoutARequest(t *testing.T) {
	st := newFakeState()
	st.appendRevisions(1, 2)
	c := newTestClient(t, startFake(t, st).addr)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	out, errc := collectWatch(ctx, c, nil)
	expectRevisions(t, out, errc, 1, 2)
}

func TestWatchEndsOnPermanentError(t *testing.T) {
	f := startFake(t, newFakeState())
	f.setFail("Watch", status.Error(codes.InvalidArgument, "bad service"))
	c := newTestClient(t, f.addr)
	_, errc := collectWatch(testContext(t), c, &rosterv1.WatchRequest{Service: "Bad"})
	select {
	case err := <-errc:
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("watch error %v, want InvalidArgument", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not end")
	}
	if got := f.count("Watch"); got != 1 {
		t.Fatalf("server saw %d watch calls, want 1", got)
	}
}

func TestWatchAccept(t *testing.T) {
	put := func(rev uint64) *rosterv1.Event {
		return &rosterv1.Event{Type: rosterv1.Event_TYPE_PUT, Revision: rev}
	}
	tests := []struct {
		name       string
		from       uint64
		resp       *rosterv1.WatchResponse
		wantOK     bool
		wantEvents []uint64
		wantRev    uint64
	}{
		{"new events", 3, &rosterv1.WatchResponse{Revision: 5, Events: []*rosterv1.Event{put(4), put(5)}}, true, []uint64{4, 5}, 5},
		{"repeat dropped", 5, &rosterv1.WatchResponse{Revision: 5, Events: []*rosterv1.Event{put(4), put(5)}}, false, nil, 5},
		{"overlap trimmed", 4, &rosterv1.WatchResponse{Revision: 6, Events: []*rosterv1.Event{put(4), put(5), put(6)}}, true, []uint64{5, 6}, 6},
		{"progress advances", 4, &rosterv1.WatchResponse{Revision: 9, Progress: true}, true, nil, 9},
		{"stale progress dropped", 9, &rosterv1.WatchResponse{Revision: 4, Progress: true}, false, nil, 9},
		{"reset always passes", 9, &rosterv1.WatchResponse{Revision: 20, Reset_: true, Events: []*rosterv1.Event{put(2)}}, true, []uint64{2}, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &watchResume{revision: tt.from}
			got, ok := w.accept(tt.resp)
			if ok != tt.wantOK {
				t.Fatalf("accept ok = %v, want %v", ok, tt.wantOK)
			}
			var revs []uint64
			for _, ev := range got.GetEvents() {
				revs = append(revs, ev.GetRevision())
			}
			if !slices.Equal(revs, tt.wantEvents) {
				t.Fatalf("accepted events %v, want %v", revs, tt.wantEvents)
			}
			if w.revision != tt.wantRev {
				t.Fatalf("revision after accept %d, want %d", w.revision, tt.wantRev)
			}
		})
	}
}

// TestWatchReportsRetries: OnWatchRetry hears of each failure the watch
// goes on from, an endpoint that cannot be reached and a stream that
// breaks alike, with the endpoint's address, and the watch goes on; the
// option itself is not sent to the server.
func TestWatchReportsRetries(t *testing.T) {
	st := newFakeState()
	st.appendRevisions(1, 2)
	dead, live := deadAddr(t), startFake(t, st)
	c := newTestClient(t, dead, live.addr)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()

	retries := make(chan WatchRetry, 100)
	out := make(chan *rosterv1.WatchResponse, 100)
	errc := make(chan error, 1)
	go func() {
		for resp, err := range c.Watch(ctx, &rosterv1.WatchRequest{Service: "web"}, OnWatchRetry(func(r WatchRetry) { retries <- r })) {
			if err != nil {
				errc <- err
				return
			}
			out <- resp
		}
	}()
	expectRevisions(t, out, errc, 1, 2)
	select {
	case r := <-retries:
		if r.Endpoint != dead || status.Code(r.Err) != codes.Unavailable {
			t.Fatalf("first retry %s: %v, want %s: Unavailable", r.Endpoint, r.Err, dead)
		}
	default:
		t.Fatal("the unreachable endpoint was not reported")
	}

	live.cut <- status.Error(codes.Unavailable, "node shutting down")
	var r WatchRetry
	select {
	case r = <-retries:
	case <-ctx.Done():
		t.Fatal("the broken stream was not reported")
	}
	if r.Endpoint != live.addr || !strings.Contains(r.Err.Error(), "node shutting down") {
		t.Fatalf("retry after the cut %s: %v, want %s: node shutting down", r.Endpoint, r.Err, live.addr)
	}
	st.appendRevisions(3, 3)
	expectRevisions(t, out, errc, 3)
}

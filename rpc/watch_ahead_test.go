package rpc_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// aheadHooks makes a watch starting beyond nd's head report that it waits,
// and returns the channel to close for its wait to run out.
func aheadHooks(nd *testcluster.Node) (waiting <-chan uint64, expire chan time.Time) {
	w := make(chan uint64, 4)
	expire = make(chan time.Time)
	rpc.SetWatchHooks(nd.Server, rpc.WatchHooks{
		AheadWait:  func(_, head uint64) { w <- head },
		AheadTimer: func(time.Duration) <-chan time.Time { return expire },
	})
	return w, expire
}

func waitFor(ctx context.Context, t *testing.T, what string, ch <-chan uint64) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatalf("%s: %v", what, ctx.Err())
	}
}

// wantBookmarkWithin fails unless m is a bookmark whose revision the node
// has (at most its applied index and the header's revision).
func wantBookmarkWithin(t *testing.T, m *rosterv1.WatchResponse, rev uint64) {
	t.Helper()
	if !m.Progress || m.Revision != rev || m.Header.Revision != rev || m.Revision > m.Header.AppliedIndex {
		t.Fatalf("bookmark %v: want one at %d, within the applied index", m, rev)
	}
}

// TestWatchFromAheadWaitsForTheNode: a watch resumed from a revision this
// node has not applied yet (the client saw it on a node ahead) waits until
// the node gets there and then goes on as usual: no reset, the changes
// after its start, and no bookmark beyond the node's state.
func TestWatchFromAheadWaitsForTheNode(t *testing.T) {
	bothStreams(t, func(t *testing.T, many bool) {
		nd, ctx, reg := oneNodeWithWebA(t)
		waiting, _ := aheadHooks(nd)
		start := nd.Node.Store().Revision() + 3
		recv, err := openWatch(ctx, nd, &rosterv1.WatchRequest{Service: "web", StartRevision: start, ProgressId: "ahead",
			ProgressInterval: durationpb.New(rpc.MaxProgressInterval)}, many)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(ctx, t, "the watch to wait for its start", waiting)
		// Asked while waiting: answered once the node is there.
		if _, err := reg.RequestProgress(ctx, &rosterv1.RequestProgressRequest{ProgressId: "ahead"}); err != nil {
			t.Fatal(err)
		}
		var last uint64
		for i := 0; last <= start; i++ {
			w, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", uint32(i+2))})
			if err != nil {
				t.Fatal(err)
			}
			last = w.Revision
		}
		var bookmark bool
		for got := uint64(0); got < last || !bookmark; {
			m, err := recv()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case m.Reset_:
				t.Fatalf("a reset at %d for a watch from %d the node reached", m.Revision, start)
			case m.Progress:
				if bookmark {
					t.Fatalf("a second bookmark %v", m)
				}
				bookmark = true
				if m.Revision < start || m.Revision > m.Header.AppliedIndex {
					t.Fatalf("bookmark %v: want one between the start %d and the applied index", m, start)
				}
			default:
				for _, e := range m.Events {
					if e.Revision <= start || e.Revision <= got {
						t.Fatalf("event at %d from a watch from %d (after %d)", e.Revision, start, got)
					}
					got = e.Revision
				}
			}
		}
	})
}

// TestWatchFromBeyondTheNodeResets: a watch from a revision the node does
// not reach in time (one from another history: a dev node restarted, a
// cluster re-created) gets a reset of the node's state at its own
// revision, then the changes after it; bookmarks carry the node's own
// revision, never the start.
func TestWatchFromBeyondTheNodeResets(t *testing.T) {
	bothStreams(t, func(t *testing.T, many bool) {
		nd, ctx, reg := oneNodeWithWebA(t)
		waiting, expire := aheadHooks(nd)
		const start = 99_999_999_999
		recv, err := openWatch(ctx, nd, &rosterv1.WatchRequest{Service: "web", StartRevision: start, ProgressId: "beyond",
			ProgressInterval: durationpb.New(rpc.MaxProgressInterval)}, many)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(ctx, t, "the watch to wait for its start", waiting)
		if _, err := reg.RequestProgress(ctx, &rosterv1.RequestProgressRequest{ProgressId: "beyond"}); err != nil {
			t.Fatal(err)
		}
		// A change while it waits is in the reset.
		b, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "b", 2)})
		if err != nil {
			t.Fatal(err)
		}
		close(expire)
		m, err := recv()
		if err != nil {
			t.Fatal(err)
		}
		if !m.Reset_ || m.Revision < b.Revision || m.Revision >= start || len(m.Events) != 2 {
			t.Fatalf("first message %v: want a reset of web's two instances at the node's revision (at least %d)", m, b.Revision)
		}
		reset := m.Revision
		m, err = recv()
		if err != nil {
			t.Fatal(err)
		}
		wantBookmarkWithin(t, m, reset)
		w, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "c", 3)})
		if err != nil {
			t.Fatal(err)
		}
		m, err = recv()
		if err != nil || m.Reset_ || m.Progress || len(m.Events) != 1 || m.Events[0].Revision != w.Revision {
			t.Fatalf("after the reset: %v, %v; want the change at %d", m, err, w.Revision)
		}
	})
}

// oneNodeWithWebA is a single node holding web/a, a context that catches
// hangs only, and the node's Registry client.
func oneNodeWithWebA(t *testing.T) (*testcluster.Node, context.Context, rosterv1.RegistryClient) {
	t.Helper()
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.Nodes[0]
	c.WaitLeader()
	ctx, cancel := context.WithTimeout(testcluster.Ctx(t), 30*time.Second) // catches hangs only
	t.Cleanup(cancel)
	reg := nd.Registry()
	if _, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)}); err != nil {
		t.Fatal(err)
	}
	return nd, ctx, reg
}

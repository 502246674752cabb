package rpc_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestWatchBookmarkOnRequest: a stream named with progress_id sends a
// bookmark when RequestProgress asks, long before its interval, and only
// after every change it knows of.
func TestWatchBookmarkOnRequest(t *testing.T) {
	bothStreams(t, testBookmarkOnRequest)
}

func testBookmarkOnRequest(t *testing.T, many bool) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := c.Followers()[0]
	reg := f.Registry()
	first, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	// A watch is served from this node's own state: let it apply the write.
	if _, err := reg.GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
		Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: first.Revision}}); err != nil {
		t.Fatal(err)
	}
	recv, err := openWatch(ctx, f, &rosterv1.WatchRequest{Service: "web", ProgressId: "p-1",
		ProgressInterval: durationpb.New(10 * time.Minute)}, many)
	if err != nil {
		t.Fatal(err)
	}
	reset, err := recv()
	if err != nil || !reset.Reset_ || reset.Revision < first.Revision {
		t.Fatalf("first message %v %v: want a reset at or after %d", reset, err, first.Revision)
	}

	ask := func() {
		t.Helper()
		resp, err := reg.RequestProgress(ctx, &rosterv1.RequestProgressRequest{ProgressId: "p-1"})
		if err != nil || resp.Streams != 1 {
			t.Fatalf("RequestProgress: %v %v", resp, err)
		}
	}
	ask()
	m, err := recv()
	if err != nil || !m.Progress || m.Revision != reset.Revision || len(m.Events) != 0 {
		t.Fatalf("after a request: %v %v, want a bookmark at %d", m, err, reset.Revision)
	}

	second, err := c.WaitLeader().Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "b", 2)})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the follower has the write, so the bookmark must cover it.
	if _, err := reg.GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
		Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: second.Revision}}); err != nil {
		t.Fatal(err)
	}
	ask()
	var sawEvent bool
	for {
		m, err := recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.Progress {
			if !sawEvent || m.Revision < second.Revision {
				t.Fatalf("bookmark at %d before the event at %d was sent", m.Revision, second.Revision)
			}
			break
		}
		for _, e := range m.Events {
			if e.Revision == second.Revision {
				sawEvent = true
			}
		}
	}

	_, err = reg.RequestProgress(ctx, &rosterv1.RequestProgressRequest{ProgressId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown progress_id: %v, want NotFound", err)
	}
	_, err = reg.RequestProgress(ctx, &rosterv1.RequestProgressRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty progress_id: %v, want InvalidArgument", err)
	}
}

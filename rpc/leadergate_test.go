package rpc_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// TestWatchRequiringALeaderEndsOnANodeCutOff: a node cut off from the
// majority knows no leader; after the leaderless timeout it ends the watch
// streams that require one with Unavailable NO_LEADER, and refuses new
// ones, so that their clients resume on a node that sees the changes. A
// stream that does not ask goes on, and hears the changes once the node is
// back.
func TestWatchRequiringALeaderEndsOnANodeCutOff(t *testing.T) {
	bothStreams(t, func(t *testing.T, many bool) {
		c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
			o.Watch.LeaderlessTimeout = 200 * time.Millisecond
		}})
		c.WaitMembersKnown()
		ctx := testcluster.Ctx(t)
		f := c.Followers()[0]
		req := &rosterv1.WatchRequest{Service: "web"}
		requiring := metadata.AppendToOutgoingContext(ctx, rpc.RequireLeaderKey, "true")
		strict, err := openWatch(requiring, f, req, many)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := openWatch(ctx, f, req, many)
		if err != nil {
			t.Fatal(err)
		}
		for _, recv := range []func() (*rosterv1.WatchResponse, error){strict, plain} {
			if _, err := recv(); err != nil { // the reset
				t.Fatal(err)
			}
		}

		c.Partition(f)
		for {
			_, err := strict()
			if err == nil {
				continue // bookmarks from the node's own state
			}
			if status.Code(err) != codes.Unavailable || rpc.Reason(err) != rpc.ReasonNoLeader {
				t.Fatalf("the watch requiring a leader ended with %v; want Unavailable, reason %s", err, rpc.ReasonNoLeader)
			}
			break
		}
		again, err := openWatch(requiring, f, req, many)
		if err == nil {
			_, err = again()
		}
		if status.Code(err) != codes.Unavailable || rpc.Reason(err) != rpc.ReasonNoLeader {
			t.Fatalf("a watch requiring a leader opened on a node without one: %v; want Unavailable, reason %s", err, rpc.ReasonNoLeader)
		}

		c.Heal()
		resp, err := c.WaitLeader().Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)})
		if err != nil {
			t.Fatal(err)
		}
		for {
			m, err := plain()
			if err != nil {
				t.Fatalf("the watch that did not ask for a leader: %v", err)
			}
			if m.Header.GetRevision() >= resp.Revision && len(m.Events) > 0 {
				break
			}
		}
	})
}

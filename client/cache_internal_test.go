package client

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// errTokenNotFound is how a node refuses a token it has not applied yet.
var errTokenNotFound = status.Error(codes.PermissionDenied, "permission denied: ACL token not found")

// TestCacheRetriesARefusedToken: a node that has not yet applied a new ACL
// token refuses it. While every endpoint does, lookups fail with the
// refusal; the cache keeps trying and serves the list once the token is
// accepted, without a new client.
func TestCacheRetriesARefusedToken(t *testing.T) {
	st := newFakeState()
	st.appendRevisions(1, 1)
	f := startFake(t, st)
	f.setFail("Watch", errTokenNotFound)
	c := newTestClient(t, f.addr)
	sub, err := c.Subscribe("web")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	if _, err := c.Instances(testContext(t), "web", IncludeUnhealthy()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("lookup while every endpoint refuses the token: %v, want PermissionDenied", err)
	}
	if status.Code(sub.Err()) != codes.PermissionDenied {
		t.Fatalf("subscription error while refused: %v, want PermissionDenied", sub.Err())
	}

	f.setFail("Watch", nil) // the node has applied the token
	deadline := time.After(15 * time.Second)
	for {
		insts, err := c.Instances(testContext(t), "web", IncludeUnhealthy())
		if err == nil && len(insts) == 1 {
			break
		}
		select {
		case <-sub.Changed():
		case <-deadline:
			t.Fatalf("the cache never recovered from the refusal: %d instances, %v", len(insts), err)
		}
	}
	if err := sub.Err(); err != nil {
		t.Fatalf("subscription error after the token was accepted: %v", err)
	}
}

// TestWatchMovesOnFromARefusingNode: one node's refusal of the token moves
// a Watch to the next endpoint; a refusal from every endpoint ends it.
func TestWatchMovesOnFromARefusingNode(t *testing.T) {
	st := newFakeState()
	st.appendRevisions(1, 2)
	lagging, current := startFake(t, st), startFake(t, st)
	lagging.setFail("Watch", errTokenNotFound)
	c := newTestClient(t, lagging.addr, current.addr)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	out, errc := collectWatch(ctx, c, &rosterv1.WatchRequest{Service: "web"})
	expectRevisions(t, out, errc, 1, 2)
	cancel()

	current.setFail("Watch", errTokenNotFound)
	_, errc = collectWatch(testContext(t), c, &rosterv1.WatchRequest{Service: "web"})
	select {
	case err := <-errc:
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("watch refused by every endpoint ended with %v, want PermissionDenied", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a watch refused by every endpoint did not end")
	}
}

// TestCacheLookupContextErrorIsAStatus: a lookup whose context ends first
// returns a gRPC status, as every other call does.
func TestCacheLookupContextErrorIsAStatus(t *testing.T) {
	c := newTestClient(t, deadAddr(t))
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now())
	defer cancel2()
	for _, tt := range []struct {
		ctx  context.Context
		want codes.Code
	}{{canceled, codes.Canceled}, {expired, codes.DeadlineExceeded}} {
		if _, err := c.Instances(tt.ctx, "web"); status.Code(err) != tt.want {
			t.Fatalf("lookup: %v (code %v), want %v", err, status.Code(err), tt.want)
		}
	}
}

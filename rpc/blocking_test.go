package rpc_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

type getResult struct {
	resp *rosterv1.GetServiceResponse
	err  error
}

// blockingRead starts a blocking GetService of web on nd at wait_revision
// rev and returns once it waits; its result arrives on the channel. ctx's
// deadline only catches hangs.
func blockingRead(ctx context.Context, t *testing.T, nd *testcluster.Node, rev uint64, read *rosterv1.ReadOptions, waiting <-chan uint64) <-chan getResult {
	t.Helper()
	done := make(chan getResult, 1)
	go func() {
		resp, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web", Read: read,
			WaitRevision: rev, WaitTimeout: durationpb.New(rpc.MaxWaitTimeout)})
		done <- getResult{resp, err}
	}()
	select {
	case <-waiting:
	case r := <-done:
		select {
		case <-waiting: // it waited, and the wait is already over
			done <- r
		default:
			t.Fatalf("blocking read returned before it waited: %v, %v", r.resp, r.err)
		}
	}
	return done
}

// TestDrainEndsABlockingRead: a blocking GetService ends as soon as its node
// drains, with the service's current state as a wait that ran out answers,
// instead of holding the node's shutdown for the rest of its wait.
func TestDrainEndsABlockingRead(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.Nodes[0]
	c.WaitLeader()
	ctx, cancel := context.WithTimeout(testcluster.Ctx(t), 30*time.Second) // catches hangs only
	defer cancel()
	w, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan uint64, 16)
	rpc.SetReadHooks(nd.Server, rpc.ReadHooks{
		WaitTimer: func(time.Duration) <-chan time.Time { return nil }, // the wait never runs out
		Waiting:   func(rev uint64) { waiting <- rev },
	})
	for _, read := range []*rosterv1.ReadOptions{nil, stale} {
		done := blockingRead(ctx, t, nd, w.Revision, read, waiting)
		if read == nil {
			nd.Server.Drain()
		}
		r := <-done
		if r.err != nil {
			t.Fatalf("blocking read (consistency %v) ended by the drain: %v; want the current state", read.GetConsistency(), r.err)
		}
		if r.resp.ServiceRevision != w.Revision || len(r.resp.Instances) != 1 || r.resp.Header.Revision < w.Revision {
			t.Fatalf("blocking read ended by the drain answered %v; want web at %d", r.resp, w.Revision)
		}
	}
}

// TestABlockingReadThatRunsOutReadsAtItsConsistency: when the wait of a
// default (linearizable) blocking GetService runs out on a node that has
// lost its quorum meanwhile, it fails Unavailable as the same read without
// a wait does, instead of answering the node's local state; a stale one
// answers the local state.
func TestABlockingReadThatRunsOutReadsAtItsConsistency(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) { o.HoldTimeout = time.Second }})
	c.WaitMembersKnown()
	ctx, cancel := context.WithTimeout(testcluster.Ctx(t), 60*time.Second) // catches hangs only
	defer cancel()
	leader := c.WaitLeader()
	f := c.Followers()[0]
	w, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
		Read: &rosterv1.ReadOptions{MinRevision: w.Revision}}); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan uint64, 16)
	expire := make(chan time.Time)
	rpc.SetReadHooks(f.Server, rpc.ReadHooks{
		WaitTimer: func(time.Duration) <-chan time.Time { return expire },
		Waiting:   func(rev uint64) { waiting <- rev },
	})
	done := blockingRead(ctx, t, f, w.Revision, nil, waiting)
	for _, nd := range c.Nodes {
		if nd != f {
			c.Stop(nd)
		}
	}
	c.Eventually(f.ID+" to know no leader", 10*time.Second, func() bool { id, _ := f.Node.Leader(); return id == "" })
	close(expire)
	r := <-done
	if status.Code(r.err) != codes.Unavailable {
		t.Fatalf("linearizable blocking read that ran out without a quorum: %v, %v; want Unavailable", r.resp, r.err)
	}
	_, plain := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
	if status.Code(plain) != codes.Unavailable {
		t.Fatalf("linearizable read without a quorum: %v; want Unavailable", plain)
	}
	// Stale: the local state, the wait having run out at once.
	resp, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web", Read: stale,
		WaitRevision: w.Revision, WaitTimeout: durationpb.New(time.Minute)})
	if err != nil || resp.ServiceRevision != w.Revision || len(resp.Instances) != 1 {
		t.Fatalf("stale blocking read that ran out: %v, %v; want web at %d", resp, err, w.Revision)
	}
}

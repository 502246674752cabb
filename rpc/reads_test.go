package rpc_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

var stale = &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE}

func TestFollowerLinearizableReadsShareLeaderRounds(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	w, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	const readers = 100
	before := f.Server.ReadIndexRounds()
	start := make(chan struct{})
	errs := make(chan error, readers)
	var wg sync.WaitGroup
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
			switch {
			case err != nil:
				errs <- err
			case len(got.Instances) != 1 || got.Header.Revision < w.Revision:
				errs <- fmt.Errorf("linearizable read on a follower missed revision %d: %v", w.Revision, got)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rounds := f.Server.ReadIndexRounds() - before
	t.Logf("%d concurrent linearizable reads on a follower took %d leader round trips", readers, rounds)
	if rounds == 0 || rounds >= readers {
		t.Fatalf("%d reads took %d leader round trips; concurrent reads must share rounds", readers, rounds)
	}
}

// TestLinearizableReadWithoutLeaderSaysNoLeader: a linearizable read on a
// node left without a quorum fails, once the hold timeout is spent, as
// Unavailable with reason NO_LEADER, the same answer a write gets, not as a
// bare deadline error that hides why.
func TestLinearizableReadWithoutLeaderSaysNoLeader(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) { o.HoldTimeout = time.Second }})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()
	c.Stop(leader)
	c.Stop(f[0])
	left := f[1]
	_, err := left.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
	if status.Code(err) != codes.Unavailable || rpc.Reason(err) != rpc.ReasonNoLeader {
		t.Fatalf("linearizable read without a leader: %v (code %s, reason %q); want Unavailable, reason %s",
			err, status.Code(err), rpc.Reason(err), rpc.ReasonNoLeader)
	}
	if _, err := left.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web", Read: stale}); err != nil {
		t.Fatalf("a stale read without a leader: %v", err)
	}
}

func TestStaleReadReportsLag(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("follower applies the write", 10*time.Second, func() bool {
		got, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web", Read: stale})
		return err == nil && len(got.Instances) == 1
	})
	c.Partition(f)
	w, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 2)})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the follower's silence shows in the header, then check
	// the stale answer says how old it is.
	var h *rosterv1.ResponseHeader
	c.Eventually("last contact grows on the partitioned follower", 10*time.Second, func() bool {
		got, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web", Read: stale})
		if err != nil {
			t.Fatal(err)
		}
		if got.Instances[0].Port != 1 {
			t.Fatalf("partitioned follower saw a write it cannot have: %v", got.Instances)
		}
		h = got.Header
		return h.LastContact.AsDuration() > 200*time.Millisecond
	})
	if h.Revision >= w.Revision || h.AppliedIndex > h.CommitIndex || h.NodeId != f.ID {
		t.Fatalf("stale header %v: revision must trail the write at %d, applied must not pass commit", h, w.Revision)
	}
	lh, err := leader.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web", Read: stale})
	if err != nil {
		t.Fatal(err)
	}
	if lh.Header.LastContact != nil || lh.Header.CommitIndex <= h.CommitIndex {
		t.Fatalf("leader header %v vs follower %v: the leader has no last contact and a later commit index", lh.Header, h)
	}
	c.Heal(f)
}

func TestMinRevisionReadYourWritesOnEveryNode(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	for i := 0; i < 30; i++ {
		via := c.Nodes[i%3]
		w, err := via.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", uint32(i+1))})
		if err != nil {
			t.Fatal(err)
		}
		for _, nd := range c.Nodes {
			got, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
				Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: w.Revision}})
			if err != nil {
				t.Fatalf("read on %s at min_revision %d: %v", nd.ID, w.Revision, err)
			}
			if len(got.Instances) != 1 || got.Instances[0].Port != uint32(i+1) || got.Header.Revision < w.Revision {
				t.Fatalf("write %d through %s not visible on %s at min_revision %d: %v (header %v)",
					i, via.ID, nd.ID, w.Revision, got.Instances, got.Header)
			}
		}
	}
}

func TestBlockingQueryReturnsWhenTheServiceChanges(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	w, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
	if err != nil || first.ServiceRevision != w.Revision {
		t.Fatalf("service revision %d, %v; want %d", first.GetServiceRevision(), err, w.Revision)
	}
	type result struct {
		resp *rosterv1.GetServiceResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
			WaitRevision: first.ServiceRevision, WaitTimeout: durationpb.New(time.Minute)})
		done <- result{resp, err}
	}()
	// Changes to another service do not wake it with a wrong answer.
	if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("api", "a", 1)}); err != nil {
		t.Fatal(err)
	}
	w2, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "b", 2)})
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.resp.ServiceRevision != w2.Revision || len(r.resp.Instances) != 2 {
		t.Fatalf("blocking query returned %v, %v; want the change at %d", r.resp, r.err, w2.Revision)
	}
	// With nothing changing, it answers at its timeout with the same revision.
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	same, err := f.Registry().GetService(tctx, &rosterv1.GetServiceRequest{Service: "web",
		WaitRevision: w2.Revision, WaitTimeout: durationpb.New(200 * time.Millisecond)})
	if err != nil || same.ServiceRevision != w2.Revision {
		t.Fatalf("blocking query at its timeout: %v, %v", same, err)
	}
}

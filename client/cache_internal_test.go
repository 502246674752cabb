package client

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

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

// TestCacheEmptyListGraceRunsOnTheClock: an update that would leave the
// service with no healthy instance is held for the grace period of the
// client's clock, and applied when it ends; a healthy update before then
// ends the hold and its timer.
func TestCacheEmptyListGraceRunsOnTheClock(t *testing.T) {
	const grace = time.Minute
	fx := newGraceFixture(t, grace)
	st, clk, sub, ids, healthy := fx.st, fx.clk, fx.sub, fx.ids, healthyWeb

	for round, end := range []string{"grace", "healthy update"} {
		id := fmt.Sprintf("w%d", round+1)
		st.appendEvent(rosterv1.Event_TYPE_DELETE, healthy(id))
		waitFor(t, "the empty update to be held", func() bool { return sub.Service().Held })
		start := clk.Now()
		if due := clk.pending(); len(due) != 1 || !due[0].Equal(start.Add(grace)) {
			t.Fatalf("round %d: held at %s with timers due at %v on the client's clock, want one at %s",
				round, start, due, start.Add(grace))
		}
		clk.Advance(grace - time.Nanosecond)
		if s := sub.Service(); !s.Held || !slices.Equal(ids(), []string{id}) {
			t.Fatalf("round %d: %s into a %s grace: held %v, instances %v; want [%s] held", round, grace-time.Nanosecond, grace, s.Held, ids(), id)
		}
		// Drain the signals so far: the next one is the hold's end.
		select {
		case <-sub.Changed():
		default:
		}
		switch end {
		case "grace":
			clk.Advance(time.Nanosecond)
			if s := sub.Service(); s.Held || len(s.Instances) != 0 {
				t.Fatalf("after the grace period: held %v, instances %v; want the empty list applied", s.Held, ids())
			}
			select {
			case <-sub.Changed():
			default:
				t.Fatal("the subscription was not told the held update was applied")
			}
			// Back to one healthy instance for the next round.
			st.appendEvent(rosterv1.Event_TYPE_PUT, healthy("w2"))
			waitFor(t, "the healthy instance back", func() bool { return slices.Equal(ids(), []string{"w2"}) })
		case "healthy update":
			st.appendEvent(rosterv1.Event_TYPE_PUT, healthy("w3"))
			waitFor(t, "the healthy update", func() bool { return slices.Equal(ids(), []string{"w3"}) })
			if s := sub.Service(); s.Held {
				t.Fatal("still held after an update with a healthy instance")
			}
			if due := clk.pending(); len(due) != 0 {
				t.Fatalf("the hold's timer is still armed (due %v) after it ended", due)
			}
		}
	}
}

// TestCacheLateHoldTimerLeavesTheNextHold forces the interleaving where
// the timer of a hold fires just as a healthy update ends that hold, and
// the service is emptied again (a second hold) before the timer's function
// runs: the second hold must get its whole grace period.
func TestCacheLateHoldTimerLeavesTheNextHold(t *testing.T) {
	const grace = time.Minute
	fx := newGraceFixture(t, grace)
	st, clk, sub, ids, healthy := fx.st, fx.clk, fx.sub, fx.ids, healthyWeb
	st.appendEvent(rosterv1.Event_TYPE_DELETE, healthy("w1"))
	waitFor(t, "the first hold", func() bool { return sub.Service().Held })

	hook := func(*serviceCache) {
		beforeRelease.Store(nil)
		// The first hold's timer has fired: a healthy instance ends the
		// hold, and its removal starts a second one.
		st.appendEvent(rosterv1.Event_TYPE_PUT, healthy("w2"))
		waitFor(t, "the healthy update", func() bool { return slices.Equal(ids(), []string{"w2"}) })
		st.appendEvent(rosterv1.Event_TYPE_DELETE, healthy("w2"))
		waitFor(t, "the second hold", func() bool { return sub.Service().Held })
	}
	beforeRelease.Store(&hook)
	t.Cleanup(func() { beforeRelease.Store(nil) })
	clk.Advance(grace)
	if s := sub.Service(); !s.Held || !slices.Equal(ids(), []string{"w2"}) {
		t.Fatalf("the first hold's timer ended the second hold at once: held %v, instances %v", s.Held, ids())
	}
	clk.Advance(grace)
	if s := sub.Service(); s.Held || len(s.Instances) != 0 {
		t.Fatalf("after the second hold's grace period: held %v, instances %v; want the empty list", s.Held, ids())
	}
}

// TestCacheHeldUpdateNotAppliedAfterClose: a hold whose grace period ends
// after the client was closed applies nothing: the subscription keeps its
// list, and the cache dir keeps the last list.
func TestCacheHeldUpdateNotAppliedAfterClose(t *testing.T) {
	const grace = time.Minute
	dir := t.TempDir()
	fx := newGraceFixture(t, grace, WithCacheDir(dir))
	st, clk, c, sub := fx.st, fx.clk, fx.c, fx.sub
	saved := func() string {
		var all []string
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := os.ReadFile(path)
				all = append(all, path+"="+string(b))
			}
			return nil
		})
		return strings.Join(all, ";")
	}
	waitFor(t, "the list saved", func() bool { return strings.Contains(saved(), "w1") })
	st.appendEvent(rosterv1.Event_TYPE_DELETE, healthyWeb("w1"))
	waitFor(t, "the empty update to be held", func() bool { return sub.Service().Held })
	before := saved()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(grace)
	if s := sub.Service(); len(s.Instances) != 1 {
		t.Fatalf("after Close and the grace period: %d instances, want the list as it was", len(s.Instances))
	}
	if after := saved(); after != before {
		t.Fatalf("the cache dir changed after Close:\nbefore %s\nafter  %s", before, after)
	}
}

// TestCacheResetBelowItsRevision: a reset is the state at its revision,
// which may be below the last one seen (a cluster rebuilt without its
// history); the service's revision follows it down.
func TestCacheResetBelowItsRevision(t *testing.T) {
	st := newFakeState()
	healthy := healthyWeb
	for _, id := range []string{"w1", "w2", "w3"} {
		st.appendEvent(rosterv1.Event_TYPE_PUT, healthy(id))
	}
	f := startFake(t, st)
	c, err := New(context.Background(), []string{f.addr}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sub, err := c.Subscribe("web")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitFor(t, "the first list", func() bool { return sub.Service().Revision == 3 })
	c.discovery.mu.Lock()
	e := c.discovery.services[serviceKey{namespace: DefaultNamespace, service: "web"}]
	c.discovery.mu.Unlock()
	w9 := healthy("w9")
	w9.ModRevision = 1
	e.apply(&rosterv1.WatchResponse{Reset_: true, Revision: 1, Events: []*rosterv1.Event{{Type: rosterv1.Event_TYPE_PUT, Revision: 1, Instance: w9}}})
	if s := sub.Service(); s.Revision != 1 || len(s.Instances) != 1 || s.Instances[0].GetId() != "w9" {
		t.Fatalf("after a reset at revision 1: revision %d, %d instances; want revision 1 with w9 only", s.Revision, len(s.Instances))
	}
}

// healthyWeb is a passing, enabled instance id of service web.
func healthyWeb(id string) *rosterv1.Instance {
	return &rosterv1.Instance{Namespace: DefaultNamespace, Service: "web", Id: id, Enabled: true,
		Status: rosterv1.HealthStatus_HEALTH_STATUS_PASSING}
}

// graceFixture is a client of a fake cluster holding web with one healthy
// instance, w1, subscribed to web, with an empty-list grace on a fake
// clock and no idle eviction (the hold's is the only timer on the clock).
type graceFixture struct {
	st  *fakeState
	clk *fakeClock
	c   *Client
	sub *Subscription
}

func newGraceFixture(t *testing.T, grace time.Duration, opts ...Option) *graceFixture {
	t.Helper()
	fx := &graceFixture{st: newFakeState(), clk: newFakeClock()}
	fx.st.appendEvent(rosterv1.Event_TYPE_PUT, healthyWeb("w1"))
	f := startFake(t, fx.st)
	opts = append([]Option{WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond),
		WithEmptyListGrace(grace), WithCacheIdleTimeout(0), func(o *options) { o.discovery.clock = fx.clk }}, opts...)
	var err error
	if fx.c, err = New(context.Background(), []string{f.addr}, opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.c.Close() })
	if fx.sub, err = fx.c.Subscribe("web"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fx.sub.Close)
	waitFor(t, "the first list", func() bool { return slices.Equal(fx.ids(), []string{"w1"}) })
	return fx
}

// ids are the ids of the instances the subscription serves.
func (fx *graceFixture) ids() []string {
	var out []string
	for _, inst := range fx.sub.Service().Instances {
		out = append(out, inst.GetId())
	}
	return out
}

// TestCacheStaleAndAgeOnTheClock: a list's age, and whether it is stale
// (silent for more than staleAfter), are measured on the client's clock,
// from the last message of the service's watch.
func TestCacheStaleAndAgeOnTheClock(t *testing.T) {
	fx := newGraceFixture(t, time.Minute)
	check := func(when string, age time.Duration, stale bool) {
		t.Helper()
		s, err := fx.c.CachedService(testContext(t), "web")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []CachedService{s, fx.sub.Service()} {
			if s.Age() != age || s.Stale != stale {
				t.Fatalf("%s: age %s, stale %v; want %s, %v", when, s.Age(), s.Stale, age, stale)
			}
		}
	}
	check("at the first list", 0, false)
	fx.clk.Advance(staleAfter)
	check("silent for staleAfter", staleAfter, false)
	fx.clk.Advance(time.Millisecond)
	check("silent past staleAfter", staleAfter+time.Millisecond, true)
	fx.st.appendEvent(rosterv1.Event_TYPE_PUT, healthyWeb("w2"))
	waitFor(t, "the second instance", func() bool { return slices.Equal(fx.ids(), []string{"w1", "w2"}) })
	check("at a new message", 0, false)
}

// TestCachePersistedListWaitsOnTheClock: the first lookup of a service
// with a list in the cache dir, while no node answers, waits
// persistedStartWait on the client's clock for the cluster, and then
// serves the persisted list, stale.
func TestCachePersistedListWaitsOnTheClock(t *testing.T) {
	dir := t.TempDir()
	b, err := protojson.Marshal(&rosterv1.GetServiceResponse{Instances: []*rosterv1.Instance{healthyWeb("w1")}, ServiceRevision: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, DefaultNamespace, "web.json"), b); err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	c, err := New(context.Background(), []string{deadAddr(t)}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond),
		WithCacheDir(dir), WithCacheIdleTimeout(0), func(o *options) { o.discovery.clock = clk })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	type result struct {
		s   CachedService
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := c.CachedService(testContext(t), "web")
		done <- result{s, err}
	}()
	due := clk.Now().Add(persistedStartWait)
	waitFor(t, "the lookup waiting on the clock", func() bool {
		select {
		case r := <-done:
			t.Fatalf("lookup answered (%v) while the clock stood still", r.err)
		default:
		}
		return slices.Contains(clk.pending(), due)
	})
	clk.Advance(persistedStartWait - time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("lookup answered (%v) %s into a wait of %s", r.err, persistedStartWait-time.Millisecond, persistedStartWait)
	default:
	}
	clk.Advance(time.Millisecond)
	var r result
	select {
	case r = <-done:
	case <-testContext(t).Done():
		t.Fatal("lookup still waiting once the clock has passed the wait")
	}
	if r.err != nil || r.s.Revision != 5 || len(r.s.Instances) != 1 || !r.s.Stale {
		t.Fatalf("lookup: revision %d, %d instances, stale %v, %v; want the persisted list at 5, stale", r.s.Revision, len(r.s.Instances), r.s.Stale, r.err)
	}
}

// TestCacheDirStaysInItsDirectory: a namespace that is a path step ("..",
// which no cluster accepts) reads no list from outside the cache dir: the
// lookup fails with the cluster's refusal of the name instead of serving
// a file it happens to find there.
func TestCacheDirStaysInItsDirectory(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "cache")
	b, err := protojson.Marshal(&rosterv1.GetServiceResponse{Instances: []*rosterv1.Instance{healthyWeb("w1")}, ServiceRevision: 5})
	if err != nil {
		t.Fatal(err)
	}
	// What ".." would lead to, and what "." would.
	if err := writeFileAtomic(filepath.Join(parent, "web.json"), b); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "web.json"), b); err != nil {
		t.Fatal(err)
	}
	f := startFake(t, newFakeState())
	f.setFail("Watch", status.Error(codes.InvalidArgument, `namespace ".." must be a lowercase DNS label`))
	c, err := New(context.Background(), []string{f.addr}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond),
		WithCacheDir(dir), WithCacheIdleTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, ns := range []string{"..", "."} {
		insts, err := c.Instances(testContext(t), "web", InNamespace(ns))
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("lookup in namespace %q: %d instances, %v; want the cluster's InvalidArgument", ns, len(insts), err)
		}
	}
}

// TestCacheDegradedStartOfAnEmptyClusterResumesOnALeader: a cluster
// without quorum that has never been written to (revision 0) gives the
// cache a degraded first list at revision 0. The stream after it must
// require a leader, as after any degraded start: had it gone on starting
// from a node's own state, every such stream would end at once, after its
// reset, and the next open without a pause, for as long as there is no
// quorum, each reset making the list look fresh.
func TestCacheDegradedStartOfAnEmptyClusterResumesOnALeader(t *testing.T) {
	f := startFake(t, newFakeState())
	f.mu.Lock()
	f.noLeader, f.resetFirst = true, true
	f.mu.Unlock()
	c := newTestClient(t, f.addr)
	if _, err := c.Instances(testContext(t), "web"); err != nil {
		t.Fatalf("first lookup without quorum: %v", err)
	}
	var leader []bool
	waitFor(t, "a stream after the degraded first list", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		leader = slices.Clone(f.watchLeader)
		return len(leader) >= 3
	})
	// The refused linearizable start, the degraded one, then the next.
	if !leader[0] || leader[1] || !leader[2] {
		t.Fatalf("streams requiring a leader: %v; want the one after the degraded start to require one", leader[:3])
	}
}

// TestCacheKeepsItsListWhileTheWatchFails: a service whose list is known
// when every endpoint starts failing its watch keeps answering lookups
// with that list, as during an outage, marked Stale once the cluster has
// been silent past staleAfter; Subscription.Err reports the failure
// meanwhile, and the first message from a node that serves the watch again
// clears it. The failures: the client's token refused (deleted, say), and
// what a proxy or load balancer in front of the cluster answers while it
// is redeployed (grpc-go reads an HTTP 500 as Unknown, a 404 as
// Unimplemented), which no Roster node sends for a watch. The entry must
// not die of any of them, leaving its lookups and subscribers with a
// frozen list for the life of the process.
func TestCacheKeepsItsListWhileTheWatchFails(t *testing.T) {
	for _, tt := range []struct {
		name string
		// fail is what each new stream meets, cut what ends the open one.
		fail, cut error
	}{
		{"token refused", errTokenNotFound,
			status.Error(codes.PermissionDenied, "permission denied: ACL token not found: it was deleted while this stream was open")},
		{"proxy 500", status.Error(codes.Unknown, "unexpected HTTP status code received from server: 500 (Internal Server Error)"), nil},
		{"proxy 404", status.Error(codes.Unimplemented, "unexpected HTTP status code received from server: 404 (Not Found)"), nil},
		{"proxy FailedPrecondition", status.Error(codes.FailedPrecondition, "upstream not ready"), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cut == nil {
				tt.cut = tt.fail
			}
			st := newFakeState()
			st.appendRevisions(1, 1)
			f := startFake(t, st)
			clk := newFakeClock()
			c := newFakeClockClient(t, clk, f.addr)
			sub, err := c.Subscribe("web", IncludeUnhealthy())
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			if insts, err := c.Instances(testContext(t), "web", IncludeUnhealthy()); err != nil || len(insts) != 1 {
				t.Fatalf("first lookup: %d instances, %v", len(insts), err)
			}

			f.setFail("Watch", tt.fail)
			f.cut <- tt.cut
			waitFor(t, "the failure reported", func() bool { return status.Code(sub.Err()) == status.Code(tt.fail) })
			insts, err := c.Instances(testContext(t), "web", IncludeUnhealthy())
			if err != nil || len(insts) != 1 {
				t.Fatalf("lookup while every endpoint fails the watch: %d instances, %v; want the last list", len(insts), err)
			}
			clk.Advance(staleAfter + time.Second)
			if s := sub.Service(); !s.Stale || len(s.Instances) != 1 {
				t.Fatalf("list while every endpoint fails the watch: stale %v, %d instances; want the last list, stale", s.Stale, len(s.Instances))
			}

			f.setFail("Watch", nil)
			st.appendRevisions(2, 2)
			waitFor(t, "the cluster's messages again", func() bool {
				s := sub.Service()
				return sub.Err() == nil && !s.Stale && s.Revision == 2
			})
		})
	}
}

// TestCacheKeepsWatchManyThroughAProxy404: a proxy in front of the cluster
// answering 404 while it is redeployed (grpc-go reads it as Unimplemented)
// says nothing of the servers behind it. The endpoint must keep its shared
// WatchMany stream, as the cache's watch retries the failure, instead of
// taking the proxy for a server without WatchMany and giving every watch
// a stream of its own for the life of the client.
func TestCacheKeepsWatchManyThroughAProxy404(t *testing.T) {
	st := newFakeState()
	st.appendRevisions(1, 1)
	f := startFake(t, st)
	f.mu.Lock()
	f.watchMany = true
	f.mu.Unlock()
	proxy404 := status.Error(codes.Unimplemented, "unexpected HTTP status code received from server: 404 (Not Found); transport: received unexpected content-type \"text/plain\"")
	f.setFail("WatchMany", proxy404)
	c := newTestClient(t, f.addr)
	sub, err := c.Subscribe("web")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitFor(t, "the proxy's 404 reported", func() bool { return status.Code(sub.Err()) == codes.Unimplemented })

	f.setFail("WatchMany", nil)
	waitFor(t, "the list", func() bool { return sub.Err() == nil && sub.Service().Revision == 1 })
	if n := f.count("Watch"); n != 0 {
		t.Fatalf("%d Watch streams of their own opened after a proxy's 404; want the shared WatchMany stream only", n)
	}
}

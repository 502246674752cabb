package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/checker"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
	"github.com/roster-registry/roster/store"
)

var services = []string{"web", "api", "db", "cache", "queue"}

func longCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitAll waits until every recorder has received everything up to rev.
func waitAll(c *testcluster.Cluster, rev uint64, recs ...*recorder) {
	c.Eventually(fmt.Sprintf("every watcher reaches revision %d", rev), 60*time.Second, func() bool {
		for _, r := range recs {
			if !r.reached(rev) {
				return false
			}
		}
		return true
	})
}

func TestWatchInvariantsUnderRandomWrites(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := longCtx(t, 3*time.Minute)
	leader, fs := c.WaitLeader(), c.Followers()
	recs := []*recorder{
		startRecorder(t, c, "leader-all", leader, &rosterv1.WatchRequest{}),
		startRecorder(t, c, "follower1-all", fs[0], &rosterv1.WatchRequest{}),
		startRecorder(t, c, "follower2-web", fs[1], &rosterv1.WatchRequest{Service: "web"}),
		startRecorder(t, c, "follower1-healthy", fs[0], &rosterv1.WatchRequest{HealthyOnly: true}),
		startRecorder(t, c, "follower2-api-healthy", fs[1], &rosterv1.WatchRequest{Service: "api", HealthyOnly: true}),
		// The same over WatchMany, where a caught-up watch is read for
		// by its stream's group. The first sees every write, so it needs
		// no bookmarks to show it has caught up: with none due for 10
		// minutes, a watch the group failed to read on for would stall
		// instead of catching up at its next bookmark.
		startManyRecorder(t, c, "many-leader-all", leader, &rosterv1.WatchRequest{ProgressInterval: durationpb.New(10 * time.Minute)}),
		startManyRecorder(t, c, "many-follower1-web", fs[0], &rosterv1.WatchRequest{Service: "web"}),
		startManyRecorder(t, c, "many-follower2-healthy", fs[1], &rosterv1.WatchRequest{HealthyOnly: true}),
	}
	w := newWorkload(c, services, 10) // 50 keys
	w.run(t, ctx, 6, 1000, 1)
	// A watcher that joins half-way, from a revision in the history.
	recs = append(recs, startRecorder(t, c, "follower2-from-mid", fs[1], &rosterv1.WatchRequest{StartRevision: w.maxRev / 2}))
	w.run(t, ctx, 6, 1000, 2)

	final := finalLists(t, ctx, leader, services)
	waitAll(c, max(maxRevision(final), w.maxRev), recs...)
	h := &checker.History{Ops: w.history(), Final: final}
	for _, r := range recs {
		h.Watches = append(h.Watches, r.result())
	}
	res := checkW(t, h)
	ok := 0
	for _, op := range h.Ops {
		if op.Outcome == checker.OutcomeOK {
			ok++
		}
	}
	if ok < 1000 {
		t.Fatalf("only %d of %d writes succeeded; the run proves little", ok, len(h.Ops))
	}
	t.Logf("%d ops (%d acknowledged), %s", len(h.Ops), ok, res.Short)
}

// readUntil reads one stream until it has completed revision rev and
// returns what it received as a subscription.
func readUntil(t testing.TB, ctx context.Context, nd *testcluster.Node, req *rosterv1.WatchRequest, rev uint64) checker.Subscription {
	t.Helper()
	sub := checker.Subscription{StartRevision: req.StartRevision, Node: nd.ID, Time: now()}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := nd.Registry().Watch(ctx, req)
	if err != nil {
		t.Fatalf("watch on %s: %v", nd.ID, err)
	}
	var last uint64
	for last < rev {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch on %s from %d: %v after %d messages (last revision %d, want %d)",
				nd.ID, req.StartRevision, err, len(sub.Messages), last, rev)
		}
		m := toMessage(resp)
		sub.Messages = append(sub.Messages, m)
		last = max(last, m.Revision)
	}
	return sub
}

// writes registers n instances of svc through nd and records the calls.
func writes(t testing.TB, ctx context.Context, nd *testcluster.Node, svc string, from, n int) ([]checker.Op, uint64) {
	t.Helper()
	var ops []checker.Op
	var rev uint64
	for i := from; i < from+n; i++ {
		inst := &rosterv1.Instance{Service: svc, Id: fmt.Sprintf("i%d", i%7), Address: "10.9.9.9", Port: uint32(i + 1)}
		op := checker.Op{Kind: checker.KindRegister, Key: eventKey(&rosterv1.Instance{Namespace: "default", Service: svc, Id: inst.Id}), Value: value(inst), Call: now()}
		resp, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: inst})
		if err != nil {
			t.Fatalf("register %d through %s: %v", i, nd.ID, err)
		}
		op.Return, op.Outcome, op.Revision = now(), checker.OutcomeOK, resp.Revision
		ops = append(ops, op)
		rev = resp.Revision
	}
	return ops, rev
}

func TestWatchResumeAfterCancel(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	ops, rev := writes(t, ctx, leader, "web", 0, 20)
	first := readUntil(t, ctx, f, &rosterv1.WatchRequest{Service: "web"}, rev)
	ops2, rev2 := writes(t, ctx, leader, "web", 20, 20)
	second := readUntil(t, ctx, f, &rosterv1.WatchRequest{Service: "web", StartRevision: rev}, rev2)
	if len(second.Messages) == 0 || second.Messages[0].Reset || second.Messages[0].Events[0].Revision != ops2[0].Revision {
		t.Fatalf("resumed stream does not start with the first change after %d: %+v", rev, second.Messages[:1])
	}
	h := &checker.History{
		Ops:     append(ops, ops2...),
		Watches: []checker.WatchStream{{Watcher: "resumer", Namespace: "default", Service: "web", Subscriptions: []checker.Subscription{first, second}}},
		Final:   finalLists(t, ctx, leader, []string{"web"}),
	}
	checkW(t, h)
}

func TestWatchResumesOnAnotherNodeAfterStop(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	rec := startRecorder(t, c, "recorder", f, &rosterv1.WatchRequest{})

	// The SDK's resuming iterator, first connected to the same follower.
	var addrs []string
	addrs = append(addrs, f.Addr)
	for _, nd := range c.Nodes {
		if nd != f {
			addrs = append(addrs, nd.Addr)
		}
	}
	cl, err := client.New(ctx, addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sdk := checker.WatchStream{Watcher: "sdk", Namespace: "default",
		Subscriptions: []checker.Subscription{{StartRevision: 0, Node: "any"}}}
	sdkCtx, sdkCancel := context.WithCancel(ctx)
	sdkLast := make(chan uint64, 1024)
	sdkDone := make(chan struct{})
	go func() {
		defer close(sdkDone)
		for resp, err := range cl.Watch(sdkCtx, &rosterv1.WatchRequest{ProgressInterval: durationpb.New(100 * time.Millisecond)}) {
			if err != nil {
				return
			}
			m := toMessage(resp)
			sdk.Subscriptions[0].Messages = append(sdk.Subscriptions[0].Messages, m)
			rev := m.Revision
			for _, e := range m.Events {
				rev = max(rev, e.Revision)
			}
			select {
			case sdkLast <- rev:
			default:
			}
		}
	}()
	sdkReached := func(rev uint64) {
		t.Helper()
		for {
			select {
			case got := <-sdkLast:
				if got >= rev {
					return
				}
			case <-ctx.Done():
				t.Fatalf("SDK watch never reached revision %d", rev)
			}
		}
	}

	ops, rev := writes(t, ctx, leader, "web", 0, 30)
	waitAll(c, rev, rec)
	sdkReached(rev)
	c.Stop(f)
	ops2, rev2 := writes(t, ctx, leader, "web", 30, 30)
	waitAll(c, rev2, rec)
	sdkReached(rev2)
	sdkCancel()
	<-sdkDone

	stream := rec.result()
	if len(stream.Subscriptions) < 2 || stream.Subscriptions[len(stream.Subscriptions)-1].Node == f.ID {
		t.Fatalf("recorder did not move off the stopped node: %+v", stream.Subscriptions)
	}
	h := &checker.History{Ops: append(ops, ops2...), Watches: []checker.WatchStream{stream, sdk},
		Final: finalLists(t, ctx, leader, services)}
	checkW(t, h)
}

func TestWatchResetWhenHistoryIsGone(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Store: store.Options{HistoryEvents: 16}})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	ops, rev := writes(t, ctx, leader, "web", 0, 10)
	first := readUntil(t, ctx, f, &rosterv1.WatchRequest{Service: "web"}, rev)
	ops2, rev2 := writes(t, ctx, leader, "web", 10, 60)
	if _, err := leader.Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "i3"}); err != nil {
		t.Fatal(err)
	}
	final := finalLists(t, ctx, leader, []string{"web"})
	second := readUntil(t, ctx, f, &rosterv1.WatchRequest{Service: "web", StartRevision: rev}, max(rev2, final[0].Revision))
	m0 := second.Messages[0]
	if !m0.Reset || m0.Revision <= rev {
		t.Fatalf("resume from compacted revision %d: first message %+v, want a reset above it", rev, m0)
	}
	// Replay: the reset, then deltas, gives the linearizable list.
	state := map[string]string{}
	for _, m := range second.Messages {
		if m.Reset {
			state = map[string]string{}
		}
		for _, e := range m.Events {
			if e.Type == checker.EventPut {
				state[e.Key] = e.Value
			} else {
				delete(state, e.Key)
			}
		}
	}
	if !maps.Equal(state, final[0].Instances) {
		t.Fatalf("replayed state %v\nlinearizable list at %d %v", state, final[0].Revision, final[0].Instances)
	}
	// A resume that lands inside what a small history still holds gets no reset.
	third := readUntil(t, ctx, f, &rosterv1.WatchRequest{Service: "web", StartRevision: rev2 - 1}, rev2)
	if third.Messages[0].Reset {
		t.Fatalf("resume from retained revision %d got a reset", rev2-1)
	}
	h := &checker.History{
		Ops:     append(ops, ops2...),
		Watches: []checker.WatchStream{{Watcher: "resumer", Namespace: "default", Service: "web", Subscriptions: []checker.Subscription{first, second}}},
		Final:   final,
	}
	checkW(t, h)
}

func TestWatchFollowerSnapshotInstallStaysGapless(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Configure: func(cfg *cluster.Config) {
		cfg.SnapshotThreshold = 16
		cfg.TrailingLogs = 8
	}})
	c.WaitMembersKnown()
	ctx := longCtx(t, time.Minute)
	leader, f := c.WaitLeader(), c.Followers()[0]
	onF := startRecorder(t, c, "on-follower", f, &rosterv1.WatchRequest{})
	onLeader := startRecorder(t, c, "on-leader", leader, &rosterv1.WatchRequest{})
	// A WatchMany watch, parked with its stream's group while caught up,
	// must be handed back for the reset too: with no bookmark due for 10
	// minutes, nothing else would wake it.
	manyOnF := startManyRecorder(t, c, "many-on-follower", f, &rosterv1.WatchRequest{ProgressInterval: durationpb.New(10 * time.Minute)})
	ops, rev := writes(t, ctx, leader, "web", 0, 10)
	waitAll(c, rev, onF, onLeader, manyOnF)

	c.Partition(f)
	ops2, rev2 := writes(t, ctx, leader, "api", 10, 200)
	// Every node but f compacts its log past what f holds, not only the
	// leader: leadership may move after the leader's snapshot (a busy
	// machine misses a 100 ms lease), and a new leader that still held
	// every entry f misses would catch f up entry by entry, with no
	// snapshot to install and no reset to see.
	for _, nd := range c.Running() {
		if nd == f {
			continue
		}
		c.Eventually(fmt.Sprintf("%s to apply revision %d", nd.ID, rev2), 30*time.Second, func() bool {
			return nd.Node.Applied() >= rev2
		})
		if err := nd.Node.Snapshot(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			t.Fatalf("snapshot on %s: %v", nd.ID, err)
		}
	}
	c.Heal(f)
	// The follower is missing entries the leader has compacted away: it
	// must install the snapshot, and its watcher must see a reset.
	waitAll(c, rev2, onF, onLeader, manyOnF)
	for _, r := range []*recorder{onF, manyOnF} {
		if n := r.resetCount(); n < 2 {
			t.Fatalf("follower watcher %s saw %d resets, want the initial one and one after the snapshot install", r.stream.Watcher, n)
		}
	}
	leader = c.WaitLeader()
	ops3, rev3 := writes(t, ctx, leader, "web", 210, 10)
	final := finalLists(t, ctx, leader, services)
	waitAll(c, max(rev3, maxRevision(final)), onF, onLeader, manyOnF)
	h := &checker.History{Ops: append(append(ops, ops2...), ops3...), Final: final,
		Watches: []checker.WatchStream{onF.result(), onLeader.result(), manyOnF.result()}}
	checkW(t, h)
}

// smallWindowConn dials addr with fixed flow-control windows (no BDP
// growth), so that a stream its client does not read stops the server's
// sends after about 128 KiB.
func smallWindowConn(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// writeUntilCutOff registers instances of web with 400 bytes of metadata
// through nd until nd has cut a watcher off as too slow, and returns the
// writes.
func writeUntilCutOff(t testing.TB, ctx context.Context, nd *testcluster.Node) []checker.Op {
	t.Helper()
	var ops []checker.Op
	big := map[string]string{"blob": string(make([]byte, 400))}
	for i := 0; nd.Server.WatchStats().CutOff == 0; i++ {
		if i >= 20000 {
			t.Fatalf("after %d writes the unread watcher is still not cut off: %+v", i, nd.Server.WatchStats())
		}
		inst := &rosterv1.Instance{Service: "web", Id: fmt.Sprintf("i%d", i%20), Address: "10.9.9.9", Port: uint32(i%60000 + 1), Metadata: big}
		op := checker.Op{Kind: checker.KindRegister, Key: eventKey(&rosterv1.Instance{Namespace: "default", Service: "web", Id: inst.Id}), Value: value(inst), Call: now()}
		resp, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: inst})
		if err != nil {
			t.Fatal(err)
		}
		op.Return, op.Outcome, op.Revision = now(), checker.OutcomeOK, resp.Revision
		ops = append(ops, op)
	}
	return ops
}

func TestSlowWatcherIsCutOffAndResumesWithoutLoss(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{Server: func(o *rpc.Options) { o.Watch.MaxLag = 50 }})
	ctx := longCtx(t, time.Minute)
	nd := c.WaitLeader()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	slow, err := rosterv1.NewRegistryClient(smallWindowConn(t, nd.Addr)).Watch(sctx, &rosterv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ops := writeUntilCutOff(t, ctx, nd)
	// Now read what the server had sent before it gave up.
	first := checker.Subscription{StartRevision: 0, Node: nd.ID}
	var got uint64
	var end error
	for {
		resp, err := slow.Recv()
		if err != nil {
			end = err
			break
		}
		m := toMessage(resp)
		first.Messages = append(first.Messages, m)
		got = max(got, m.Revision)
	}
	if status.Code(end) != codes.ResourceExhausted || rpc.Reason(end) != rpc.ReasonSlowWatcher {
		t.Fatalf("slow watcher ended with %v, want ResourceExhausted %s", end, rpc.ReasonSlowWatcher)
	}
	last, ok := rpc.WatchResumeRevision(end)
	if !ok || last == 0 || last > got {
		t.Fatalf("cut-off status carries revision %d (ok=%v); the client received up to %d: %v", last, ok, got, end)
	}
	first.Err = end.Error()
	t.Logf("cut off after %d writes: %v", len(ops), end)

	final := finalLists(t, ctx, nd, []string{"web"})
	second := readUntil(t, ctx, nd, &rosterv1.WatchRequest{StartRevision: last}, max(ops[len(ops)-1].Revision, final[0].Revision))
	h := &checker.History{Ops: ops, Final: final, Watches: []checker.WatchStream{{
		Watcher: "slow", Namespace: "default", Subscriptions: []checker.Subscription{first, second}}}}
	checkW(t, h)
}

func TestHealthyOnlyWatchSeesHealthTransitions(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	ctx := testcluster.Ctx(t)
	nd := c.WaitLeader()
	reg := nd.Registry()
	for _, id := range []string{"a", "b"} {
		if _, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", id, 80)}); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := reg.Watch(ctx, &rosterv1.WatchRequest{Service: "web", HealthyOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	// The reset is taken when the server runs the stream, which may be after
	// Watch returns: receive it before writing, so it is a known state.
	var got []string
	first, err := stream.Recv()
	if err != nil || !first.Reset_ {
		t.Fatalf("first message %v, %v: want the reset", first, err)
	}
	for _, e := range first.Events {
		got = append(got, "RESET "+e.Instance.Id)
	}
	maint := func(id string, enabled bool) uint64 {
		resp, err := reg.SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{Service: "web", Id: id, Enabled: enabled})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Revision
	}
	maint("a", false) // leaves the healthy set: DELETE
	maint("a", true)  // enters it: PUT
	maint("a", false) // DELETE
	if _, err := reg.Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "a"}); err != nil {
		t.Fatal(err) // an unhealthy instance goes: nothing
	}
	resp, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "c", 80)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"RESET a", "RESET b", "DELETE a", "PUT a", "DELETE a", "PUT c"}
	for last := first.Revision; last < resp.Revision; {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range m.Events {
			kind := e.Type.String()[len("TYPE_"):]
			if m.Reset_ {
				kind = "RESET"
			}
			got = append(got, kind+" "+e.Instance.Id)
		}
		last = max(last, m.Revision)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("healthy-only watcher saw %v, want %v", got, want)
	}
}

// TestWatchBookmarksWhenIdle: a watch whose service does not change sends
// bookmarks at the head revision, which other services' changes move.
func TestWatchBookmarksWhenIdle(t *testing.T) {
	bothStreams(t, func(t *testing.T, many bool) {
		c := testcluster.New(t, 1, testcluster.Options{})
		ctx := testcluster.Ctx(t)
		nd := c.WaitLeader()
		resp, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 80)})
		if err != nil {
			t.Fatal(err)
		}
		// Another service's change advances the head but matches no event.
		other, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("api", "a", 80)})
		if err != nil {
			t.Fatal(err)
		}
		recv, err := openWatch(ctx, nd, &rosterv1.WatchRequest{Service: "web", StartRevision: resp.Revision - 1,
			ProgressInterval: durationpb.New(time.Millisecond)}, many)
		if err != nil {
			t.Fatal(err)
		}
		m, err := recv()
		if err != nil || len(m.Events) != 1 || m.Events[0].Revision != resp.Revision {
			t.Fatalf("first message %v, %v; want the change at %d", m, err, resp.Revision)
		}
		m, err = recv()
		if err != nil || !m.Progress || m.Revision != other.Revision || len(m.Events) != 0 {
			t.Fatalf("second message %v, %v; want a bookmark at head revision %d", m, err, other.Revision)
		}
		if m.Header.GetNodeId() != nd.ID {
			t.Fatalf("bookmark header %v", m.Header)
		}
		// Changes to another service while the watch is caught up: the
		// bookmarks move to them, and nothing else is sent.
		var third *rosterv1.RegisterResponse
		for i := range 5 {
			if third, err = nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("api", "a", uint32(81+i))}); err != nil {
				t.Fatal(err)
			}
		}
		for m.Revision < third.Revision {
			prev := m.Revision
			if m, err = recv(); err != nil {
				t.Fatal(err)
			}
			if !m.Progress || len(m.Events) != 0 || m.Revision < prev || m.Revision > third.Revision {
				t.Fatalf("after bookmark at %d: %v; want bookmarks up to %d", prev, m, third.Revision)
			}
		}
	})
}

func TestWatchRejectsBadRequests(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	ctx := testcluster.Ctx(t)
	for _, req := range []*rosterv1.WatchRequest{
		{Namespace: "Bad!"},
		{Service: "Not_A_Label"},
		{ProgressInterval: durationpb.New(-time.Second)},
	} {
		stream, err := c.WaitLeader().Registry().Watch(ctx, req)
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("watch %v: %v, want InvalidArgument", req, err)
		}
	}
}

func TestWatcherCatchingUpIsNotCutOff(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{Server: func(o *rpc.Options) { o.Watch.MaxLag = 5; o.Watch.BatchEvents = 2 }})
	ctx := testcluster.Ctx(t)
	nd := c.WaitLeader()
	ops, rev := writes(t, ctx, nd, "web", 0, 100)
	// Far more than MaxLag behind, but reading: it catches up in many
	// messages without being cut off, from a revision and from a reset.
	from := readUntil(t, ctx, nd, &rosterv1.WatchRequest{StartRevision: ops[0].Revision - 1}, rev)
	reset := readUntil(t, ctx, nd, &rosterv1.WatchRequest{}, rev)
	if n := nd.Server.WatchStats().CutOff; n != 0 {
		t.Fatalf("%d watchers cut off", n)
	}
	h := &checker.History{Ops: ops, Final: finalLists(t, ctx, nd, []string{"web"}), Watches: []checker.WatchStream{
		{Watcher: "from", Namespace: "default", Subscriptions: []checker.Subscription{from}},
		{Watcher: "reset", Namespace: "default", Subscriptions: []checker.Subscription{reset}},
	}}
	checkW(t, h)
}

// TestWatchOmitsPrevInstanceWhenAsked: a watcher that sets
// omit_prev_instance gets the same events as one that does not, each
// without prev_instance: an update's PUT carries the new instance, a
// DELETE the key fields, also where a healthy-only watcher sees an
// instance leave the healthy set. Both kinds of watcher share the node.
func TestWatchOmitsPrevInstanceWhenAsked(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	ctx := testcluster.Ctx(t)
	reg := c.WaitLeader().Registry()
	for _, id := range []string{"a", "b"} {
		if _, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", id, 80)}); err != nil {
			t.Fatal(err)
		}
	}
	open := func(req *rosterv1.WatchRequest) rosterv1.Registry_WatchClient {
		t.Helper()
		stream, err := reg.Watch(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := stream.Recv(); err != nil || !m.Reset_ {
			t.Fatalf("first message %v, %v: want the reset", m, err)
		}
		return stream
	}
	full := open(&rosterv1.WatchRequest{Service: "web"})
	bare := open(&rosterv1.WatchRequest{Service: "web", OmitPrevInstance: true})
	healthyBare := open(&rosterv1.WatchRequest{Service: "web", HealthyOnly: true, OmitPrevInstance: true})

	if _, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 81)}); err != nil {
		t.Fatal(err) // an update: PUT, prev on port 80
	}
	if _, err := reg.SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{Service: "web", Id: "b", Enabled: false}); err != nil {
		t.Fatal(err) // b leaves the healthy set
	}
	last, err := reg.Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "a"})
	if err != nil {
		t.Fatal(err)
	}
	events := func(stream rosterv1.Registry_WatchClient) []*rosterv1.Event {
		t.Helper()
		var out []*rosterv1.Event
		for rev := uint64(0); rev < last.Revision; {
			m, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m.Events...)
			rev = max(rev, m.Revision)
		}
		return out
	}
	fullEvents, bareEvents := events(full), events(bare)
	if len(fullEvents) != 3 || len(bareEvents) != 3 {
		t.Fatalf("got %d and %d events, want 3 each: %v; %v", len(fullEvents), len(bareEvents), fullEvents, bareEvents)
	}
	for i, f := range fullEvents {
		b := bareEvents[i]
		if f.PrevInstance == nil {
			t.Fatalf("event %d (%v) of the plain watcher has no prev_instance", i, f)
		}
		if b.PrevInstance != nil {
			t.Fatalf("event %d (%v) carries prev_instance though the watcher asked for none", i, b)
		}
		if b.Type != f.Type || b.Revision != f.Revision || !proto.Equal(b.Instance, f.Instance) {
			t.Fatalf("event %d: %v without prev, want %v less its prev_instance", i, b, f)
		}
	}
	if got := fullEvents[0].PrevInstance.GetPort(); got != 80 {
		t.Fatalf("the update's prev_instance has port %d, want 80", got)
	}
	if del := bareEvents[2]; del.Type != rosterv1.Event_TYPE_DELETE || del.Instance.GetId() != "a" || del.Instance.GetAddress() != "" {
		t.Fatalf("the deregistration reached the bare watcher as %v, want a DELETE of a's key", del)
	}
	// Healthy-only: a's update (PUT), b leaving the healthy set (DELETE),
	// a's deregistration (DELETE), none with prev_instance.
	var got []string
	for _, e := range events(healthyBare) {
		if e.PrevInstance != nil {
			t.Fatalf("healthy-only event %v carries prev_instance though the watcher asked for none", e)
		}
		got = append(got, e.Type.String()[len("TYPE_"):]+" "+e.Instance.GetId())
	}
	if want := []string{"PUT a", "DELETE b", "DELETE a"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("healthy-only watcher without prev saw %v, want %v", got, want)
	}
}

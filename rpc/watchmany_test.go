package rpc_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

func createWatch(id uint64, req *rosterv1.WatchRequest) *rosterv1.WatchManyRequest {
	return &rosterv1.WatchManyRequest{Action: &rosterv1.WatchManyRequest_Create{
		Create: &rosterv1.WatchCreate{WatchId: id, Request: req}}}
}

// TestWatchManyServesEachWatchAsWatchDoes opens, on one WatchMany stream,
// watches with different requests (two alike), and a Watch stream with each
// request; every watch must receive exactly what its Watch stream receives,
// and the two alike must share every event message.
func TestWatchManyServesEachWatchAsWatchDoes(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, nd := c.WaitLeader(), c.Followers()[0]
	reg := leader.Registry()
	var registered uint64
	for _, id := range []string{"a", "b"} {
		resp, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", id, 80)})
		if err != nil {
			t.Fatal(err)
		}
		registered = resp.Revision
	}
	// The watches are served by nd, a follower: it must hold both before
	// they start, or a reset taken before b arrives would show b as an
	// event on one stream and in the reset on the other.
	if _, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
		Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: registered}}); err != nil {
		t.Fatal(err)
	}
	reqs := map[uint64]*rosterv1.WatchRequest{
		1: {Service: "web", OmitPrevInstance: true},
		2: {Service: "web", OmitPrevInstance: true},
		3: {Service: "web"},
		4: {HealthyOnly: true},
		5: {Service: "api"},
		6: {StartRevision: 1},
	}
	many, err := nd.Registry().WatchMany(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plain := map[uint64]rosterv1.Registry_WatchClient{}
	for id := uint64(1); id <= uint64(len(reqs)); id++ {
		if err := many.Send(createWatch(id, reqs[id])); err != nil {
			t.Fatal(err)
		}
		if plain[id], err = nd.Registry().Watch(ctx, reqs[id]); err != nil {
			t.Fatal(err)
		}
	}

	// Each watch's reset comes before any write of the test, so that the
	// two streams of a request reset to the same instances; the cluster's
	// own writes (its member table) may still land between the two, so a
	// reset's revision may differ by them. What is compared is each reset,
	// less its header (the serving node's state when sent) and revision,
	// and each event: how events are batched into messages may differ.
	strip := func(m *rosterv1.WatchResponse) []proto.Message {
		if m.Reset_ {
			m = proto.CloneOf(m)
			m.Header, m.Revision = nil, 0
			return []proto.Message{m}
		}
		var out []proto.Message
		for _, e := range m.Events {
			out = append(out, e)
		}
		return out
	}
	want := map[uint64][]proto.Message{}
	for id, s := range plain {
		if reqs[id].StartRevision != 0 {
			continue
		}
		m, err := s.Recv()
		if err != nil || !m.Reset_ {
			t.Fatalf("watch %d: first message %v, %v: want the reset", id, m, err)
		}
		want[id] = append(want[id], strip(m)...)
	}
	got := map[uint64][]proto.Message{}
	at := map[uint64]uint64{}
	shared := 0
	resets := 0
	recv := func() {
		t.Helper()
		m, err := many.Recv()
		if err != nil {
			t.Fatalf("WatchMany: %v", err)
		}
		if m.Ended != nil {
			t.Fatalf("watch %v ended: %v", m.WatchIds, m.Ended)
		}
		if m.Response.GetHeader().GetRevision() != m.Response.GetRevision() {
			t.Fatalf("message for %v: header at %d, message at %d", m.WatchIds, m.Response.GetHeader().GetRevision(), m.Response.GetRevision())
		}
		if slices.Contains(m.WatchIds, 1) && slices.Contains(m.WatchIds, 2) {
			shared++
		}
		if m.Response.Reset_ {
			resets++
		}
		for _, id := range m.WatchIds {
			if !m.Response.Progress {
				got[id] = append(got[id], strip(m.Response)...)
			}
			at[id] = max(at[id], m.Response.Revision)
		}
	}
	for resets < len(want) {
		recv()
	}

	var last uint64
	write := func(req any) {
		t.Helper()
		var err error
		var rev uint64
		switch r := req.(type) {
		case *rosterv1.RegisterRequest:
			var resp *rosterv1.RegisterResponse
			resp, err = reg.Register(ctx, r)
			rev = resp.GetRevision()
		case *rosterv1.SetMaintenanceRequest:
			var resp *rosterv1.SetMaintenanceResponse
			resp, err = reg.SetMaintenance(ctx, r)
			rev = resp.GetRevision()
		case *rosterv1.DeregisterRequest:
			var resp *rosterv1.DeregisterResponse
			resp, err = reg.Deregister(ctx, r)
			rev = resp.GetRevision()
		}
		if err != nil {
			t.Fatal(err)
		}
		last = rev
	}
	write(&rosterv1.RegisterRequest{Instance: instance("web", "a", 81)})
	write(&rosterv1.RegisterRequest{Instance: instance("api", "x", 90)})
	write(&rosterv1.SetMaintenanceRequest{Service: "web", Id: "b", Enabled: true})
	for i := range 20 {
		write(&rosterv1.RegisterRequest{Instance: instance("web", fmt.Sprintf("n%d", i%4), uint32(100+i))})
	}
	write(&rosterv1.DeregisterRequest{Service: "web", Id: "a"})
	write(&rosterv1.DeregisterRequest{Service: "api", Id: "x"})

	// Expected: what each Watch stream sends up to last, less bookmarks
	// and headers (which tell the serving node's state when sent).
	for id, s := range plain {
		for rev := at[0]; rev < last; {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("watch %d: %v", id, err)
			}
			if !m.Progress {
				want[id] = append(want[id], strip(m)...)
			}
			rev = max(rev, m.Revision)
		}
	}
	behind := func() bool {
		for id := range reqs {
			if at[id] < last {
				return true
			}
		}
		return false
	}
	for behind() {
		recv()
	}
	for id := range reqs {
		if len(got[id]) != len(want[id]) {
			t.Fatalf("watch %d (%v) got %d resets and events over WatchMany, %d over Watch:\n%v\n%v", id, reqs[id], len(got[id]), len(want[id]), got[id], want[id])
		}
		for i := range got[id] {
			if !proto.Equal(got[id][i], want[id][i]) {
				t.Fatalf("watch %d (%v), reset or event %d over WatchMany:\n%v\nover Watch:\n%v", id, reqs[id], i, got[id][i], want[id][i])
			}
		}
	}
	if shared == 0 {
		t.Fatal("no message named both watches 1 and 2, which are alike")
	}
	t.Logf("%d messages named both watches 1 and 2", shared)
}

// TestWatchManyEndsOneWatchNotTheStream: a bad request and a cancel end
// their own watch with a message naming it; the stream and its other
// watches go on; a reused id ends the stream.
func TestWatchManyEndsOneWatchNotTheStream(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	ctx := testcluster.Ctx(t)
	reg := c.WaitLeader().Registry()
	many, err := reg.WatchMany(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *rosterv1.WatchManyResponse {
		t.Helper()
		m, err := many.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if err := many.Send(createWatch(1, &rosterv1.WatchRequest{Service: "web"})); err != nil {
		t.Fatal(err)
	}
	if m := recv(); !slices.Equal(m.WatchIds, []uint64{1}) || !m.Response.GetReset_() {
		t.Fatalf("first message %v: want watch 1's reset", m)
	}
	if err := many.Send(createWatch(2, &rosterv1.WatchRequest{Service: "not a service!"})); err != nil {
		t.Fatal(err)
	}
	if m := recv(); !slices.Equal(m.WatchIds, []uint64{2}) || codes.Code(m.Ended.GetCode()) != codes.InvalidArgument || m.Ended.GetMessage() == "" ||
		rpc.Reason(status.FromProto(m.Ended).Err()) != rpc.ReasonInvalid {
		t.Fatalf("bad request answered with %v: want watch 2 ended, InvalidArgument with a message and reason %s", m, rpc.ReasonInvalid)
	}
	resp, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 80)})
	if err != nil {
		t.Fatal(err)
	}
	if m := recv(); !slices.Equal(m.WatchIds, []uint64{1}) || len(m.Response.GetEvents()) != 1 || m.Response.Revision != resp.Revision {
		t.Fatalf("after a registration at %d: %v, want watch 1's event", resp.Revision, m)
	}
	if err := many.Send(&rosterv1.WatchManyRequest{Action: &rosterv1.WatchManyRequest_Cancel{Cancel: &rosterv1.WatchCancel{WatchId: 1}}}); err != nil {
		t.Fatal(err)
	}
	if m := recv(); !slices.Equal(m.WatchIds, []uint64{1}) || codes.Code(m.Ended.GetCode()) != codes.Canceled {
		t.Fatalf("cancel answered with %v: want watch 1 ended, Canceled", m)
	}
	// Its id is free once its end is sent.
	if err := many.Send(createWatch(1, &rosterv1.WatchRequest{Service: "cache"})); err != nil {
		t.Fatal(err)
	}
	if m := recv(); !slices.Equal(m.WatchIds, []uint64{1}) || !m.Response.GetReset_() {
		t.Fatalf("watch 1 created again: %v, want its reset", m)
	}
	if err := many.Send(createWatch(3, &rosterv1.WatchRequest{Service: "web", StartRevision: resp.Revision})); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "b", 80)}); err != nil {
		t.Fatal(err)
	}
	if m := recv(); !slices.Equal(m.WatchIds, []uint64{3}) || len(m.Response.GetEvents()) != 1 || m.Response.Events[0].Instance.GetId() != "b" {
		t.Fatalf("after b's registration: %v, want watch 3's event (watch 1 was canceled)", m)
	}
	// A client that sends nothing more (as grpcurl does after its
	// requests) still gets its watches' changes.
	if err := many.Send(createWatch(4, &rosterv1.WatchRequest{Service: "db"})); err != nil {
		t.Fatal(err)
	}
	if m := recv(); !slices.Equal(m.WatchIds, []uint64{4}) || !m.Response.GetReset_() {
		t.Fatalf("after creating watch 4: %v, want its reset", m)
	}
	if err := many.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("db", "d", 5432)}); err != nil {
		t.Fatal(err)
	}
	if m := recv(); !slices.Equal(m.WatchIds, []uint64{4}) || len(m.Response.GetEvents()) != 1 || m.Response.Events[0].Instance.GetId() != "d" {
		t.Fatalf("after the client closed its side and d registered: %v, want watch 4's event", m)
	}
	// A reused id ends the stream: a new stream, as the old one is closed
	// for sending.
	many, err = reg.WatchMany(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := many.Send(createWatch(3, &rosterv1.WatchRequest{})); err != nil {
			t.Fatal(err)
		}
	}
	for {
		m, err := many.Recv()
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("a reused watch id ended the stream with %v, want InvalidArgument", err)
			}
			break
		}
		if m.Ended != nil {
			t.Fatalf("a reused watch id: %v, want the stream to end", m)
		}
	}
}

// TestWatchManyLimitsEachWatch: the read rate (a burst of 3: the stream's
// opening and two watches) and the per-connection watcher limit (2) refuse
// one of three watches of a WatchMany stream as they would refuse a Watch
// stream, with an ended message naming it and the reason; the stream and
// its other watches go on. The watches start concurrently, so which one is
// refused is not known.
func TestWatchManyLimitsEachWatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   func(*rpc.Options)
		reason string
	}{
		{"read rate", func(o *rpc.Options) { o.Limits.ReadRate, o.Limits.ReadBurst = 0.001, 3 }, rpc.ReasonRateLimited},
		{"watchers per connection", func(o *rpc.Options) { o.Limits.MaxWatchersPerConnection = 2 }, rpc.ReasonWatcherLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testcluster.New(t, 1, testcluster.Options{Server: tc.opts})
			ctx := testcluster.Ctx(t)
			nd := c.WaitLeader()
			many, err := nd.Registry().WatchMany(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for id := uint64(1); id <= 3; id++ {
				if err := many.Send(createWatch(id, &rosterv1.WatchRequest{Service: "web"})); err != nil {
					t.Fatal(err)
				}
			}
			var resets []uint64
			refused := uint64(0)
			for len(resets) < 2 || refused == 0 {
				m, err := many.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if m.Ended != nil {
					err := status.FromProto(m.Ended).Err()
					if len(m.WatchIds) != 1 || refused != 0 || status.Code(err) != codes.ResourceExhausted || rpc.Reason(err) != tc.reason {
						t.Fatalf("%v ended with %v, want one watch ended, ResourceExhausted %s", m.WatchIds, err, tc.reason)
					}
					refused = m.WatchIds[0]
					continue
				}
				resets = append(resets, m.WatchIds...)
			}
			if slices.Contains(resets, refused) {
				t.Fatalf("watch %d was refused after its reset", refused)
			}
			resp, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 80)})
			if err != nil {
				t.Fatal(err)
			}
			for got := map[uint64]bool{}; len(got) < 2; {
				m, err := many.Recv()
				if err != nil {
					t.Fatalf("the stream ended after a watch was refused: %v", err)
				}
				if m.Ended != nil {
					t.Fatalf("%v ended: %v", m.WatchIds, m.Ended)
				}
				if m.Response.GetRevision() == resp.Revision {
					for _, id := range m.WatchIds {
						got[id] = true
					}
				}
			}
		})
	}
}

// TestWatchManySlowClientEndsTheStream: a WatchMany client that reads
// nothing is cut off as a slow Watch client is, but the whole stream ends
// (its watches share the client), and the status names no revision to
// resume from, since each watch has its own.
func TestWatchManySlowClientEndsTheStream(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{Server: func(o *rpc.Options) { o.Watch.MaxLag = 50 }})
	ctx := testcluster.Ctx(t)
	nd := c.WaitLeader()
	many, err := rosterv1.NewRegistryClient(smallWindowConn(t, nd.Addr)).WatchMany(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 2; id++ {
		if err := many.Send(createWatch(id, &rosterv1.WatchRequest{Service: "web"})); err != nil {
			t.Fatal(err)
		}
	}
	writeUntilCutOff(t, ctx, nd)
	var end error
	for {
		m, err := many.Recv()
		if err != nil {
			end = err
			break
		}
		if m.Ended != nil {
			t.Fatalf("a watch ended on its own: %v", m)
		}
	}
	if status.Code(end) != codes.ResourceExhausted || rpc.Reason(end) != rpc.ReasonSlowWatcher {
		t.Fatalf("the unread stream ended with %v, want ResourceExhausted %s", end, rpc.ReasonSlowWatcher)
	}
	if rev, ok := rpc.WatchResumeRevision(end); ok {
		t.Fatalf("the stream's status names revision %d, one watch's, to resume from", rev)
	}
}

// TestWatchManyParkingRacesAWrite forces the interleaving a caught-up
// watch of a WatchMany stream must survive as it parks with its stream's
// group reader: a revision lands after the watch's last read of the
// history, and the group makes its pass for that revision before the
// watch has parked. The watch must still be sent the change at once, not
// wait behind the head until a later write (here, a bookmark at the older
// revision would come first).
func TestWatchManyParkingRacesAWrite(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	ctx := testcluster.Ctx(t)
	nd := c.WaitLeader()
	reg := nd.Registry()
	var armed atomic.Bool
	var passedAt atomic.Uint64
	passed := make(chan struct{}, 1)
	wrote := make(chan uint64, 1)
	rpc.SetWatchHooks(nd.Server, rpc.WatchHooks{BeforePark: func(pos uint64) {
		if !armed.CompareAndSwap(true, false) {
			return
		}
		// The watch has read up to pos and found nothing newer. A write
		// lands now...
		resp, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "b", 81)})
		if err != nil {
			t.Error(err)
			wrote <- 0
			return
		}
		// ...and the group reads for its parked watches before this one
		// has parked.
		for passedAt.Load() < resp.Revision {
			select {
			case <-passed:
			case <-ctx.Done():
				t.Error(ctx.Err())
				wrote <- 0
				return
			}
		}
		wrote <- resp.Revision
	}, AfterPass: func(head uint64) {
		passedAt.Store(head)
		select {
		case passed <- struct{}{}:
		default:
		}
	}})
	t.Cleanup(func() { rpc.SetWatchHooks(nd.Server, rpc.WatchHooks{}) })

	first, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 80)})
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	recv, err := openWatch(ctx, nd, &rosterv1.WatchRequest{Service: "web", ProgressInterval: durationpb.New(rpc.MinProgressInterval)}, true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := recv()
	if err != nil || !m.Reset_ || m.Revision < first.Revision {
		t.Fatalf("first message %v, %v: want the reset", m, err)
	}
	rev := <-wrote
	if rev == 0 {
		t.FailNow()
	}
	if m, err = recv(); err != nil || m.Progress || len(m.Events) != 1 || m.Events[0].Revision != rev {
		t.Fatalf("after a write at %d that raced the watch's parking: %v, %v; want its event", rev, m, err)
	}
}

// TestWatchManySendsWhenAPassQueuesNothing forces the interleaving in which
// a stream's sender, told of a message the group reader queued, finds a
// newer revision already at the head and waits for the watch to reach it;
// only then does the group's next pass read the watch past it (another
// service's change), queuing nothing. The sender must still be told, and send the message
// then, not when the watch's next bookmark is due (10 minutes here).
func TestWatchManySendsWhenAPassQueuesNothing(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	ctx := testcluster.Ctx(t)
	nd := c.WaitLeader()
	reg := nd.Registry()
	parked := make(chan struct{}, 1)
	var armed, holdPass atomic.Bool
	fired := make(chan uint64, 1)
	waited := make(chan struct{}, 1)
	rpc.SetWatchHooks(nd.Server, rpc.WatchHooks{
		SenderWaits: func() {
			select {
			case waited <- struct{}{}:
			default:
			}
		},
		// The group's pass for the other service's change waits until
		// the sender has looked and chosen to wait.
		BeforePass: func() {
			if !holdPass.CompareAndSwap(true, false) {
				return
			}
			select {
			case <-waited:
			case <-ctx.Done():
			}
		},
		BeforePark: func(uint64) {
			select {
			case parked <- struct{}{}:
			default:
			}
		},
		BeforeQueue: func(int) {
			if !armed.CompareAndSwap(true, false) {
				return
			}
			// The group has made the watch's message and not yet told
			// the sender: another service changes first.
			select {
			case <-waited: // an earlier wait, not the one this test forces
			default:
			}
			holdPass.Store(true)
			resp, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("api", "x", 90)})
			if err != nil {
				t.Error(err)
			}
			fired <- resp.GetRevision()
		},
	})
	t.Cleanup(func() { rpc.SetWatchHooks(nd.Server, rpc.WatchHooks{}) })

	recv, err := openWatch(ctx, nd, &rosterv1.WatchRequest{Service: "web", ProgressInterval: durationpb.New(10 * time.Minute)}, true)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := recv(); err != nil || !m.Reset_ {
		t.Fatalf("first message %v, %v: want the reset", m, err)
	}
	// Write to web once the watch is parked, so that the group (not the
	// watch's own goroutine) reads the change; when the write beats the
	// parking, the watch reads it itself and parks again: write again.
	var want uint64
	for i := 0; want == 0; i++ {
		<-parked
		armed.Store(true)
		resp, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", fmt.Sprintf("w%d", i), 80)})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-fired:
			want = resp.Revision
		case <-parked:
			armed.Store(false)
			parked <- struct{}{}
			if m, err := recv(); err != nil || len(m.Events) != 1 {
				t.Fatalf("write %d, read by the watch itself: %v, %v", i, m, err)
			}
		}
	}
	// Bounded by the test's context: a stalled sender would hold the
	// message for the 10-minute bookmark.
	m, err := recv()
	if err != nil || len(m.Events) != 1 || m.Events[0].Revision != want {
		t.Fatalf("after a pass that queued nothing: %v, %v; want the event at %d", m, err, want)
	}
}

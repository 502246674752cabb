package rpc_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/checker"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

func ttlInstance(svc, id string, ttl, criticalAfter time.Duration) *rosterv1.Instance {
	in := instance(svc, id, 8080)
	in.Ttl = durationpb.New(ttl)
	if criticalAfter > 0 {
		in.DeregisterCriticalAfter = durationpb.New(criticalAfter)
	}
	return in
}

// lookup reads one instance linearizably through nd; nil when absent.
func lookupInstance(ctx context.Context, t *testing.T, nd *testcluster.Node, svc, id string) *rosterv1.Instance {
	t.Helper()
	resp, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: svc})
	if err != nil {
		t.Fatalf("get %s on %s: %v", svc, nd.ID, err)
	}
	for _, in := range resp.Instances {
		if in.Id == id {
			return in
		}
	}
	return nil
}

// pace paces a workload (heartbeat rhythm, a race's timing). Tests never
// wait for an outcome this way; they poll with a deadline.
func pace(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func noSelfPreservation(c *cluster.Config) { c.SelfPreservationThreshold = new(float64) }

func TestLeaseExpiresWithoutHeartbeats(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Configure: noSelfPreservation})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := c.Followers()[0]
	const ttl = time.Second

	call := time.Now()
	if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", "gone", ttl, 0)}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("the silent instance is removed", 10*time.Second, func() bool {
		return lookupInstance(ctx, t, f, "web", "gone") == nil
	})
	if seen := time.Since(call); seen < ttl {
		t.Fatalf("removed %s after Register was called, before its %s TTL", seen, ttl)
	}

	// With deregister_critical_after it turns critical first, a heartbeat
	// brings it back, and left alone it is removed after the grace.
	if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", "kept", ttl, 2*time.Second)}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("the silent instance turns critical", 10*time.Second, func() bool {
		in := lookupInstance(ctx, t, f, "web", "kept")
		return in != nil && in.Status == rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL
	})
	if in := lookupInstance(ctx, t, f, "web", "kept"); in.StatusReason != cluster.ReasonLeaseExpired {
		t.Fatalf("critical for %q, want %q", in.StatusReason, cluster.ReasonLeaseExpired)
	}
	healthy, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web", HealthyOnly: true})
	if err != nil || len(healthy.Instances) != 0 {
		t.Fatalf("healthy_only lists a critical instance: %v %v", healthy.GetInstances(), err)
	}
	if _, err := f.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: "web", Id: "kept"}); err != nil {
		t.Fatalf("heartbeat on a critical (expired, kept) instance: %v", err)
	}
	if in := lookupInstance(ctx, t, f, "web", "kept"); in.Status != rosterv1.HealthStatus_HEALTH_STATUS_PASSING {
		t.Fatalf("after a heartbeat the instance is %v, want passing", in.Status)
	}
	c.Eventually("the instance, critical again, is removed after deregister_critical_after", 15*time.Second, func() bool {
		return lookupInstance(ctx, t, f, "web", "kept") == nil
	})
}

func TestHeartbeatErrors(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	if _, err := c.WaitLeader().Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "static", 80)}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range []*testcluster.Node{c.WaitLeader(), c.Followers()[0]} {
		_, err := nd.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: "web", Id: "static"})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("heartbeat of an instance without ttl on %s: %v, want FailedPrecondition", nd.ID, err)
		}
		_, err = nd.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: "web", Id: "nobody"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("heartbeat of an unknown instance on %s: %v, want NotFound", nd.ID, err)
		}
		_, err = nd.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: "Bad", Id: "x"})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("heartbeat with a bad name on %s: %v, want InvalidArgument", nd.ID, err)
		}
		// On a stream the same errors are per item, and the stream goes on.
		st, err := nd.Registry().KeepAlive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []codes.Code{codes.FailedPrecondition, codes.NotFound, codes.InvalidArgument}
		for _, id := range []string{"static", "nobody"} {
			if err := st.Send(&rosterv1.HeartbeatRequest{Service: "web", Id: id}); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Send(&rosterv1.HeartbeatRequest{Service: "web", Id: ""}); err != nil {
			t.Fatal(err)
		}
		_ = st.CloseSend()
		for i, code := range want {
			resp, err := st.Recv()
			if err != nil {
				t.Fatalf("keepalive on %s, answer %d: %v", nd.ID, i, err)
			}
			if codes.Code(resp.Code) != code || resp.Error == "" {
				t.Fatalf("keepalive on %s, answer %d: code %v %q, want %v", nd.ID, i, codes.Code(resp.Code), resp.Error, code)
			}
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("keepalive on %s after the last answer: %v, want EOF", nd.ID, err)
		}
	}
}

// TestKeepAliveBatchErrors: a batched renewal answers each instance on its
// own, on the leader and through a follower; a batch that is wrong as a
// whole is answered with one error and the stream goes on.
func TestKeepAliveBatchErrors(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	if _, err := c.WaitLeader().Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "static", 80)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader().Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", "live", time.Hour, 0)}); err != nil {
		t.Fatal(err)
	}
	ref := func(svc, id string) *rosterv1.InstanceRef { return &rosterv1.InstanceRef{Service: svc, Id: id} }
	mixed := &rosterv1.HeartbeatRequest{Instances: []*rosterv1.InstanceRef{
		ref("web", "live"), ref("web", "static"), ref("web", "nobody"), ref("Bad", "x"), {Namespace: "default", Service: "web", Id: "live"},
	}}
	wantMixed := []codes.Code{codes.OK, codes.FailedPrecondition, codes.NotFound, codes.InvalidArgument, codes.OK}
	tooMany := &rosterv1.HeartbeatRequest{}
	for i := 0; i <= rpc.MaxKeepAliveBatch; i++ {
		tooMany.Instances = append(tooMany.Instances, ref("web", "live"))
	}
	both := &rosterv1.HeartbeatRequest{Service: "web", Id: "live", Instances: []*rosterv1.InstanceRef{ref("web", "live")}}
	for _, nd := range []*testcluster.Node{c.WaitLeader(), c.Followers()[0]} {
		_, err := nd.Registry().Heartbeat(ctx, both)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "KeepAlive") {
			t.Fatalf("unary heartbeat with instances on %s: %v, want InvalidArgument naming KeepAlive", nd.ID, err)
		}
		st, err := nd.Registry().KeepAlive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, req := range []*rosterv1.HeartbeatRequest{mixed, tooMany, both, mixed} {
			if err := st.Send(req); err != nil {
				t.Fatal(err)
			}
		}
		_ = st.CloseSend()
		for i, req := range []*rosterv1.HeartbeatRequest{mixed, tooMany, both, mixed} {
			resp, err := st.Recv()
			if err != nil {
				t.Fatalf("keepalive on %s, answer %d: %v", nd.ID, i, err)
			}
			if req != mixed {
				if codes.Code(resp.Code) != codes.InvalidArgument || resp.Error == "" || len(resp.Results) != 0 {
					t.Fatalf("keepalive on %s, answer %d: code %v %q with %d results, want InvalidArgument and none", nd.ID, i, codes.Code(resp.Code), resp.Error, len(resp.Results))
				}
				continue
			}
			if resp.Code != 0 || len(resp.Results) != len(wantMixed) {
				t.Fatalf("keepalive on %s, answer %d: code %d %q with %d results, want %d", nd.ID, i, resp.Code, resp.Error, len(resp.Results), len(wantMixed))
			}
			if resp.GetHeader().GetLeaderId() != c.WaitLeader().ID {
				t.Errorf("keepalive on %s, answer %d: header names leader %q, want %s", nd.ID, i, resp.GetHeader().GetLeaderId(), c.WaitLeader().ID)
			}
			for j, r := range resp.Results {
				if codes.Code(r.Code) != wantMixed[j] {
					t.Fatalf("keepalive on %s, answer %d, instance %d: code %v %q, want %v", nd.ID, i, j, codes.Code(r.Code), r.Error, wantMixed[j])
				}
				if (r.Code == 0) != (r.Ttl.AsDuration() == time.Hour) || (r.Code == 0) == (r.Error != "") {
					t.Fatalf("keepalive on %s, answer %d, instance %d: ttl %v error %q", nd.ID, i, j, r.Ttl.AsDuration(), r.Error)
				}
			}
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("keepalive on %s after the last answer: %v, want EOF", nd.ID, err)
		}
	}
}

// heartbeatLoop renews one lease by unary Heartbeat through nd every
// interval until ctx ends, recording every call.
func heartbeatLoop(ctx context.Context, nd *testcluster.Node, svc, id string, every time.Duration, rec *leaseRecorder) {
	for ctx.Err() == nil {
		call := rec.now()
		resp, err := nd.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: svc, Id: id})
		rec.heartbeat(svc, id, call, resp, err)
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
}

// keepAliveLoop renews leases over one KeepAlive stream through nd: a
// message per instance, or with batch one message renewing them all.
func keepAliveLoop(ctx context.Context, t *testing.T, nd *testcluster.Node, svc string, ids []string, batch bool, every time.Duration, rec *leaseRecorder) {
	for ctx.Err() == nil {
		st, err := nd.Registry().KeepAlive(ctx)
		if err != nil {
			continue
		}
		for ctx.Err() == nil {
			if batch {
				err = keepAliveBatch(t, st, svc, ids, rec)
			} else {
				err = keepAliveEach(t, st, svc, ids, rec)
			}
			if err != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}
}

// keepAliveEach renews ids with a message each and records the answers.
func keepAliveEach(t *testing.T, st rosterv1.Registry_KeepAliveClient, svc string, ids []string, rec *leaseRecorder) error {
	calls := make([]int64, len(ids))
	for i, id := range ids {
		calls[i] = rec.now()
		if err := st.Send(&rosterv1.HeartbeatRequest{Service: svc, Id: id}); err != nil {
			return err
		}
	}
	for i := range ids {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		if resp.Id != ids[i] {
			t.Errorf("keepalive answer %d is for %s, want %s: answers out of order", i, resp.Id, ids[i])
		}
		var ierr error
		if resp.Code != 0 {
			ierr = status.Error(codes.Code(resp.Code), resp.Error)
		}
		rec.heartbeat(svc, ids[i], calls[i], resp, ierr)
	}
	return nil
}

// keepAliveBatch renews ids with one message and records each answer.
func keepAliveBatch(t *testing.T, st rosterv1.Registry_KeepAliveClient, svc string, ids []string, rec *leaseRecorder) error {
	req := &rosterv1.HeartbeatRequest{}
	for _, id := range ids {
		req.Instances = append(req.Instances, &rosterv1.InstanceRef{Service: svc, Id: id})
	}
	call := rec.now()
	if err := st.Send(req); err != nil {
		return err
	}
	resp, err := st.Recv()
	if err != nil {
		return err
	}
	if len(resp.Results) != len(ids) {
		t.Errorf("batch of %d answered with %d results: code %d %q", len(ids), len(resp.Results), resp.Code, resp.Error)
		return nil
	}
	for i, r := range resp.Results {
		var ierr error
		if r.Code != 0 {
			ierr = status.Error(codes.Code(r.Code), r.Error)
		}
		rec.heartbeat(svc, ids[i], call, &rosterv1.HeartbeatResponse{Ttl: r.Ttl}, ierr)
	}
	return nil
}

// leaseRecorder keeps a checker history of renewals and observations.
type leaseRecorder struct {
	base time.Time
	mu   sync.Mutex
	h    checker.History
	acks map[string]int
	fail map[string]int
}

func newLeaseRecorder() *leaseRecorder {
	return &leaseRecorder{base: time.Now(), acks: map[string]int{}, fail: map[string]int{}}
}

func (r *leaseRecorder) now() int64 { return int64(time.Since(r.base)) }

func (r *leaseRecorder) register(svc, id string, ttl time.Duration, call int64, rev uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Ops = append(r.h.Ops, checker.Op{Kind: checker.KindRegister, Key: checker.InstanceKey("default", svc, id),
		Value: id, TTL: ttl, Call: call, Return: r.now(), Outcome: checker.OutcomeOK, Revision: rev})
}

func (r *leaseRecorder) heartbeat(svc, id string, call int64, resp *rosterv1.HeartbeatResponse, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := checker.InstanceKey("default", svc, id)
	op := checker.Op{Kind: checker.KindHeartbeat, Key: k, Call: call, Return: r.now(), Outcome: checker.OutcomeOK}
	if err != nil {
		op.Outcome, op.Code = checker.OutcomeFail, status.Code(err).String()
		if status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Canceled {
			op.Outcome = checker.OutcomeUnknown
		}
		r.fail[k]++
	} else {
		op.TTL = resp.Ttl.AsDuration()
		r.acks[k]++
	}
	r.h.Ops = append(r.h.Ops, op)
}

func (r *leaseRecorder) gone(svc, id string, call int64, rev uint64, critical bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Expiries = append(r.h.Expiries, checker.Expiry{Key: checker.InstanceKey("default", svc, id),
		Time: r.now(), NotBefore: call, Revision: rev, Critical: critical, Source: "get"})
}

func (r *leaseRecorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	res := checker.CheckLeases(&r.h, 0)
	t.Logf("checker X: %s", res.Summary)
	if !res.OK() {
		t.Fatalf("lease safety violated: %s %v", res.Summary, res)
	}
}

// observe polls svc through nd until ctx ends, recording each instance of
// ids it misses (or sees critical) as an expiry, and returns how many it saw.
// Reads are stale ones at min_revision (after the registrations), so they
// are served by nd alone, through a failover too.
func observeLeases(ctx context.Context, nd *testcluster.Node, svc string, ids []string, minRev uint64, rec *leaseRecorder) (misses int) {
	for ctx.Err() == nil {
		call := rec.now()
		resp, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: svc,
			Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: minRev}})
		if err != nil {
			continue
		}
		seen := map[string]rosterv1.HealthStatus{}
		for _, in := range resp.Instances {
			seen[in.Id] = in.Status
		}
		for _, id := range ids {
			st, ok := seen[id]
			if !ok || st == rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL {
				misses++
				rec.gone(svc, id, call, resp.Header.GetRevision(), ok)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return misses
}

func TestHeartbeatsKeepLeasesForManyTTLs(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	const ttl = time.Second
	rec := newLeaseRecorder()
	ids := []string{"unary-follower", "stream-follower-1", "stream-follower-2", "stream-leader", "batch-follower-1", "batch-follower-2", "batch-leader"}
	var lastRev uint64
	for _, id := range ids {
		call := rec.now()
		resp, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", id, ttl, 0)})
		if err != nil {
			t.Fatal(err)
		}
		rec.register("web", id, ttl, call, resp.Revision)
		lastRev = resp.Revision
	}
	run, stop := context.WithTimeout(ctx, 6*ttl)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(5)
	go func() { defer wg.Done(); heartbeatLoop(run, f, "web", ids[0], ttl/3, rec) }()
	go func() { defer wg.Done(); keepAliveLoop(run, t, f, "web", ids[1:3], false, ttl/3, rec) }()
	go func() { defer wg.Done(); keepAliveLoop(run, t, leader, "web", ids[3:4], false, ttl/3, rec) }()
	go func() { defer wg.Done(); keepAliveLoop(run, t, f, "web", ids[4:6], true, ttl/3, rec) }()
	go func() { defer wg.Done(); keepAliveLoop(run, t, leader, "web", ids[6:], true, ttl/3, rec) }()
	misses := observeLeases(run, c.Followers()[1], "web", ids, lastRev, rec)
	wg.Wait()
	if misses > 0 {
		t.Errorf("instances renewed every ttl/3 were missing or critical %d times over 6 TTLs", misses)
	}
	for _, id := range ids {
		if n := rec.acks[checker.InstanceKey("default", "web", id)]; n < 10 {
			t.Errorf("%s: only %d acknowledged renewals in 6 TTLs", id, n)
		}
	}
	// Leases are counted by whoever leads now.
	st, err := c.WaitLeader().Cluster().Status(ctx, &rosterv1.StatusRequest{})
	if err != nil || st.Leases != uint64(len(ids)) {
		t.Fatalf("leader status reports %d leases (%v), want %d", st.GetLeases(), err, len(ids))
	}
	rec.check(t)
}

func TestLeasesSurviveLeaderCrash(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	old := c.WaitLeader()
	f := c.Followers()[0]
	const ttl = 2 * time.Second
	rec := newLeaseRecorder()
	var ids []string
	var lastRev uint64
	for i := 0; i < 6; i++ {
		id := fmt.Sprintf("i%d", i)
		ids = append(ids, id)
		call := rec.now()
		resp, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("api", id, ttl, 0)})
		if err != nil {
			t.Fatal(err)
		}
		rec.register("api", id, ttl, call, resp.Revision)
		lastRev = resp.Revision
	}
	run, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); heartbeatLoop(run, f, "api", ids[0], ttl/3, rec) }()
	go func() { defer wg.Done(); heartbeatLoop(run, f, "api", ids[1], ttl/2, rec) }()
	go func() { defer wg.Done(); keepAliveLoop(run, t, f, "api", ids[2:4], false, ttl/3, rec) }()
	go func() { defer wg.Done(); keepAliveLoop(run, t, f, "api", ids[4:], true, ttl/3, rec) }()
	missesCh := make(chan int, 1)
	go func() { missesCh <- observeLeases(run, f, "api", ids, lastRev, rec) }()

	// Let the leases run a while, crash the leader, and keep going for
	// several TTLs under the new one.
	c.Eventually("renewals flowing", 10*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.acks[checker.InstanceKey("default", "api", ids[0])] >= 3
	})
	c.Stop(old)
	leader := c.WaitLeader()
	if leader == old {
		t.Fatal("the stopped node still leads")
	}
	deadline := time.Now().Add(4 * ttl)
	c.Eventually("several TTLs under the new leader", 20*time.Second, func() bool { return time.Now().After(deadline) })
	stop()
	wg.Wait()
	if misses := <-missesCh; misses > 0 {
		t.Errorf("live instances were seen missing or critical %d times across the failover", misses)
	}
	// Whoever leads now runs every lease. On a loaded machine leadership
	// may have moved again since the crash: ask the current leader, once
	// it is ready (a leader adopts the leases as it becomes ready).
	var got int
	c.Eventually("the current leader to run every lease", 20*time.Second, func() bool {
		cur := c.WaitLeader()
		got = cur.Node.Leases()
		return cur.Node.LeaderReady() && got == len(ids)
	})
	rec.check(t)
}

func TestReregisterJustAsLeaseExpires(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Configure: noSelfPreservation})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	const ttl = time.Second
	const n = 16
	var wg, checked sync.WaitGroup
	errs := make(chan error, n)
	// done ends the renewals each instance keeps up after its checks, so
	// that its lease is still live when the leader's leases are counted,
	// however long a loaded machine takes to get there.
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		checked.Add(1)
		go func() {
			defer wg.Done()
			checkedOnce := sync.OnceFunc(checked.Done)
			defer checkedOnce()
			id := fmt.Sprintf("race-%d", i)
			nd := c.Running()[i%3]
			first, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("race", id, ttl, 0)})
			if err != nil {
				errs <- err
				return
			}
			// Re-register from 100ms before to 125ms after the first lease
			// can expire, so some land while its expiry is in flight.
			at := time.Now().Add(ttl - 100*time.Millisecond + time.Duration(i)*15*time.Millisecond)
			pace(ctx, time.Until(at))
			second, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("race", id, ttl, 0)})
			if err != nil {
				errs <- err
				return
			}
			if second.Revision <= first.Revision {
				errs <- fmt.Errorf("%s: second registration at %d, first at %d", id, second.Revision, first.Revision)
				return
			}
			// The new registration must live for as long as it heartbeats.
			for j := 0; j < 6; j++ {
				if _, err := nd.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: "race", Id: id}); err != nil {
					errs <- fmt.Errorf("%s: heartbeat %d of the new registration: %v", id, j, err)
					return
				}
				in := lookupInstance(ctx, t, nd, "race", id)
				if in == nil || in.RegistrationRevision != second.Revision {
					errs <- fmt.Errorf("%s: new registration %d gone or replaced: %v", id, second.Revision, in)
					return
				}
				pace(ctx, ttl/4)
			}
			checkedOnce()
			for {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				default:
				}
				_, _ = nd.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: "race", Id: id})
				pace(ctx, ttl/4)
			}
		}()
	}
	checked.Wait()
	// The leader of now (leadership may move on a loaded machine) runs
	// every lease.
	c.Eventually(fmt.Sprintf("the leader to run all %d leases", n), 20*time.Second, func() bool {
		cur := c.WaitLeader()
		return cur.Node.LeaderReady() && cur.Node.Leases() == n
	})
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// heartbeaters runs one cancellable unary heartbeat loop per instance.
type heartbeaters struct {
	ctx    context.Context
	nd     *testcluster.Node
	rec    *leaseRecorder
	wg     sync.WaitGroup
	cancel map[string]context.CancelFunc
}

func (h *heartbeaters) start(svc string, ids ...string) {
	for _, id := range ids {
		ctx, cancel := context.WithCancel(h.ctx)
		h.cancel[svc+"/"+id] = cancel
		h.wg.Add(1)
		go func() { defer h.wg.Done(); heartbeatLoop(ctx, h.nd, svc, id, 250*time.Millisecond, h.rec) }()
	}
}

func (h *heartbeaters) stop(svc string, ids ...string) {
	for _, id := range ids {
		h.cancel[svc+"/"+id]()
	}
}

func TestSelfPreservationHoldsMassExpiryAndLifts(t *testing.T) {
	// fleet has 8 leases, below the default minimum of a group.
	c := testcluster.New(t, 3, testcluster.Options{Configure: func(c *cluster.Config) { c.SelfPreservationMinLeases = 3 }})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := c.Followers()[0]
	const ttl = time.Second
	var fleet, steady []string
	for i := 0; i < 8; i++ {
		fleet = append(fleet, fmt.Sprintf("f%d", i))
	}
	for i := 0; i < 10; i++ {
		steady = append(steady, fmt.Sprintf("s%d", i))
	}
	for svc, ids := range map[string][]string{"fleet": fleet, "steady": steady} {
		for _, id := range ids {
			if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance(svc, id, ttl, 0)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	hb := &heartbeaters{ctx: ctx, nd: f, rec: newLeaseRecorder(), cancel: map[string]context.CancelFunc{}}
	defer hb.wg.Wait()
	hb.start("fleet", fleet...)
	hb.start("steady", steady...)
	defer func() {
		for _, cancel := range hb.cancel {
			cancel()
		}
	}()
	// Self-preservation is the leader's: ask whoever leads now, as an
	// election under load may move leadership during the test.
	status := func() *rosterv1.StatusResponse {
		st, err := c.WaitLeader().Cluster().Status(ctx, &rosterv1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	count := func(svc string) int {
		resp, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Instances)
	}

	// Six of fleet's eight stop at once: 75% of the service, 33% of all.
	dying := fleet[2:]
	hb.stop("fleet", dying...)
	c.Eventually("self-preservation trips for fleet", 10*time.Second, func() bool {
		st := status()
		return st.SelfPreservation && len(st.SelfPreservationServices) == 1 && st.SelfPreservationServices[0] == "default/fleet"
	})
	c.Eventually("the fleet read says so on every node", 10*time.Second, func() bool {
		for _, nd := range c.Nodes {
			resp, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "fleet"})
			if err != nil || !resp.Header.SelfPreservation {
				return false
			}
		}
		return true
	})
	// A held instance says so in its status reason, on every node, and
	// stays in healthy reads.
	c.Eventually("a held instance's status reason says it is held", 10*time.Second, func() bool {
		for _, nd := range c.Nodes {
			resp, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "fleet", HealthyOnly: true})
			if err != nil {
				return false
			}
			held := 0
			for _, in := range resp.Instances {
				if strings.HasPrefix(in.StatusReason, cluster.ReasonHeldPrefix) && in.Status == rosterv1.HealthStatus_HEALTH_STATUS_PASSING {
					held++
				}
			}
			if held == 0 {
				return false
			}
		}
		return true
	})
	resp, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "steady"})
	if err != nil || resp.Header.SelfPreservation {
		t.Fatalf("a read of an unaffected service says self-preservation: %v", err)
	}
	// Held: three TTLs later most of the silent instances are still listed.
	until := time.Now().Add(3 * ttl)
	c.Eventually("three TTLs", 10*time.Second, func() bool { return time.Now().After(until) })
	if n := count("fleet"); n < 6 {
		t.Fatalf("only %d of fleet's 8 instances are listed while expiry is held", n)
	}
	if st := status(); st.HeldExpiries == 0 {
		t.Fatalf("status reports no held expiries: %v", st)
	}
	// Explicit deregistration is never held.
	if _, err := f.Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: "fleet", Id: dying[0]}); err != nil {
		t.Fatal(err)
	}
	if lookupInstance(ctx, t, f, "fleet", dying[0]) != nil {
		t.Fatal("a deregistered instance is still listed during self-preservation")
	}
	dying = dying[1:]

	// Heartbeats come back: expiry resumes (nothing left to expire).
	hb.start("fleet", dying...)
	c.Eventually("self-preservation lifts when heartbeats return", 10*time.Second, func() bool { return !status().SelfPreservation })
	if n := count("steady"); n != len(steady) {
		t.Fatalf("steady lost instances: %d of %d", n, len(steady))
	}

	// They stop again; this time the operator turns self-preservation off
	// and the held expiries go through.
	hb.stop("fleet", dying...)
	c.Eventually("self-preservation trips again", 10*time.Second, func() bool { return status().SelfPreservation })
	off := 0.0
	if _, err := f.Cluster().SetSelfPreservation(ctx, &rosterv1.SetSelfPreservationRequest{Threshold: &off}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("held instances expire once self-preservation is off", 10*time.Second, func() bool {
		return count("fleet") == 2 && !status().SelfPreservation
	})
	if st := status(); st.SelfPreservationThreshold != 0 {
		t.Fatalf("threshold %v after turning it off", st.SelfPreservationThreshold)
	}
	if n := count("steady"); n != len(steady) {
		t.Fatalf("steady lost instances: %d of %d", n, len(steady))
	}
}

// A heartbeat on an expired lease (the instance kept critical) must not be
// acknowledged before the instance is committed passing again, even when
// another heartbeat of the same instance is committing that already: the
// leader here is cut off, so that commit never happens, and the new leader
// sees only what was committed.
func TestConcurrentHeartbeatsOnExpiredLeaseAckOnlyOnceRevived(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Configure: noSelfPreservation})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	old := c.WaitLeader()
	const ttl = 2 * time.Second
	rec := newLeaseRecorder()
	call := rec.now()
	resp, err := old.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("rev", "x", ttl, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	rec.register("rev", "x", ttl, call, resp.Revision)
	c.Eventually("the silent instance turns critical", 10*time.Second, func() bool {
		in := lookupInstance(ctx, t, old, "rev", "x")
		return in != nil && in.Status == rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL
	})

	// Cut the leader off and renew at once, several times: one heartbeat
	// starts committing the revival, which cannot commit now.
	c.Partition(old)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call := rec.now()
			resp, err := old.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: "rev", Id: "x"})
			rec.heartbeat("rev", "x", call, resp, err)
		}()
	}
	wg.Wait()
	leader := c.WaitLeader()
	call = rec.now()
	get, err := leader.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "rev"})
	if err != nil {
		t.Fatal(err)
	}
	var in *rosterv1.Instance
	for _, i := range get.Instances {
		if i.Id == "x" {
			in = i
		}
	}
	if in == nil || in.Status == rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL {
		rec.gone("rev", "x", call, get.Header.GetRevision(), in != nil)
	}
	t.Logf("acknowledged heartbeats while cut off: %d", rec.acks[checker.InstanceKey("default", "rev", "x")])
	rec.check(t)
}

// TestKeepAliveBatchLimitIsTheSDKs: the SDK's batch limit is the server's.
func TestKeepAliveBatchLimitIsTheSDKs(t *testing.T) {
	if rpc.MaxKeepAliveBatch != client.MaxKeepAliveBatch {
		t.Fatalf("server takes %d instances a KeepAlive message, the SDK thinks %d", rpc.MaxKeepAliveBatch, client.MaxKeepAliveBatch)
	}
}

// oldKeepAlive makes one node's KeepAlive end its stream at the first
// batch, refusing the unknown field as a server from before batches does.
type oldKeepAlive struct {
	node    atomic.Value // string: the node that is "old"
	refused atomic.Int64
}

func (o *oldKeepAlive) options(id string) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod != rosterv1.Registry_KeepAlive_FullMethodName {
			return h(srv, ss)
		}
		return h(srv, &oldKeepAliveStream{ServerStream: ss, o: o, id: id})
	})}
}

type oldKeepAliveStream struct {
	grpc.ServerStream
	o  *oldKeepAlive
	id string
}

func (s *oldKeepAliveStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if req, ok := m.(*rosterv1.HeartbeatRequest); ok && len(req.Instances) > 0 && s.o.node.Load() == s.id {
		s.o.refused.Add(1)
		return status.Error(codes.InvalidArgument, "request has fields this server does not know (in roster.v1.HeartbeatRequest)")
	}
	return nil
}

// TestFollowerRelaysBatchesToAnOldLeader: during a rolling upgrade a new
// follower may relay to a leader that does not know batches. The leader
// ends the upstream stream at the first batch; every renewal is still
// answered, in order and per instance, and later batches go to the leader
// as unary renewals without another refusal.
func TestFollowerRelaysBatchesToAnOldLeader(t *testing.T) {
	old := &oldKeepAlive{}
	old.node.Store("")
	c := testcluster.New(t, 3, testcluster.Options{GRPCOptions: old.options})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	for _, id := range []string{"a", "b", "c"} {
		if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", id, time.Hour, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	old.node.Store(leader.ID)
	batch := func(ids ...string) *rosterv1.HeartbeatRequest {
		req := &rosterv1.HeartbeatRequest{}
		for _, id := range ids {
			req.Instances = append(req.Instances, &rosterv1.InstanceRef{Service: "web", Id: id})
		}
		return req
	}
	reqs := []*rosterv1.HeartbeatRequest{batch("a", "b"), {Service: "web", Id: "c"}, batch("a", "nobody"), batch("b", "c")}
	want := [][]codes.Code{{codes.OK, codes.OK}, {codes.OK}, {codes.OK, codes.NotFound}, {codes.OK, codes.OK}}
	st, err := f.Registry().KeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, req := range reqs {
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		got := []codes.Code{codes.Code(resp.Code)}
		if len(req.Instances) > 0 {
			got = nil
			for _, r := range resp.Results {
				got = append(got, codes.Code(r.Code))
			}
		}
		if !slices.Equal(got, want[i]) {
			t.Fatalf("answer %d: codes %v (%q), want %v", i, got, resp.Error, want[i])
		}
	}
	if n := old.refused.Load(); n != 1 {
		t.Fatalf("the old leader refused %d batches, want only the first", n)
	}
}

package rpc_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestReportHealthSetsTheStatusOfATTLInstance: through a follower, a TTL
// instance reports warning, critical and passing; each change is committed
// and seen everywhere, a repeated status writes nothing, and bad requests
// or an instance without a TTL get a clear error.
func TestReportHealthSetsTheStatusOfATTLInstance(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := c.Followers()[0]
	if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", "a", time.Minute, 0)}); err != nil {
		t.Fatal(err)
	}
	report := func(st rosterv1.HealthStatus, reason string) *rosterv1.ReportHealthResponse {
		t.Helper()
		resp, err := f.Registry().ReportHealth(ctx, &rosterv1.ReportHealthRequest{Service: "web", Id: "a", Status: st, Reason: reason})
		if err != nil {
			t.Fatalf("report %s: %v", st, err)
		}
		if resp.Ttl.AsDuration() != time.Minute {
			t.Fatalf("report %s: ttl %v", st, resp.Ttl)
		}
		return resp
	}
	for _, step := range []struct {
		st     rosterv1.HealthStatus
		reason string
	}{
		{rosterv1.HealthStatus_HEALTH_STATUS_WARNING, "disk 91% full"},
		{rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL, "database unreachable"},
		{rosterv1.HealthStatus_HEALTH_STATUS_PASSING, "ok"},
	} {
		resp := report(step.st, step.reason)
		got, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
			Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: resp.Revision}})
		if err != nil || len(got.Instances) != 1 {
			t.Fatalf("read after %s: %v %v", step.st, got, err)
		}
		if in := got.Instances[0]; in.Status != step.st || in.StatusReason != step.reason || in.ModRevision != resp.Revision {
			t.Fatalf("after reporting %s: status %s %q at %d, want %q at %d", step.st, in.Status, in.StatusReason, in.ModRevision, step.reason, resp.Revision)
		}
	}
	// Passing again changes nothing: no revision, no Raft write.
	before, _ := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
	again := report(rosterv1.HealthStatus_HEALTH_STATUS_PASSING, "still ok")
	after, _ := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
	if again.Revision != before.ServiceRevision || after.ServiceRevision != before.ServiceRevision {
		t.Fatalf("repeated passing moved the service: %d -> %d (reply %d)", before.ServiceRevision, after.ServiceRevision, again.Revision)
	}

	if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "plain", 8080)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  *rosterv1.ReportHealthRequest
		code codes.Code
		msg  string // the start of the error's message, when set
	}{
		{"no ttl", &rosterv1.ReportHealthRequest{Service: "web", Id: "plain", Status: rosterv1.HealthStatus_HEALTH_STATUS_WARNING}, codes.FailedPrecondition,
			"report health of default/web/plain: instance has no TTL lease; register it with --ttl to report its own health"},
		{"unknown", &rosterv1.ReportHealthRequest{Service: "web", Id: "nope", Status: rosterv1.HealthStatus_HEALTH_STATUS_PASSING}, codes.NotFound,
			"report health of default/web/nope: "},
		{"no status", &rosterv1.ReportHealthRequest{Service: "web", Id: "a"}, codes.InvalidArgument, ""},
		{"bad status", &rosterv1.ReportHealthRequest{Service: "web", Id: "a", Status: 9}, codes.InvalidArgument, ""},
		{"bad service", &rosterv1.ReportHealthRequest{Service: "Web!", Id: "a", Status: rosterv1.HealthStatus_HEALTH_STATUS_PASSING}, codes.InvalidArgument, ""},
		{"long reason", &rosterv1.ReportHealthRequest{Service: "web", Id: "a", Status: rosterv1.HealthStatus_HEALTH_STATUS_WARNING, Reason: string(make([]byte, 2000))}, codes.InvalidArgument, ""},
	} {
		_, err := f.Registry().ReportHealth(ctx, tc.req)
		if status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
		if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, tc.msg) {
			t.Errorf("%s: message %q, want it to start %q", tc.name, msg, tc.msg)
		}
	}
	// A heartbeat says it was a heartbeat.
	_, err := f.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: "web", Id: "plain"})
	if want := "heartbeat default/web/plain: instance has no TTL lease; register it with a TTL to heartbeat"; status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != want {
		t.Errorf("heartbeat without a ttl: %v, want FailedPrecondition %q", err, want)
	}
	got, _ := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
	for _, in := range got.Instances {
		if in.Status != rosterv1.HealthStatus_HEALTH_STATUS_PASSING {
			t.Fatalf("a rejected report changed %s: %s %q", in.Id, in.Status, in.StatusReason)
		}
	}
}

// TestReportHealthRevivesAnExpiredLease: a lease that ran out (kept
// critical by deregister_critical_after) comes back in the reported status.
func TestReportHealthRevivesAnExpiredLease(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := c.Followers()[0]
	if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", "a", time.Second, time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("the lease expires", 20*time.Second, func() bool {
		return lookupInstance(ctx, t, f, "web", "a").GetStatus() == rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL
	})
	resp, err := f.Registry().ReportHealth(ctx, &rosterv1.ReportHealthRequest{Service: "web", Id: "a",
		Status: rosterv1.HealthStatus_HEALTH_STATUS_WARNING, Reason: "degraded"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
		Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: resp.Revision}})
	if err != nil || len(got.Instances) != 1 || got.Instances[0].Status != rosterv1.HealthStatus_HEALTH_STATUS_WARNING {
		t.Fatalf("after reporting warning on an expired lease: %v %v", got, err)
	}
}

// TestBlockingQueryOnAnAbsentServiceWaitsForIt: a blocking query on a
// service with no instances is not woken by changes to other services,
// and returns when the service gets an instance.
func TestBlockingQueryOnAnAbsentServiceWaitsForIt(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, f := c.WaitLeader(), c.Followers()[0]
	// "gone" had an instance once; "never" had none.
	if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("gone", "a", 1)}); err != nil {
		t.Fatal(err)
	}
	del, err := leader.Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: "gone", Id: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"gone", "never"} {
		first, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: svc,
			Read: &rosterv1.ReadOptions{MinRevision: del.Revision}})
		if err != nil || first.ServiceRevision != del.Revision {
			t.Fatalf("%s: revision %d, %v; want the last extinction %d", svc, first.GetServiceRevision(), err, del.Revision)
		}
		done := make(chan *rosterv1.GetServiceResponse, 1)
		go func() {
			resp, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: svc,
				WaitRevision: first.ServiceRevision, WaitTimeout: durationpb.New(time.Minute)})
			if err != nil {
				t.Error(err)
			}
			done <- resp
		}()
		// Other services change; the registry revision moves past the
		// query's. None of it may answer the query.
		var last uint64
		for i := range 5 {
			w, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("other", "a", uint32(i+1))})
			if err != nil {
				t.Fatal(err)
			}
			last = w.Revision
		}
		// Let the follower apply them while the query waits.
		if _, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "other",
			Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: last}}); err != nil {
			t.Fatal(err)
		}
		select {
		case resp := <-done:
			t.Fatalf("%s: the query returned on other services' changes: %v", svc, resp)
		default:
		}
		w, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance(svc, "b", 2)})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case resp := <-done:
			if resp.GetServiceRevision() != w.Revision || len(resp.GetInstances()) != 1 {
				t.Fatalf("%s: answered %v; want the instance at %d", svc, resp, w.Revision)
			}
		case <-ctx.Done():
			t.Fatalf("%s: the query did not return when the service got an instance", svc)
		}
		if _, err := leader.Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: svc, Id: "b"}); err != nil {
			t.Fatal(err)
		}
		d2, _ := leader.Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: "other", Id: "a"})
		del = d2
	}
}

package rpc_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

const (
	passing  = rosterv1.HealthStatus_HEALTH_STATUS_PASSING
	warning  = rosterv1.HealthStatus_HEALTH_STATUS_WARNING
	critical = rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL
)

func checked(svc, id string, hc *rosterv1.HealthCheck) *rosterv1.Instance {
	in := instance(svc, id, 8080)
	hc.Interval = durationpb.New(time.Second)
	hc.Timeout = durationpb.New(500 * time.Millisecond)
	in.Check = hc
	return in
}

func statusOf(ctx context.Context, t *testing.T, nd *testcluster.Node, svc, id string) rosterv1.HealthStatus {
	t.Helper()
	in := lookupInstance(ctx, t, nd, svc, id)
	if in == nil {
		t.Fatalf("%s/%s is not registered", svc, id)
	}
	return in.Status
}

// probes counts the requests a test target has served.
type probes struct {
	n    atomic.Int64
	code atomic.Int64
	// flap alternates 200 and 500 when set.
	flap atomic.Bool
}

func (p *probes) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	n := p.n.Add(1)
	code := int(p.code.Load())
	if p.flap.Load() {
		code = http.StatusOK
		if n%2 == 0 {
			code = http.StatusInternalServerError
		}
	}
	w.WriteHeader(code)
}

// waitProbes waits until the target has served k more probes.
func waitProbes(c *testcluster.Cluster, p *probes, k int64) {
	target := p.n.Load() + k
	c.Eventually("probes", time.Duration(k+5)*2*time.Second, func() bool { return p.n.Load() >= target })
}

func TestHTTPCheckThresholdsAndNoWritesWhenUnchanged(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := c.Followers()[0]
	p := &probes{}
	p.code.Store(http.StatusOK)
	srv := httptest.NewServer(p)
	defer srv.Close()

	in := checked("web", "h", &rosterv1.HealthCheck{Target: &rosterv1.HealthCheck_Http{Http: srv.URL + "/health"},
		FailuresBeforeCritical: 2, SuccessesBeforePassing: 2})
	if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: in}); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(ctx, t, f, "web", "h"); st != critical {
		t.Fatalf("a checked instance starts %v, want critical until its check passes", st)
	}
	c.Eventually("passing after two successes", 15*time.Second, func() bool { return statusOf(ctx, t, f, "web", "h") == passing })

	// Unchanged results write nothing to Raft. A linearizable read brings
	// the leader's state up to every command committed before it; the
	// applied index moves with every command and with nothing else (the
	// barrier entries reads append never reach the FSM).
	leader := c.WaitLeader()
	commands := func() uint64 {
		lookupInstance(ctx, t, leader, "web", "h")
		return leader.Node.Applied()
	}
	before := commands()
	waitProbes(c, p, 3)
	if after := commands(); after != before {
		t.Fatalf("three unchanged results moved the raft log from %d to %d", before, after)
	}

	// One failure is below the threshold; the second turns it critical.
	p.code.Store(http.StatusInternalServerError)
	waitProbes(c, p, 1)
	if st := statusOf(ctx, t, f, "web", "h"); st != passing {
		t.Fatalf("after one failure (threshold 2) the instance is %v", st)
	}
	c.Eventually("critical after two failures", 15*time.Second, func() bool { return statusOf(ctx, t, f, "web", "h") == critical })

	// Flapping (200, 500, 200, ...) never meets either threshold: no
	// transition and no raft write.
	p.flap.Store(true)
	before = commands()
	waitProbes(c, p, 5)
	if st := statusOf(ctx, t, f, "web", "h"); st != critical {
		t.Fatalf("a flapping target moved the instance to %v", st)
	}
	if after := commands(); after != before {
		t.Fatalf("flapping results moved the raft log from %d to %d", before, after)
	}

	// 429 is warning: still listed, but not healthy (passing and enabled).
	p.flap.Store(false)
	p.code.Store(http.StatusTooManyRequests)
	c.Eventually("warning on 429", 15*time.Second, func() bool { return statusOf(ctx, t, f, "web", "h") == warning })
	resp, err := f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web", HealthyOnly: true})
	if err != nil || len(resp.Instances) != 0 {
		t.Fatalf("healthy_only listed a warning instance: %v %v", resp.GetInstances(), err)
	}
	resp, err = f.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
	if err != nil || len(resp.Instances) != 1 {
		t.Fatalf("a warning instance is not listed: %v %v", resp.GetInstances(), err)
	}
	if r := resp.Instances[0].StatusReason; r == "" || resp.Instances[0].StatusChangedAt == nil {
		t.Fatalf("status reason %q / changed at %v not reported", r, resp.Instances[0].StatusChangedAt)
	}
}

func TestTCPAndGRPCChecks(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := c.Followers()[0]

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			_ = conn.Close()
		}
	}()
	hs := health.NewServer()
	hs.SetServingStatus("pay", healthpb.HealthCheckResponse_SERVING)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(glis) }()
	defer gs.Stop()

	for _, in := range []*rosterv1.Instance{
		checked("svc", "tcp", &rosterv1.HealthCheck{Target: &rosterv1.HealthCheck_Tcp{Tcp: lis.Addr().String()}}),
		checked("svc", "grpc", &rosterv1.HealthCheck{Target: &rosterv1.HealthCheck_Grpc{Grpc: glis.Addr().String()}, GrpcService: "pay"}),
	} {
		if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: in}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"tcp", "grpc"} {
		c.Eventually(id+" check passing", 15*time.Second, func() bool { return statusOf(ctx, t, f, "svc", id) == passing })
	}
	_ = lis.Close()
	hs.SetServingStatus("pay", healthpb.HealthCheckResponse_NOT_SERVING)
	for _, id := range []string{"tcp", "grpc"} {
		c.Eventually(id+" check critical", 15*time.Second, func() bool { return statusOf(ctx, t, f, "svc", id) == critical })
	}
	hs.SetServingStatus("pay", healthpb.HealthCheckResponse_SERVING)
	c.Eventually("grpc check passing again", 15*time.Second, func() bool { return statusOf(ctx, t, f, "svc", "grpc") == passing })
}

func TestNewLeaderTakesOverChecksWithoutFalseTransitions(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	p := &probes{}
	p.code.Store(http.StatusOK)
	srv := httptest.NewServer(p)
	defer srv.Close()
	old := c.WaitLeader()
	if _, err := old.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: checked("web", "h",
		&rosterv1.HealthCheck{Target: &rosterv1.HealthCheck_Http{Http: srv.URL}, FailuresBeforeCritical: 3})}); err != nil {
		t.Fatal(err)
	}
	f := c.Followers()[0]
	c.Eventually("passing", 15*time.Second, func() bool { return statusOf(ctx, t, f, "web", "h") == passing })
	rev := lookupInstance(ctx, t, f, "web", "h").ModRevision

	c.Stop(old)
	leader := c.WaitLeader()
	waitProbes(c, p, 3)
	in := lookupInstance(ctx, t, leader, "web", "h")
	if in.Status != passing || in.ModRevision != rev {
		t.Fatalf("after the failover the instance is %v at revision %d (was passing at %d): a false transition", in.Status, in.ModRevision, rev)
	}
	// The new leader runs the check: it notices a real failure.
	p.code.Store(http.StatusServiceUnavailable)
	c.Eventually("critical under the new leader", 20*time.Second, func() bool { return statusOf(ctx, t, leader, "web", "h") == critical })
}

func TestMaintenanceDrainsAndFiltersSelect(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := c.Followers()[0]
	mk := func(id, zone string, tags []string, meta map[string]string) *rosterv1.Instance {
		in := instance("web", id, 80)
		in.Zone, in.Tags, in.Metadata = zone, tags, meta
		return in
	}
	for _, in := range []*rosterv1.Instance{
		mk("a", "eu-1", []string{"v2", "canary"}, map[string]string{"arch": "arm"}),
		mk("b", "eu-1", []string{"v2"}, map[string]string{"arch": "x86"}),
		mk("c", "us-1", []string{"v1"}, map[string]string{"arch": "arm"}),
	} {
		if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: in}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Registry().SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{Service: "web", Id: "b", Enabled: false, Reason: "deploy"}); err != nil {
		t.Fatal(err)
	}
	ids := func(req *rosterv1.GetServiceRequest) string {
		req.Service = "web"
		resp, err := f.Registry().GetService(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		s := ""
		for _, in := range resp.Instances {
			s += in.Id
		}
		return s
	}
	for _, tt := range []struct {
		name string
		req  *rosterv1.GetServiceRequest
		want string
	}{
		{"all, drained included", &rosterv1.GetServiceRequest{}, "abc"},
		{"healthy_only leaves the drained out", &rosterv1.GetServiceRequest{HealthyOnly: true}, "ac"},
		{"tags: all of them", &rosterv1.GetServiceRequest{Tags: []string{"v2", "canary"}}, "a"},
		{"metadata equality", &rosterv1.GetServiceRequest{Metadata: map[string]string{"arch": "arm"}}, "ac"},
		{"zone", &rosterv1.GetServiceRequest{Zone: "eu-1"}, "ab"},
		{"zone and healthy", &rosterv1.GetServiceRequest{Zone: "eu-1", HealthyOnly: true}, "a"},
	} {
		if got := ids(tt.req); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	b := lookupInstance(ctx, t, f, "web", "b")
	if b.Enabled || b.MaintenanceReason != "deploy" {
		t.Fatalf("drained instance: enabled=%v reason=%q", b.Enabled, b.MaintenanceReason)
	}
	if _, err := f.Registry().SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{Service: "web", Id: "b", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if got := ids(&rosterv1.GetServiceRequest{HealthyOnly: true}); got != "abc" {
		t.Fatalf("after maintenance off, healthy: %q", got)
	}
}

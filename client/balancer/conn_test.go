package balancer_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/roster-registry/roster/client/balancer"
)

// countingServer is a gRPC server that counts the connections it accepted
// and the calls it served.
type countingServer struct {
	addr    string
	accepts atomic.Int64
	calls   atomic.Int64
}

type countingListener struct {
	net.Listener
	s *countingServer
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.accepts.Add(1)
	}
	return c, err
}

func startCounting(t *testing.T) *countingServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &countingServer{addr: lis.Addr().String()}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		s.calls.Add(1)
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(countingListener{lis, s}) }()
	t.Cleanup(srv.Stop)
	return s
}

// TestNewWeightsKeepTheConnections: an update that changes only what the
// balancer reads (weight, zone, tags, metadata) keeps every connection,
// and the picks follow the new weights.
func TestNewWeightsKeepTheConnections(t *testing.T) {
	a, b := startCounting(t), startCounting(t)
	state := func(wa, wb uint32, tag string) resolver.State {
		return resolver.State{Addresses: []resolver.Address{
			balancer.SetInfo(resolver.Address{Addr: a.addr}, &balancer.Info{ID: "a", Weight: wa, Tags: []string{tag}}),
			balancer.SetInfo(resolver.Address{Addr: b.addr}, &balancer.Info{ID: "b", Weight: wb, Tags: []string{tag}, Metadata: map[string]string{"v": tag}}),
		}}
	}
	r := manual.NewBuilderWithScheme("countingtest")
	r.InitialState(state(1, 1, "v1"))
	conn, err := grpc.NewClient(r.Scheme()+":///svc", grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(balancer.ServiceConfig(balancer.WeightedRoundRobin, "")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	call := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
	// Both connected and picked.
	deadline := time.Now().Add(20 * time.Second)
	for a.calls.Load() == 0 || b.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("calls never reached both servers: %d, %d", a.calls.Load(), b.calls.Load())
		}
		call()
	}

	r.UpdateState(state(1, 99, "v2"))
	// The new weights reach the picker with the next picker built from
	// this state: wait for a window of 100 picks that follows them.
	for {
		if time.Now().After(deadline) {
			t.Fatal("the picks never followed the new weights 1:99")
		}
		ca, cb := a.calls.Load(), b.calls.Load()
		for range 100 {
			call()
		}
		if da, db := a.calls.Load()-ca, b.calls.Load()-cb; da <= 2 && db >= 98 {
			break
		}
	}
	if na, nb := a.accepts.Load(), b.accepts.Load(); na != 1 || nb != 1 {
		t.Fatalf("connections accepted: %d and %d, want 1 each: the update replaced connections", na, nb)
	}
}

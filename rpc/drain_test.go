package rpc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// wantDraining fails unless err is the status a draining node ends streams
// with.
func wantDraining(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.Unavailable || rpc.Reason(err) != rpc.ReasonNodeDraining {
		t.Errorf("%s ended with %v (reason %q), want Unavailable with %s", what, err, rpc.Reason(err), rpc.ReasonNodeDraining)
	}
}

// TestDrainEndsStreamsAndGracefulStopReturns: with many watch and keepalive
// streams open, Drain ends every one of them with NODE_DRAINING after health
// says NOT_SERVING, and GracefulStop then returns instead of waiting for
// them.
func TestDrainEndsStreamsAndGracefulStopReturns(t *testing.T) {
	const watchers, keepalives = 100, 20
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.Nodes[0]
	ctx := testcluster.Ctx(t)
	if _, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", "w1", 10*time.Second, 0)}); err != nil {
		t.Fatalf("register: %v", err)
	}
	// Health is checked on a connection of its own, as a load balancer would.
	hc, err := grpc.NewClient(nd.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	health := healthpb.NewHealthClient(hc)
	healthAt := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return resp.Status
	}
	if got := healthAt(); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before drain: %v", got)
	}
	hw, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := hw.Recv(); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v, %v", resp, err)
	}

	type ended struct {
		what string
		err  error
		// health as seen right after the stream ended
		health healthpb.HealthCheckResponse_ServingStatus
	}
	ends := make(chan ended, watchers+keepalives+1)
	for i := range watchers {
		w, err := nd.Registry().Watch(ctx, &rosterv1.WatchRequest{Service: "web"})
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("watch %d first message: %v", i, err)
		}
		go func() {
			for {
				if _, err := w.Recv(); err != nil {
					ends <- ended{"watch", err, healthAt()}
					return
				}
			}
		}()
	}
	for i := range keepalives {
		ka, err := nd.Registry().KeepAlive(ctx)
		if err != nil {
			t.Fatalf("keepalive %d: %v", i, err)
		}
		if err := ka.Send(&rosterv1.HeartbeatRequest{Service: "web", Id: "w1"}); err != nil {
			t.Fatalf("keepalive %d send: %v", i, err)
		}
		if resp, err := ka.Recv(); err != nil || resp.Code != 0 {
			t.Fatalf("keepalive %d first answer: %v, %v", i, resp, err)
		}
		go func() {
			for {
				if _, err := ka.Recv(); err != nil {
					ends <- ended{"keepalive", err, healthAt()}
					return
				}
			}
		}()
	}
	var lastHealth []healthpb.HealthCheckResponse_ServingStatus
	go func() {
		for {
			resp, err := hw.Recv()
			if err != nil {
				ends <- ended{"health watch", err, healthAt()}
				return
			}
			lastHealth = append(lastHealth, resp.Status)
		}
	}()

	start := time.Now()
	nd.Server.Drain()
	deadline := time.After(30 * time.Second) // catches hangs only
	for range watchers + keepalives + 1 {
		select {
		case e := <-ends:
			wantDraining(t, e.what, e.err)
			if e.health != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Errorf("%s ended while health said %v, want NOT_SERVING first", e.what, e.health)
			}
		case <-deadline:
			t.Fatalf("streams still open 30s after drain")
		}
	}
	if len(lastHealth) == 0 || lastHealth[len(lastHealth)-1] != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health watch statuses after SERVING: %v, want NOT_SERVING last", lastHealth)
	}
	// A stream opened while draining is turned away the same way.
	w, err := nd.Registry().Watch(ctx, &rosterv1.WatchRequest{Service: "web"})
	if err == nil {
		_, err = w.Recv()
	}
	wantDraining(t, "watch opened while draining", err)

	stopped := make(chan struct{})
	go func() { nd.GRPC.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("GracefulStop still waiting 30s after drain")
	}
	t.Logf("drain with %d watch and %d keepalive streams open: GracefulStop returned %s after Drain",
		watchers, keepalives, time.Since(start))
}

// TestClientMovesToAnotherNodeWhenOneDrains: the SDK's watch and keepalive
// session reconnect to the next endpoint when their node drains, and lose
// nothing.
func TestClientMovesToAnotherNodeWhenOneDrains(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	fs := c.Followers()
	draining, other := fs[0], fs[1]
	cl, err := client.New(ctx, []string{draining.Addr, other.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", "w1", 10*time.Second, 0)}); err != nil {
		t.Fatalf("register: %v", err)
	}

	type msg struct {
		resp *rosterv1.WatchResponse
		err  error
	}
	msgs := make(chan msg, 16)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for resp, err := range cl.Watch(wctx, &rosterv1.WatchRequest{Service: "web"}) {
			select {
			case msgs <- msg{resp, err}:
			case <-wctx.Done():
				return
			}
		}
	}()
	next := func() *rosterv1.WatchResponse {
		t.Helper()
		select {
		case m := <-msgs:
			if m.err != nil {
				t.Fatalf("watch yielded error %v", m.err)
			}
			return m.resp
		case <-time.After(20 * time.Second):
			t.Fatal("no watch message")
		}
		return nil
	}
	if first := next(); !first.Reset_ || first.Header.GetNodeId() != draining.ID {
		t.Fatalf("first watch message from %s (reset %v), want a reset from %s", first.Header.GetNodeId(), first.Reset_, draining.ID)
	}

	s, err := cl.KeepAlive(ctx, 3*time.Second, client.InstanceKey{Service: "web", ID: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nextEvent := func(kind client.LeaseEventKind) client.LeaseEvent {
		t.Helper()
		for {
			select {
			case ev := <-s.Events():
				if ev.Kind == kind {
					return ev
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("no %v event", kind)
			}
		}
	}
	if ev := nextEvent(client.StreamConnected); ev.Endpoint != draining.Addr {
		t.Fatalf("keepalive connected to %s, want %s", ev.Endpoint, draining.Addr)
	}

	draining.Server.Drain()
	broken := nextEvent(client.StreamBroken)
	if broken.Endpoint != draining.Addr {
		t.Errorf("broken stream on %s, want %s", broken.Endpoint, draining.Addr)
	}
	wantDraining(t, "keepalive session stream", broken.Err)
	if ev := nextEvent(client.StreamConnected); ev.Endpoint != other.Addr {
		t.Fatalf("keepalive reconnected to %s, want %s", ev.Endpoint, other.Addr)
	}

	resp, err := cl.Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", "w2", 10*time.Second, 0)})
	if err != nil {
		t.Fatalf("register after drain: %v", err)
	}
	// Whatever the draining node had not sent yet comes first, from either.
	got := next()
	for len(got.Events) == 0 || got.Events[len(got.Events)-1].GetInstance().GetId() != "w2" {
		got = next()
	}
	if got.Header.GetNodeId() != other.ID || got.Reset_ || len(got.Events) != 1 ||
		got.Events[0].GetInstance().GetId() != "w2" || got.Revision != resp.GetRevision() {
		t.Fatalf("watch message after drain: node %s reset %v events %v revision %d; want the w2 event at %d from %s",
			got.Header.GetNodeId(), got.Reset_, got.Events, got.Revision, resp.GetRevision(), other.ID)
	}
}

// TestADrainingNodeStopsWaitingForALeader: once a node drains, a call that
// needs the leader makes no further attempt to find one, so a SIGTERM is
// not held up for the hold timeout by calls that cannot finish here; the
// client is told to go elsewhere.
func TestADrainingNodeStopsWaitingForALeader(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) { o.HoldTimeout = time.Minute }})
	leader := c.WaitLeader()
	c.WaitMembersKnown()
	var left *testcluster.Node
	for _, nd := range c.Followers() {
		if left == nil {
			left = nd
			continue
		}
		c.Stop(nd)
	}
	c.Stop(leader)
	left.Server.Drain()

	ctx := testcluster.Ctx(t)
	check := func(when string) {
		_, err := left.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
			t.Errorf("%s: linearizable read on a draining node without a leader: %v, want Unavailable saying it is shutting down", when, err)
		}
		_, err = left.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", "w1", 10*time.Second, 0)})
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
			t.Errorf("%s: register on a draining node without a leader: %v, want Unavailable saying it is shutting down", when, err)
		}
	}
	// At once the node may still name the stopped leader (its calls fail
	// to reach it); once it has noticed, it knows no leader at all, and
	// the answer still says that it is shutting down.
	check("at once")
	c.Eventually("the node to know no leader", time.Minute, func() bool {
		id, _ := left.Node.Leader()
		return id == ""
	})
	check("knowing no leader")
}

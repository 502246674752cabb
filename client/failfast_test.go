package client

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

type errRefused struct{}

func (errRefused) Error() string { return "connection refused" }

// refuseFirstDial is a dialer whose first dial is refused ("connect:
// connection refused"), so the connection is in TransientFailure when
// invoke first looks at it; later dials connect.
func refuseFirstDial() func(ctx context.Context, addr string) (net.Conn, error) {
	var dials atomic.Int32
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.OpError{Op: "connect", Err: errRefused{}}}
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
}

// registerSentThenLost makes a Register whose first attempt is made while
// the connection was not ready when invoke looked (TransientFailure), but
// became ready before gRPC picked it: it is sent, the fake server records
// it and its answer is lost (Unavailable, "error reading from server:
// EOF"); then after(c) runs (the server goes away, or the client closes).
// The client has WithFailFastWrites. It returns how many Registers the
// server saw and Register's error.
func registerSentThenLost(t *testing.T, after func(f *fakeServer, c *Client)) (seen int, err error) {
	t.Helper()
	f := startFake(t, newFakeState())
	f.setFail("Register", status.Error(codes.Unavailable, "error reading from server: EOF"))
	var cl atomic.Pointer[Client]
	var first atomic.Bool
	// Forces the window between invoke's GetState and gRPC's pick: the
	// connection becomes ready, and the call is sent.
	icpt := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == rosterv1.Registry_Register_FullMethodName && first.CompareAndSwap(false, true) {
			for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
				cc.Connect()
				cc.WaitForStateChange(ctx, s)
			}
			err := inv(ctx, method, req, reply, cc, opts...)
			after(f, cl.Load())
			return err
		}
		return inv(ctx, method, req, reply, cc, opts...)
	}
	c, err := New(context.Background(), []string{f.addr}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond), WithFailFastWrites(),
		WithDialOptions(grpc.WithContextDialer(refuseFirstDial()), grpc.WithUnaryInterceptor(icpt)))
	if err != nil {
		t.Fatal(err)
	}
	cl.Store(c)
	defer c.Close()
	ctx, cancel := context.WithTimeout(testContext(t), 5*time.Second)
	defer cancel()
	_, err = c.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}})
	t.Logf("register: %v; server saw %d Register(s); mayBeApplied=%v", err, f.count("Register"), mayBeApplied(err))
	return f.count("Register"), err
}

// TestASentWriteThenRefusedMayHaveBeenApplied: a write sent on a connection
// that was not ready when invoke looked, whose server then goes away
// (refuses connections), must not end as a plain Unavailable (which
// mayBeApplied reads as "not applied").
func TestASentWriteThenRefusedMayHaveBeenApplied(t *testing.T) {
	seen, err := registerSentThenLost(t, func(f *fakeServer, _ *Client) { f.srv.Stop() })
	if seen > 0 && !mayBeApplied(err) {
		t.Fatalf("a write the server received ended with %v, which mayBeApplied reads as not applied", err)
	}
}

// TestASentWriteThenCloseIsNotErrClosed: as above, but the client is
// closed while the write's outcome is unknown: the error must not be
// ErrClosed, which says nothing was applied.
func TestASentWriteThenCloseIsNotErrClosed(t *testing.T) {
	seen, err := registerSentThenLost(t, func(_ *fakeServer, c *Client) { c.Close() })
	if seen > 0 && errors.Is(err, ErrClosed) {
		t.Fatalf("a write the server received ended with %v, which says nothing was applied", err)
	}
}

// TestAWriteWaitsOutARestartingLoneEndpoint: the one endpoint a client
// knows (a single node, or a load balancer in front of the cluster) refuses
// the first connection while it restarts and accepts the next. A write with
// a deadline waits out the restart, unless the client was made with
// WithFailFastWrites.
func TestAWriteWaitsOutARestartingLoneEndpoint(t *testing.T) {
	f := startFake(t, newFakeState())
	c, err := New(context.Background(), []string{f.addr}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond),
		WithDialOptions(grpc.WithContextDialer(refuseFirstDial())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(testContext(t), 5*time.Second)
	defer cancel()
	if _, err := c.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}}); err != nil {
		t.Fatalf("register through a restart of the lone endpoint: %v", err)
	}
}

// TestASentUnsentOnlyCallIsNotRetried: a call that must not be applied
// twice (RemoveNode: it carries no request id) is sent on a connection
// that was not ready when invoke looked (TransientFailure) but became
// ready before gRPC picked it, and fails with Unavailable after reaching
// the server. It may have been applied, so it must not go on to the next
// endpoint.
func TestASentUnsentOnlyCallIsNotRetried(t *testing.T) {
	st := newFakeState()
	first, second := startFake(t, st), startFake(t, st)
	first.setFail("RemoveNode", status.Error(codes.Unavailable, "error reading from server: EOF"))
	var once atomic.Bool
	icpt := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == rosterv1.Cluster_RemoveNode_FullMethodName && once.CompareAndSwap(false, true) {
			for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
				cc.Connect()
				cc.WaitForStateChange(ctx, s)
			}
		}
		return inv(ctx, method, req, reply, cc, opts...)
	}
	// Only the first endpoint's first dial is refused.
	refuse := refuseFirstDial()
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == first.addr {
			return refuse(ctx, addr)
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	c, err := New(context.Background(), []string{first.addr, second.addr}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond),
		WithDialOptions(grpc.WithContextDialer(dial), grpc.WithUnaryInterceptor(icpt)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.RemoveNode(testContext(t), &rosterv1.RemoveNodeRequest{NodeId: "n2"})
	if n := first.count("RemoveNode"); n != 1 {
		t.Fatalf("first server saw %d RemoveNode calls, want 1 (err %v)", n, err)
	}
	if n := second.count("RemoveNode"); n != 0 {
		t.Fatalf("RemoveNode sent to the first server, which failed it with Unavailable after receiving it, was sent again to the second (%d calls; err %v)", n, err)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("RemoveNode = %v, want the first server's Unavailable", err)
	}
}

// TestAnUnsentOnlyCallRefusedAsNotAppliedMovesOn: a call that must not
// apply twice, answered by a node that says nothing was applied (NO_LEADER:
// it had no leader to hand the change to), goes on to the next endpoint.
func TestAnUnsentOnlyCallRefusedAsNotAppliedMovesOn(t *testing.T) {
	st := newFakeState()
	first, second := startFake(t, st), startFake(t, st)
	noLeader, _ := status.New(codes.Unavailable, "no leader").
		WithDetails(&errdetails.ErrorInfo{Reason: "NO_LEADER", Domain: errorDomain})
	first.setFail("RemoveNode", noLeader.Err())
	c := newTestClient(t, first.addr, second.addr)
	_, err := c.RemoveNode(testContext(t), &rosterv1.RemoveNodeRequest{NodeId: "n2"})
	if err != nil || first.count("RemoveNode") != 1 || second.count("RemoveNode") != 1 {
		t.Fatalf("RemoveNode answered NO_LEADER by the first server: %v; calls %d and %d, want it sent on to the second once",
			err, first.count("RemoveNode"), second.count("RemoveNode"))
	}
}

package client

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestASentWriteThenRefusedMayHaveBeenApplied: an attempt made
// while the connection was not ready when invoke looked (TransientFailure),
// but that became ready before gRPC picked it, is sent and may be applied;
// the server then goes away (refuses connections). The write must not end
// as a plain Unavailable (which mayBeApplied reads as "not applied").
func TestASentWriteThenRefusedMayHaveBeenApplied(t *testing.T) {
	st := newFakeState()
	f := startFake(t, st)
	// The server applies (records) the register, then its answer is lost.
	f.setFail("Register", status.Error(codes.Unavailable, "error reading from server: EOF"))
	var dials atomic.Int32
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			// The first dial is refused: the connection is in
			// TransientFailure when invoke looks at it.
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.OpError{Op: "connect", Err: errRefused{}}}
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	var first atomic.Bool
	// Forces the race in the window between invoke's GetState and gRPC's
	// pick: the connection becomes ready, and the call is sent.
	icpt := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == rosterv1.Registry_Register_FullMethodName && first.CompareAndSwap(false, true) {
			for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
				cc.Connect()
				cc.WaitForStateChange(ctx, s)
			}
			err := inv(ctx, method, req, reply, cc, opts...)
			f.srv.Stop() // the server goes away: later dials are refused
			return err
		}
		return inv(ctx, method, req, reply, cc, opts...)
	}
	c, err := New(context.Background(), []string{f.addr}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond), WithFailFastWrites(),
		WithDialOptions(grpc.WithContextDialer(dialer), grpc.WithUnaryInterceptor(icpt)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(testContext(t), 5*time.Second)
	defer cancel()
	_, err = c.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}})
	t.Logf("register: %v; server saw %d Register(s); mayBeApplied=%v", err, f.count("Register"), mayBeApplied(err))
	if f.count("Register") > 0 && !mayBeApplied(err) {
		t.Fatalf("a write the server received ended with %v, which mayBeApplied reads as not applied", err)
	}
}

type errRefused struct{}

func (errRefused) Error() string { return "connection refused" }

// TestASentWriteThenCloseIsNotErrClosed: as above, but the client is
// closed while the write's outcome is unknown: the error must not be
// ErrClosed, which says nothing was applied.
func TestASentWriteThenCloseIsNotErrClosed(t *testing.T) {
	st := newFakeState()
	f := startFake(t, st)
	// The server applies (records) the register, then its answer is lost.
	f.setFail("Register", status.Error(codes.Unavailable, "error reading from server: EOF"))
	var dials atomic.Int32
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			// The first dial is refused: the connection is in
			// TransientFailure when invoke looks at it.
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.OpError{Op: "connect", Err: errRefused{}}}
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	var cl atomic.Pointer[Client]
	var first atomic.Bool
	// Forces the race in the window between invoke's GetState and gRPC's
	// pick: the connection becomes ready, and the call is sent.
	icpt := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == rosterv1.Registry_Register_FullMethodName && first.CompareAndSwap(false, true) {
			for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
				cc.Connect()
				cc.WaitForStateChange(ctx, s)
			}
			err := inv(ctx, method, req, reply, cc, opts...)
			cl.Load().Close() // Close while the write's outcome is unknown
			return err
		}
		return inv(ctx, method, req, reply, cc, opts...)
	}
	c, err := New(context.Background(), []string{f.addr}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond), WithFailFastWrites(),
		WithDialOptions(grpc.WithContextDialer(dialer), grpc.WithUnaryInterceptor(icpt)))
	if err != nil {
		t.Fatal(err)
	}
	cl.Store(c)
	defer c.Close()
	ctx, cancel := context.WithTimeout(testContext(t), 5*time.Second)
	defer cancel()
	_, err = c.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}})
	t.Logf("register: %v; server saw %d Register(s); mayBeApplied=%v", err, f.count("Register"), mayBeApplied(err))
	if f.count("Register") > 0 && errors.Is(err, ErrClosed) {
		t.Fatalf("a write the server received ended with %v, which mayBeApplied reads as not applied", err)
	}
}

// TestAWriteWaitsOutARestartingLoneEndpoint: the one endpoint a client
// knows (a single node, or a load balancer in front of the cluster) refuses
// the first connection while it restarts and accepts the next. A write with
// a deadline waits out the restart, unless the client was made with
// WithFailFastWrites.
func TestAWriteWaitsOutARestartingLoneEndpoint(t *testing.T) {
	f := startFake(t, newFakeState())
	var dials atomic.Int32
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.OpError{Op: "connect", Err: errRefused{}}}
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	c, err := New(context.Background(), []string{f.addr}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond),
		WithDialOptions(grpc.WithContextDialer(dialer)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(testContext(t), 5*time.Second)
	defer cancel()
	if _, err := c.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}}); err != nil {
		t.Fatalf("register through a restart of the lone endpoint: %v (after %d dials)", err, dials.Load())
	}
}

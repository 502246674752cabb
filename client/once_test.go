package client_test

import (
	"context"
	"sync/atomic"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// unknownOutcome is a test hook on the SDK's first endpoint: when armed, it
// lets a client's write apply, then runs another client's write, then
// answers the first client OUTCOME_UNKNOWN, as a node that lost leadership
// after committing would.
type unknownOutcome struct {
	method     atomic.Value // string: the full method to break once
	interleave func(ctx context.Context) error
	applied    atomic.Uint64
	failed     atomic.Value // error of the interleaved write, if any
}

func (h *unknownOutcome) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get("roster-forwarded")) > 0 || !h.method.CompareAndSwap(info.FullMethod, "") {
		return next(ctx, req)
	}
	resp, err := next(ctx, req)
	if err != nil {
		return resp, err
	}
	h.applied.Store(resp.(interface{ GetRevision() uint64 }).GetRevision())
	if err := h.interleave(ctx); err != nil {
		h.failed.Store(err)
	}
	st, _ := status.New(codes.Unavailable, "outcome unknown: leadership lost during the write").
		WithDetails(&errdetails.ErrorInfo{Reason: rpc.ReasonOutcomeUnknown, Domain: rpc.ErrorDomain})
	return nil, st.Err()
}

// TestRetryAfterOutcomeUnknownDoesNotUndoAnotherWrite: A's write commits,
// A is told OUTCOME_UNKNOWN, B's write on the same instance commits, and
// the SDK retries A's write on the next endpoint. The retry must return
// A's first result and leave B's write in place: a retried Register must
// not bring A's value back, a retried Deregister must not delete B's
// re-registration.
func TestRetryAfterOutcomeUnknownDoesNotUndoAnotherWrite(t *testing.T) {
	hook := &unknownOutcome{}
	hook.method.Store("")
	c := testcluster.New(t, 3, testcluster.Options{GRPCOptions: func(id string) []grpc.ServerOption {
		if id != "n1" {
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(hook.intercept)}
	}})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	var addrs []string
	for _, nd := range c.Nodes {
		addrs = append(addrs, nd.Addr)
	}
	// newSDK returns a client whose first endpoint is n1, the hooked node.
	newSDK := func(t *testing.T) *client.Client {
		sdk, err := client.New(ctx, addrs)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sdk.Close() })
		return sdk
	}
	other := c.Nodes[2].Registry()
	inst := func(addr string) *rosterv1.Instance {
		return &rosterv1.Instance{Service: "web", Id: "x", Address: addr, Port: 80}
	}
	registerB := func(addr string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := other.Register(ctx, &rosterv1.RegisterRequest{Instance: inst(addr)})
			return err
		}
	}

	tests := []struct {
		name       string
		setup      func() error
		method     string
		interleave func(ctx context.Context) error
		call       func(sdk *client.Client) (uint64, error)
		// want is the address the other client's write left.
		want string
	}{
		{
			name:       "register",
			setup:      func() error { return nil },
			method:     rosterv1.Registry_Register_FullMethodName,
			interleave: registerB("10.0.0.2"),
			call: func(sdk *client.Client) (uint64, error) {
				r, err := sdk.Register(ctx, &rosterv1.RegisterRequest{Instance: inst("10.0.0.1")})
				return r.GetRevision(), err
			},
			want: "10.0.0.2",
		},
		{
			name:       "deregister",
			setup:      func() error { return registerB("10.0.0.3")(ctx) },
			method:     rosterv1.Registry_Deregister_FullMethodName,
			interleave: registerB("10.0.0.4"),
			call: func(sdk *client.Client) (uint64, error) {
				r, err := sdk.Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "x"})
				return r.GetRevision(), err
			},
			want: "10.0.0.4",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.setup(); err != nil {
				t.Fatal(err)
			}
			hook.applied.Store(0)
			hook.interleave = tt.interleave
			hook.method.Store(tt.method)
			rev, err := tt.call(newSDK(t))
			if err != nil {
				t.Fatalf("%s retried after OUTCOME_UNKNOWN: %v", tt.name, err)
			}
			if f := hook.failed.Load(); f != nil {
				t.Fatalf("the other client's write failed: %v", f)
			}
			first := hook.applied.Load()
			if first == 0 {
				t.Fatal("the hook did not run")
			}
			if rev != first {
				t.Fatalf("retry returned revision %d, want the first result %d", rev, first)
			}
			// B's write is the last that happened; it must still be there.
			got, err := other.GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Instances) != 1 || got.Instances[0].Address != tt.want {
				t.Fatalf("after the retry the instance is %v, want the other client's %s", got.Instances, tt.want)
			}
		})
	}
}

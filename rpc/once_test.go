package rpc_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// lostReply is a test hook on every node: when armed, a relayed write is
// applied and then its reply is replaced by the error a broken connection
// gives after a GOAWAY, with the revision the write made kept aside.
type lostReply struct {
	method  atomic.Value // string: the full method to break once
	applied atomic.Uint64
}

func (h *lostReply) arm(method string) { h.method.Store(method) }

func (h *lostReply) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get("roster-forwarded")) == 0 || !h.method.CompareAndSwap(info.FullMethod, "") {
		return next(ctx, req)
	}
	resp, err := next(ctx, req)
	if err != nil {
		return resp, err
	}
	h.applied.Store(resp.(interface{ GetRevision() uint64 }).GetRevision())
	return nil, status.Error(codes.Unavailable, `connection error: desc = "transport is closing"`)
}

// TestForwardedWriteRetriedAfterLostReplyAppliesOnce: a follower relays a
// write, the leader applies it, and the connection breaks before the reply
// (grpc-go then says "connection error" on a stream that was sent). The
// follower retries with the same request id: the write is applied once and
// the retry returns the first result.
func TestForwardedWriteRetriedAfterLostReplyAppliesOnce(t *testing.T) {
	hook := &lostReply{}
	hook.arm("")
	c := testcluster.New(t, 3, testcluster.Options{GRPCOptions: func(string) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(hook.intercept)}
	}})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader, follower := c.WaitLeader(), c.Followers()[0]
	// A TTL registration makes a new revision every time it is applied, so
	// a second application would show.
	leased := instance("web", "a", 8080)
	leased.Ttl = durationpb.New(time.Minute)
	plain := instance("web", "b", 8080)
	if _, err := follower.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: plain}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		method string
		call   func() (uint64, error)
	}{
		{"register", rosterv1.Registry_Register_FullMethodName, func() (uint64, error) {
			r, err := follower.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: leased})
			return r.GetRevision(), err
		}},
		{"deregister", rosterv1.Registry_Deregister_FullMethodName, func() (uint64, error) {
			r, err := follower.Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "b"})
			return r.GetRevision(), err
		}},
		{"maintenance", rosterv1.Registry_SetMaintenance_FullMethodName, func() (uint64, error) {
			r, err := follower.Registry().SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{Service: "web", Id: "a", Reason: "drain"})
			return r.GetRevision(), err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook.applied.Store(0)
			hook.arm(tt.method)
			rev, err := tt.call()
			if err != nil {
				t.Fatalf("%s through %s after a lost reply: %v", tt.name, follower.ID, err)
			}
			first := hook.applied.Load()
			if first == 0 {
				t.Fatal("the hook did not break a reply")
			}
			if rev != first {
				t.Fatalf("retry returned revision %d, want the first result %d", rev, first)
			}
			if got := leader.Node.Store().Revision(); got != first {
				t.Fatalf("leader at revision %d after the retry, want %d: applied twice", got, first)
			}
		})
	}
}

// silentLeader is a gRPC Registry whose writes never answer.
type silentLeader struct {
	rosterv1.UnimplementedRegistryServer
}

func (silentLeader) Register(ctx context.Context, _ *rosterv1.RegisterRequest) (*rosterv1.RegisterResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestForwardToSilentLeaderIsBounded: the member table points the
// followers at a leader address that accepts TCP and never answers (a
// listener that never speaks HTTP/2, or a server whose handler never
// returns). A relayed write gets a clear Unavailable from the hold timeout,
// however long the caller is willing to wait, instead of hanging.
func TestForwardToSilentLeaderIsBounded(t *testing.T) {
	tests := []struct {
		name       string
		listen     func(t *testing.T) string
		wantReason string
		wantText   string
	}{
		{"accepts tcp, never speaks http2", silentListener, rpc.ReasonNoLeader, "leader unreachable"},
		{"handler never returns", silentServer, rpc.ReasonOutcomeUnknown, "outcome unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
				o.HoldTimeout = time.Second
				o.ForwardTimeout = 200 * time.Millisecond
			}})
			c.WaitMembersKnown()
			silent := tt.listen(t)
			ctx := testcluster.Ctx(t)
			for attempt := 1; ; attempt++ {
				leader := c.WaitLeader()
				follower := c.Followers()[0]
				term := leader.Node.Status().Term
				if err := leader.Node.UpdateMember(ctx, leader.ID, leader.Node.RaftAddr(), silent); err != nil {
					t.Fatal(err)
				}
				seen := testcluster.Within(5*time.Second, func() bool {
					m := follower.Node.Store().View().Member(leader.ID)
					return m != nil && m.APIAddr == silent
				})
				if !seen {
					if attempt < 5 {
						// The leader's own address announcement, retried
						// since it was a follower, replaced ours before the
						// follower saw it: try again.
						continue
					}
					t.Fatalf("the follower never saw the silent address in %d attempts", attempt)
				}
				_, err := follower.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 80)})
				m := follower.Node.Store().View().Member(leader.ID)
				if err == nil && attempt < 5 && (leader.Node.Status().Term != term || m == nil || m.APIAddr != silent) {
					// On a busy machine an election moved the leader to a
					// node that answers, or the leader's own address
					// announcement, sent while it was still a follower and
					// retried since, landed after ours: try again.
					continue
				}
				if status.Code(err) != codes.Unavailable || rpc.Reason(err) != tt.wantReason || !strings.Contains(status.Convert(err).Message(), tt.wantText) {
					t.Fatalf("write relayed to a silent leader: %v; want Unavailable, reason %s, saying %q", err, tt.wantReason, tt.wantText)
				}
				return
			}
		})
	}
}

// silentListener accepts TCP connections and never writes to them.
func silentListener(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return lis.Addr().String()
}

// silentServer serves a Registry whose Register never returns.
func silentServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	rosterv1.RegisterRegistryServer(g, silentLeader{})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

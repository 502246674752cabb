package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

func newTestClient(t *testing.T, addrs ...string) *Client {
	t.Helper()
	c, err := New(context.Background(), addrs, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newFakeClockClient is newTestClient with its own timers on clk (see
// clock.go) and no idle eviction, so that clk holds only the timers a test
// is about.
func newFakeClockClient(t *testing.T, clk *fakeClock, addrs ...string) *Client {
	t.Helper()
	c, err := New(context.Background(), addrs, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond),
		WithCacheIdleTimeout(0), func(o *options) { o.discovery.clock = clk })
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNewNeedsAddresses(t *testing.T) {
	if _, err := New(context.Background(), nil); err != ErrNoAddresses {
		t.Fatalf("New(nil) = %v, want ErrNoAddresses", err)
	}
}

func TestFailoverToSecondAddress(t *testing.T) {
	state := newFakeState()
	second := startFake(t, state)
	c := newTestClient(t, deadAddr(t), second.addr)
	ctx := testContext(t)

	resp, err := c.GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
	if err != nil {
		t.Fatalf("GetService: %v", err)
	}
	if got := resp.GetHeader().GetNodeId(); got != second.addr {
		t.Fatalf("answered by %q, want %q", got, second.addr)
	}
	if got := c.Endpoint(); got != second.addr {
		t.Fatalf("current endpoint %q, want %q", got, second.addr)
	}
	// The next call goes straight to the endpoint that works.
	if _, err := c.GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"}); err != nil {
		t.Fatalf("second GetService: %v", err)
	}
	if got := second.count("GetService"); got != 2 {
		t.Fatalf("second server saw %d calls, want 2", got)
	}
}

func TestAllEndpointsDown(t *testing.T) {
	c := newTestClient(t, deadAddr(t), deadAddr(t))
	_, err := c.GetService(testContext(t), &rosterv1.GetServiceRequest{Service: "web"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("GetService with every endpoint down = %v, want Unavailable", err)
	}
}

// TestWriteToRefusingEndpointsFailsAtOnce: with WithFailFastWrites, a
// write with a far deadline that every endpoint refuses the connection to
// was sent nowhere, so it fails as a read does, with "no endpoint answered", rather than going
// round the endpoints until its deadline. testContext's deadline is far
// shorter than the call's: a call that waited for its own would end with
// DeadlineExceeded.
func TestWriteToRefusingEndpointsFailsAtOnce(t *testing.T) {
	dead1, dead2 := deadAddr(t), deadAddr(t)
	c, err := New(context.Background(), []string{dead1, dead2}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond), WithFailFastWrites())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(testContext(t), time.Hour)
	defer cancel()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"register", func() error {
			_, err := c.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}})
			return err
		}},
		{"deregister", func() error {
			_, err := c.Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "w1"})
			return err
		}},
		{"get", func() error {
			_, err := c.GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
			return err
		}},
	} {
		err := tc.call()
		msg := status.Convert(err).Message()
		if status.Code(err) != codes.Unavailable || !strings.HasPrefix(msg, "no endpoint answered: ") ||
			!strings.Contains(msg, dead1) || !strings.Contains(msg, dead2) || !strings.Contains(msg, "connection refused") ||
			hasReason(err, reasonOutcomeUnknown) {
			t.Fatalf("%s to endpoints that refuse the connection = %v; want Unavailable \"no endpoint answered\" naming both refusals", tc.name, err)
		}
	}
}

// TestDeadlineNamesWhatTheAttemptsMet: a write retried until its deadline
// fails with DeadlineExceeded naming what each endpoint answered (no
// leader, connection refused), not a bare "context deadline exceeded".
func TestDeadlineNamesWhatTheAttemptsMet(t *testing.T) {
	st, err := status.New(codes.Unavailable, "no leader: the cluster is electing one or has lost its quorum").
		WithDetails(&errdetails.ErrorInfo{Reason: "NO_LEADER", Domain: errorDomain})
	if err != nil {
		t.Fatal(err)
	}
	f := startFake(t, newFakeState())
	f.setFail("Register", st.Err())
	dead := deadAddr(t)
	c := newTestClient(t, f.addr, dead)
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	_, err = c.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}})
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(msg, "no leader") || !strings.Contains(msg, dead) {
		t.Fatalf("a write that met no leader and a dead endpoint until its deadline: %v; want DeadlineExceeded naming both", err)
	}
	// The server's reason survives the longer message.
	withReason := endedAfter(st.Err(), []string{"127.0.0.1:1: connection refused"})
	if !notApplied(withReason) || !strings.Contains(status.Convert(withReason).Message(), "connection refused") {
		t.Fatalf("endedAfter lost the reason or the attempts: %v (details %v)", withReason, status.Convert(withReason).Details())
	}
}

func TestRetryAfterUnavailableAnswer(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "no leader")
	key := InstanceKey{Service: "web", ID: "w1"}
	tests := []struct {
		name string
		// prepare sets up the first server's failure and the shared state.
		prepare func(st *fakeState, first *fakeServer)
		call    func(ctx context.Context, c *Client) error
		method  string
		want    codes.Code
		// secondCalls is how many times the second server must be asked.
		secondCalls int
	}{
		{
			name:    "register is retried",
			prepare: func(_ *fakeState, first *fakeServer) { first.setFail("Register", unavailable) },
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}})
				return err
			},
			method: "Register", want: codes.OK, secondCalls: 1,
		},
		{
			name: "deregister retried after a lost reply gets the first result",
			prepare: func(st *fakeState, first *fakeServer) {
				st.put(key)
				first.setFail("Deregister", unavailable)
			},
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "w1"})
				return err
			},
			method: "Deregister", want: codes.OK, secondCalls: 1,
		},
		{
			name:    "deregister of an unknown instance is not found",
			prepare: func(*fakeState, *fakeServer) {},
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "nope"})
				return err
			},
			method: "Deregister", want: codes.NotFound, secondCalls: 0,
		},
		{
			name:    "remove node is not retried once sent",
			prepare: func(_ *fakeState, first *fakeServer) { first.setFail("RemoveNode", unavailable) },
			call: func(ctx context.Context, c *Client) error {
				_, err := c.RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: "n2"})
				return err
			},
			method: "RemoveNode", want: codes.Unavailable, secondCalls: 0,
		},
		{
			name: "invalid argument is not retried",
			prepare: func(_ *fakeState, first *fakeServer) {
				first.setFail("GetService", status.Error(codes.InvalidArgument, "bad"))
			},
			call: func(ctx context.Context, c *Client) error {
				_, err := c.GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
				return err
			},
			method: "GetService", want: codes.InvalidArgument, secondCalls: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newFakeState()
			first, second := startFake(t, st), startFake(t, st)
			tt.prepare(st, first)
			c := newTestClient(t, first.addr, second.addr)
			err := tt.call(testContext(t), c)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("call = %v, want code %v", err, tt.want)
			}
			if got := first.count(tt.method); got != 1 {
				t.Fatalf("first server saw %d %s calls, want 1", got, tt.method)
			}
			if got := second.count(tt.method); got != tt.secondCalls {
				t.Fatalf("second server saw %d %s calls, want %d", got, tt.method, tt.secondCalls)
			}
		})
	}
}

func TestCallRespectsContext(t *testing.T) {
	c := newTestClient(t, deadAddr(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
	if status.Code(err) != codes.Canceled {
		t.Fatalf("GetService with a cancelled context = %v, want Canceled", err)
	}
}

// TestClosedClient: what a closed client is asked fails with ErrClosed, a
// gRPC status with codes.Canceled, as grpc-go answers a call on a closed
// connection; errors.Is finds it. Nothing is sent, so a write that met it
// cannot have been applied.
func TestClosedClient(t *testing.T) {
	f := startFake(t, newFakeState())
	f.state.appendRevisions(1, 1)
	c := newTestClient(t, f.addr)
	ctx := testContext(t)
	c.Close()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrClosed) || status.Code(err) != codes.Canceled {
			t.Errorf("%s after Close = %v (code %v), want ErrClosed with code Canceled", what, err, status.Code(err))
		}
	}
	_, err := c.GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
	check("GetService", err)
	_, err = c.Register(ctx, &rosterv1.RegisterRequest{Instance: healthyWeb("w1")})
	check("Register", err)
	_, err = c.Instances(ctx, "web")
	check("Instances", err)
	_, err = c.Subscribe("web")
	check("Subscribe", err)
	_, err = c.RegisterInstance(ctx, healthyWeb("w1"))
	check("RegisterInstance", err)
	for _, err := range c.Watch(ctx, &rosterv1.WatchRequest{Service: "web"}) {
		check("Watch", err)
		break
	}
	if got := f.count("Register") + f.count("GetService") + f.count("Watch"); got != 0 {
		t.Errorf("the closed client sent %d calls, want none", got)
	}
	if mayBeApplied(ErrClosed) {
		t.Error("a write that met ErrClosed is taken for one that may have been applied")
	}
	if errors.Is(status.Error(codes.Canceled, "grpc: the client connection is closing"), ErrClosed) {
		t.Error("a call cut short in flight (grpc-go's Canceled) is taken for ErrClosed, which sent nothing")
	}
}

// TestInvalidArgumentsAreStatuses: an empty service name, a nil instance
// and a TTL that is not positive fail at once with InvalidArgument.
func TestInvalidArgumentsAreStatuses(t *testing.T) {
	c := newTestClient(t, deadAddr(t))
	ctx := testContext(t)
	_, errInstances := c.Instances(ctx, "")
	_, errCached := c.CachedService(ctx, "", InNamespace("prod"))
	_, errSubscribe := c.Subscribe("")
	_, errRegister := c.RegisterInstance(ctx, nil)
	_, errKeepAlive := c.KeepAlive(ctx, 0)
	for what, err := range map[string]error{
		"Instances of an empty name":     errInstances,
		"CachedService of an empty name": errCached,
		"Subscribe to an empty name":     errSubscribe,
		"RegisterInstance of nil":        errRegister,
		"KeepAlive with a zero TTL":      errKeepAlive,
	} {
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s = %v (code %v), want InvalidArgument", what, err, status.Code(err))
		}
	}
	if msg := status.Convert(errInstances).Message(); msg != "service name is empty" {
		t.Errorf("empty name message %q, want %q", msg, "service name is empty")
	}
}

// TestWriteRetriedWithOneRequestID: a write is retried on the next endpoint
// after an Unavailable that may follow its application, with the same
// request id, and the caller's request is left as it was. When no endpoint
// answers, the error says OUTCOME_UNKNOWN.
func TestWriteRetriedWithOneRequestID(t *testing.T) {
	st := newFakeState()
	first, second := startFake(t, st), startFake(t, st)
	unknown, _ := status.New(codes.Unavailable, "leadership lost").
		WithDetails(&errdetails.ErrorInfo{Reason: reasonOutcomeUnknown, Domain: errorDomain})
	first.setFail("Register", unknown.Err())
	c := newTestClient(t, first.addr, second.addr)
	req := &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}}
	if _, err := c.Register(testContext(t), req); err != nil {
		t.Fatalf("register: %v", err)
	}
	if req.RequestId != "" {
		t.Fatalf("the caller's request was changed: %v", req)
	}
	a, b := first.ids(), second.ids()
	if len(a) != 1 || len(b) != 1 || a[0] == "" || a[0] != b[0] {
		t.Fatalf("request ids %v then %v, want one id sent twice", a, b)
	}
	// A new call is a new request.
	if _, err := c.Register(testContext(t), req); err != nil {
		t.Fatal(err)
	}
	if b = second.ids(); len(b) != 2 || b[1] == a[0] {
		t.Fatalf("second call's request ids %v reuse the first call's %s", b, a[0])
	}

	second.setFail("Register", status.Error(codes.Unavailable, "connection reset"))
	_, err := c.Register(context.Background(), req)
	if status.Code(err) != codes.Unavailable || !hasReason(err, reasonOutcomeUnknown) {
		t.Fatalf("register with no endpoint answering = %v, want Unavailable with OUTCOME_UNKNOWN", err)
	}

	// Servers that say nothing was applied leave nothing unknown.
	noLeader, _ := status.New(codes.Unavailable, "no leader").
		WithDetails(&errdetails.ErrorInfo{Reason: "NO_LEADER", Domain: errorDomain})
	first.setFail("Register", noLeader.Err())
	second.setFail("Register", noLeader.Err())
	_, err = c.Register(context.Background(), req)
	if status.Code(err) != codes.Unavailable || hasReason(err, reasonOutcomeUnknown) {
		t.Fatalf("register with no leader anywhere = %v, want Unavailable without OUTCOME_UNKNOWN", err)
	}
}

func hasReason(err error, reason string) bool {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == reason && info.Domain == errorDomain {
			return true
		}
	}
	return false
}

// TestWriteCutShortByItsDeadlineAfterAnUnknownOutcome: a write whose first
// attempt may have been applied (OUTCOME_UNKNOWN) and whose retry is still
// in flight when the deadline comes fails with DeadlineExceeded that still
// says OUTCOME_UNKNOWN, as it does when the deadline comes between
// attempts: callers read the reason, not the text.
func TestWriteCutShortByItsDeadlineAfterAnUnknownOutcome(t *testing.T) {
	st := newFakeState()
	first, second := startFake(t, st), startFake(t, st)
	unknown, _ := status.New(codes.Unavailable, "leadership lost").
		WithDetails(&errdetails.ErrorInfo{Reason: reasonOutcomeUnknown, Domain: errorDomain})
	first.setFail("Register", unknown.Err())
	second.mu.Lock()
	second.holdRegister = true
	second.mu.Unlock()
	c := newTestClient(t, first.addr, second.addr)
	ctx, cancel := context.WithTimeout(testContext(t), time.Second)
	defer cancel()
	_, err := c.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}})
	if second.count("Register") == 0 {
		t.Fatalf("the retry never reached the second server: %v", err)
	}
	if status.Code(err) != codes.DeadlineExceeded || !hasReason(err, reasonOutcomeUnknown) {
		t.Fatalf("register cut short by its deadline after OUTCOME_UNKNOWN = %v, want DeadlineExceeded with OUTCOME_UNKNOWN", err)
	}
}

// TestALoneWriteCutShortByItsDeadlineSaysOutcomeUnknown: a write whose only
// attempt reached a server that then never answered (a stalled leader, a
// black-holed connection) may have been applied: the DeadlineExceeded it
// fails with says OUTCOME_UNKNOWN, as it would after an earlier attempt
// had failed that way.
func TestALoneWriteCutShortByItsDeadlineSaysOutcomeUnknown(t *testing.T) {
	f := startFake(t, newFakeState())
	f.mu.Lock()
	f.holdRegister = true
	f.mu.Unlock()
	c := newTestClient(t, f.addr)
	ctx, cancel := context.WithTimeout(testContext(t), time.Second)
	defer cancel()
	_, err := c.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1"}})
	if f.count("Register") != 1 {
		t.Fatalf("the write reached the server %d times: %v", f.count("Register"), err)
	}
	if status.Code(err) != codes.DeadlineExceeded || !hasReason(err, reasonOutcomeUnknown) {
		t.Fatalf("register held by its server past its deadline = %v, want DeadlineExceeded with OUTCOME_UNKNOWN", err)
	}
}

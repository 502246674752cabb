package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/internal/testdiscovery"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// registrarSetup starts a cluster and a client that reaches every node
// through a proxy, so the test can cut the client off.
func registrarSetup(t *testing.T) (*testcluster.Cluster, *Client, []*testdiscovery.Proxy) {
	t.Helper()
	tc := testcluster.New(t, 3, testcluster.Options{})
	tc.WaitMembersKnown()
	var proxies []*testdiscovery.Proxy
	var addrs []string
	for _, nd := range tc.Nodes {
		p := testdiscovery.NewProxy(t, nd.Addr)
		proxies = append(proxies, p)
		addrs = append(addrs, p.Addr)
	}
	c, err := New(context.Background(), addrs, WithConnectTimeout(500*time.Millisecond),
		WithLogger(hclog.New(&hclog.LoggerOptions{Output: logWriter{t}})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return tc, c, proxies
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// lookup reads the instance from a node of the cluster: nil when absent.
func lookup(t *testing.T, tc *testcluster.Cluster, k InstanceKey) *rosterv1.Instance {
	t.Helper()
	var resp *rosterv1.GetServiceResponse
	err := testdiscovery.Retry(t, func(ctx context.Context) error {
		var err error
		resp, err = tc.Running()[0].Registry().GetService(ctx, &rosterv1.GetServiceRequest{
			Namespace: k.Namespace, Service: k.Service,
			Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE},
		})
		return err
	})
	if err != nil && status.Code(err) != codes.NotFound {
		t.Fatalf("get service: %v", err)
	}
	for _, inst := range resp.GetInstances() {
		if inst.GetId() == k.ID {
			return inst
		}
	}
	return nil
}

func nextRegistrationEvent(t *testing.T, r *Registration, kind RegistrationEventKind) RegistrationEvent {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-r.Events():
			if !ok {
				t.Fatalf("events closed before %s", kind)
			}
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event", kind)
		}
	}
}

func testInstance(id string) *rosterv1.Instance {
	return &rosterv1.Instance{Service: "svc", Id: id, Address: "127.0.0.1", Port: 9000}
}

func TestRegistrarRegistersKeepsAliveAndCloses(t *testing.T) {
	tc, c, _ := registrarSetup(t)
	ctx := testcluster.Ctx(t)
	reg, err := c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Second),
		WithWeight(300), WithZone("z1"), WithTags("v2"), WithMetadata(map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	got := lookup(t, tc, reg.Key())
	if got == nil || got.GetWeight() != 300 || got.GetZone() != "z1" || got.GetTags()[0] != "v2" ||
		got.GetMetadata()["k"] != "v" || got.GetTtl().AsDuration() != time.Second {
		t.Fatalf("registered %v", got)
	}
	// A second registration with the same TTL shares the session.
	reg2, err := c.RegisterInstance(ctx, testInstance("b"), WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.discovery.sessions) != 1 {
		t.Fatalf("%d keepalive sessions, want one shared", len(c.discovery.sessions))
	}
	// Without renewals a 1s lease is gone within a few seconds; the
	// instance must still be there, passing, with the same registration,
	// after five of them.
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		cur := lookup(t, tc, reg.Key())
		if cur == nil || !Healthy(cur) || cur.GetRegistrationRevision() != got.GetRegistrationRevision() {
			t.Fatalf("instance lost its lease while kept alive: %v", cur)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if lookup(t, tc, reg.Key()) != nil {
		t.Fatal("instance still registered after Close")
	}
	if _, ok := <-reg.Events(); ok {
		t.Fatal("events channel open after Close")
	}
	// Closing twice is harmless; the other registration lives on, and
	// so does the session it shares.
	if err := reg.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if lookup(t, tc, reg2.Key()) == nil {
		t.Fatal("other registration gone")
	}
	c.discovery.mu.Lock()
	sess := c.discovery.sessions[time.Second]
	c.discovery.mu.Unlock()
	if sess == nil {
		t.Fatal("the session ended while a registration still uses it")
	}
	// The last registration of a TTL ends its session.
	if err := reg2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sess.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session still runs after its last registration closed")
	}
	c.discovery.mu.Lock()
	n := len(c.discovery.sessions)
	c.discovery.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d sessions kept after every registration closed", n)
	}
	// A new registration of that TTL starts a new session and is kept alive.
	reg3, err := c.RegisterInstance(ctx, testInstance("c"), WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer reg3.Close(ctx)
	c.discovery.mu.Lock()
	sess3 := c.discovery.sessions[time.Second]
	c.discovery.mu.Unlock()
	if sess3 == nil || sess3 == sess {
		t.Fatal("no new session for a new registration")
	}
}

func TestRegistrarRegistersAgainAfterLeaseLost(t *testing.T) {
	tc, c, proxies := registrarSetup(t)
	ctx := testcluster.Ctx(t)
	reg, err := c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	first := reg.Revision()
	// A partition longer than the TTL: the cluster expires the instance.
	for _, p := range proxies {
		p.Cut()
	}
	testdiscovery.Eventually(t, "the lease to expire", 15*time.Second, func() bool {
		return lookup(t, tc, reg.Key()) == nil
	})
	for _, p := range proxies {
		p.Restore()
	}
	nextRegistrationEvent(t, reg, RegistrationLeaseLost)
	ev := nextRegistrationEvent(t, reg, RegistrationRestored)
	if ev.Revision <= first {
		t.Fatalf("registered again at %d, first at %d", ev.Revision, first)
	}
	testdiscovery.Eventually(t, "the instance back", 15*time.Second, func() bool {
		cur := lookup(t, tc, reg.Key())
		return cur != nil && Healthy(cur)
	})
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRegistrarNeverUndoesClose forces the worst interleaving: a lost
// lease is being registered again when Close starts. Close cuts that
// Register short and settles it (sends it again under its request id)
// before its Deregister, so the Deregister is the last word.
func TestRegistrarNeverUndoesClose(t *testing.T) {
	tc, c, _ := registrarSetup(t)
	ctx := testcluster.Ctx(t)
	reg, err := c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	closing := make(chan error, 1)
	beforeReregister = func(r *Registration) {
		if r != reg {
			return
		}
		go func() { closing <- reg.Close(ctx) }()
		// Close has begun once it has cancelled the registration.
		<-r.ctx.Done()
	}
	t.Cleanup(func() { beforeReregister = nil })

	// Someone removes the instance; the next renewal reports the lease lost.
	if err := testdiscovery.Retry(t, func(ctx context.Context) error {
		_, err := tc.Running()[0].Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Namespace: DefaultNamespace, Service: "svc", Id: "a"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closing:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return")
	}
	if inst := lookup(t, tc, reg.Key()); inst != nil {
		t.Fatalf("instance registered again after Close: %v", inst)
	}
}

// TestRegistrarCloseCutsReregistrationShort: Close returns within its
// context while a re-registration hangs (a stalled leader), and still
// deregisters. Before that it sends the cut-short Register again under the
// same request id, so the first copy can no longer land after the
// Deregister.
func TestRegistrarCloseCutsReregistrationShort(t *testing.T) {
	st := newFakeState()
	f := startFake(t, st)
	c := newTestClient(t, f.addr)
	reg, err := c.RegisterInstance(testContext(t), testInstance("a"), WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.holdRegister = true
	f.mu.Unlock()
	// Someone removes the instance: the next renewal reports the lease
	// lost, and registering it again hangs.
	st.remove(reg.Key(), "")
	select {
	case <-f.registerHeld:
	case <-time.After(15 * time.Second):
		t.Fatal("the instance was never registered again")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- reg.Close(ctx) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return")
	}
	if got := f.count("Deregister"); got != 1 {
		t.Fatalf("%d Deregister calls, want 1", got)
	}
	ids := f.ids()
	if n := len(ids); n < 3 || ids[n-1] != ids[n-2] {
		t.Fatalf("register request ids %q: want the cut-short one sent again", ids)
	}
}

func TestDeregisterOnSignal(t *testing.T) {
	tc, c, _ := registrarSetup(t)
	ctx := testcluster.Ctx(t)
	reg, err := c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	done := DeregisterOnSignal(ctx, 5*time.Second, reg)
	// The handler is installed before DeregisterOnSignal returns, so the
	// signal is caught, not fatal.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("deregister on signal: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no deregistration after SIGTERM")
	}
	if lookup(t, tc, reg.Key()) != nil {
		t.Fatal("instance still registered after SIGTERM")
	}
}

// TestRegisterInstanceRefusesAKeyItHolds: while an open Registration holds
// an instance, a second RegisterInstance of it on the same client fails
// before sending anything; Close of the first would otherwise deregister
// the instance under the second. Once Close has returned, the instance can
// be registered again.
func TestRegisterInstanceRefusesAKeyItHolds(t *testing.T) {
	st, f, c, ctx := fakeRegistrar(t)
	for _, tt := range []struct {
		name string
		opts []RegisterOption
	}{
		{"lease", []RegisterOption{WithTTL(time.Second)}},
		{"check", []RegisterOption{WithCheck(&rosterv1.HealthCheck{})}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := testInstance(tt.name)
			first, err := c.RegisterInstance(ctx, in, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			sent := f.count("Register")
			// The namespace spelled out is the same instance.
			again := proto.CloneOf(in)
			again.Namespace = DefaultNamespace
			_, err = c.RegisterInstance(ctx, again, tt.opts...)
			if status.Code(err) != codes.AlreadyExists || !errors.Is(err, ErrAlreadyRegistered) ||
				!strings.Contains(err.Error(), first.Key().String()) {
				t.Fatalf("second RegisterInstance of %s: %v (code %v), want AlreadyExists naming it", first.Key(), err, status.Code(err))
			}
			if got := f.count("Register"); got != sent {
				t.Fatalf("the refused RegisterInstance sent %d Register calls", got-sent)
			}
			if first.sess != nil && !sessionRenews(first.sess, first.Key()) {
				t.Fatal("the refused RegisterInstance stopped the first one's renewals")
			}
			if err := first.Close(ctx); err != nil {
				t.Fatalf("close: %v", err)
			}
			if st.has(first.Key()) {
				t.Fatal("instance still registered after Close")
			}
			second, err := c.RegisterInstance(ctx, in, tt.opts...)
			if err != nil {
				t.Fatalf("RegisterInstance after Close: %v", err)
			}
			if !st.has(second.Key()) || (second.sess != nil && !sessionRenews(second.sess, second.Key())) {
				t.Fatal("instance registered again after Close is not registered and renewed")
			}
			if err := second.Close(ctx); err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}
}

// TestRegisterInstanceConcurrentCallsOneWins: of concurrent RegisterInstance
// calls for one instance, exactly one returns a Registration.
func TestRegisterInstanceConcurrentCallsOneWins(t *testing.T) {
	_, f, c, ctx := fakeRegistrar(t)
	const n = 8
	var wg sync.WaitGroup
	regs := make([]*Registration, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			regs[i], errs[i] = c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Second))
		})
	}
	close(start)
	wg.Wait()
	var won *Registration
	for i := range n {
		switch {
		case errs[i] == nil && won == nil:
			won = regs[i]
		case errs[i] == nil:
			t.Fatal("two concurrent RegisterInstance calls of one instance both returned a Registration")
		case status.Code(errs[i]) != codes.AlreadyExists:
			t.Fatalf("losing RegisterInstance: %v, want AlreadyExists", errs[i])
		}
	}
	if won == nil {
		t.Fatalf("no RegisterInstance won: %v", errs)
	}
	if got := f.count("Register"); got != 1 {
		t.Fatalf("%d Register calls, want the winner's only", got)
	}
	if err := won.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// sessionRenews reports whether s renews the lease of k.
func sessionRenews(s *Session, k InstanceKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.leases[k.normal()]
	return ok
}

// TestRegistrarDropsAStaleLostLease forces the interleaving where a lost
// lease of a Registration reaches the registrar only after that
// Registration has been closed and the instance registered again on the
// same client: the event is the old lease's, and must not make the new
// Registration report a lost lease and register again.
func TestRegistrarDropsAStaleLostLease(t *testing.T) {
	st, f, c, ctx := fakeRegistrar(t)
	old, err := c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Set only by the dispatching goroutine's hook, read after delivered.
	var renewed *Registration
	delivered := make(chan *Registration, 1)
	before := func(s *Session, ev LeaseEvent) {
		if s != old.sess || ev.Instance != old.Key() || renewed != nil {
			return
		}
		// The event is on its way to the registrar: the instance is
		// closed and registered again meanwhile.
		if err := old.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		var err error
		if renewed, err = c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Second)); err != nil {
			t.Errorf("register again: %v", err)
		}
	}
	after := func(s *Session, ev LeaseEvent, to *Registration) {
		if s == old.sess && ev.Instance == old.Key() {
			select {
			case delivered <- to:
			default:
			}
		}
	}
	beforeDispatch.Store(&before)
	afterDispatch.Store(&after)
	t.Cleanup(func() {
		beforeDispatch.Store(nil)
		afterDispatch.Store(nil)
	})

	// Someone removes the instance; the next renewal reports the lease lost.
	st.remove(old.Key(), "")
	var to *Registration
	select {
	case to = <-delivered:
	case <-time.After(15 * time.Second):
		t.Fatal("the lost lease was never dispatched")
	}
	if renewed == nil {
		t.Fatal("the instance was not registered again")
	}
	if to != nil {
		t.Fatalf("the closed registration's lost lease went to a registration (the new one: %v)", to == renewed)
	}
	if got := f.count("Register"); got != 2 {
		t.Fatalf("%d Register calls, want 2 (no re-registration)", got)
	}
	closeQuietly(ctx, t, renewed)
}

// TestRegistrarIgnoresAStaleRenewalAnswer forces the interleaving where a
// renewal sent for a Registration's lease is answered NOT_FOUND only after
// that Registration has been closed and the instance registered again on
// the same client: the answer is about the old lease, and must not mark
// the new one lost.
func TestRegistrarIgnoresAStaleRenewalAnswer(t *testing.T) {
	st, _, c, ctx := fakeRegistrar(t)
	old, err := c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Another instance of the TTL keeps the session when old closes, so
	// that the new registration of "a" joins the session old used.
	keeper, err := c.RegisterInstance(ctx, testInstance("k"), WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer keeper.Close(ctx)
	// Owned by the receiving goroutine's hook until next is closed.
	var renewed *Registration
	var lostAfter bool
	next := make(chan struct{})
	var once sync.Once
	hook := func(s *Session, resp *rosterv1.HeartbeatResponse) {
		switch {
		case s != old.sess:
		case renewed == nil && answersNotFound(resp):
			// The answer is about to be recorded: the instance is
			// closed and registered again meanwhile.
			if err := old.Close(ctx); err != nil {
				t.Errorf("close: %v", err)
			}
			var err error
			if renewed, err = c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Second)); err != nil {
				t.Errorf("register again: %v", err)
			}
		case renewed != nil:
			// The answer after the stale one: what did that do?
			s.mu.Lock()
			lease := s.leases[old.Key()]
			lostAfter = lease != nil && lease.lost
			s.mu.Unlock()
			beforeLeaseAnswer.Store(nil)
			once.Do(func() { close(next) })
		}
	}
	beforeLeaseAnswer.Store(&hook)
	t.Cleanup(func() { beforeLeaseAnswer.Store(nil) })

	st.remove(old.Key(), "")
	select {
	case <-next:
	case <-time.After(15 * time.Second):
		t.Fatal("no renewal answered after the stale one")
	}
	if renewed == nil {
		t.Fatal("the instance was not registered again")
	}
	if lostAfter {
		t.Fatal("a NOT_FOUND answer to a renewal of the closed registration's lease marked the new lease lost")
	}
	closeQuietly(ctx, t, renewed)
}

// TestRegistrarReportsALeaseLostAgain: once a lost instance has been
// registered again, losing it again before any renewal has succeeded (a
// partition right after the re-registration, or someone deregistering it)
// registers it again too: the session counts the re-registered lease as a
// new one, not lost, rather than the first, still lost.
func TestRegistrarReportsALeaseLostAgain(t *testing.T) {
	st, f, c, ctx := fakeRegistrar(t)
	// A TTL this long renews only when the test asks (renewNow), so no
	// renewal succeeds between the re-registration and the second loss.
	reg, err := c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		st.remove(reg.Key(), "")
		reg.sess.renewNow()
		nextRegistrationEvent(t, reg, RegistrationLeaseLost)
		nextRegistrationEvent(t, reg, RegistrationRestored)
		if !st.has(reg.Key()) {
			t.Fatalf("round %d: instance not registered again", round)
		}
	}
	if got := f.count("Register"); got != 3 {
		t.Fatalf("%d Register calls, want 3", got)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// answersNotFound reports whether a KeepAlive answer, of one renewal or of
// a batch, says some instance is not found.
func answersNotFound(resp *rosterv1.HeartbeatResponse) bool {
	if codes.Code(resp.GetCode()) == codes.NotFound {
		return true
	}
	for _, r := range resp.GetResults() {
		if codes.Code(r.GetCode()) == codes.NotFound {
			return true
		}
	}
	return false
}

// fakeRegistrar is a client of a fake cluster, for the registrar tests
// that force an interleaving with hooks.
func fakeRegistrar(t *testing.T) (*fakeState, *fakeServer, *Client, context.Context) {
	t.Helper()
	st := newFakeState()
	f := startFake(t, st)
	return st, f, newTestClient(t, f.addr), testContext(t)
}

// closeQuietly closes r after checking it has reported nothing.
func closeQuietly(ctx context.Context, t *testing.T, r *Registration) {
	t.Helper()
	select {
	case ev := <-r.Events():
		t.Fatalf("the new registration reported %v", ev.Kind)
	default:
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRegistrarBacksOffOnTheClock: a registration that fails to register a
// lost instance again tries again once its backoff (100 ms, then 200 ms)
// has passed on the client's clock, and not before.
func TestRegistrarBacksOffOnTheClock(t *testing.T) {
	st := newFakeState()
	f := startFake(t, st)
	clk := newFakeClock()
	c := newFakeClockClient(t, clk, f.addr)
	ctx := testContext(t)
	// A TTL this long renews only when the test asks (renewNow).
	reg, err := c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	next := func(want RegistrationEventKind) {
		t.Helper()
		select {
		case ev := <-reg.Events():
			if ev.Kind != want {
				t.Fatalf("registration reported %v (%v), want %v", ev.Kind, ev.Err, want)
			}
		case <-ctx.Done():
			t.Fatalf("no %v event", want)
		}
	}
	// Refused, not Unavailable: the call itself does not go on retrying.
	f.setFail("Register", status.Error(codes.FailedPrecondition, "refused by the test"))
	st.remove(reg.Key(), "")
	reg.sess.renewNow()
	next(RegistrationLeaseLost)
	next(RegistrationRetry) // the first attempt goes at once

	for round, backoff := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		registers := f.count("Register")
		due := clk.Now().Add(backoff)
		waitFor(t, fmt.Sprintf("round %d: the pause armed on the clock", round), func() bool {
			if n := f.count("Register"); n != registers {
				t.Fatalf("round %d: registered again (%d calls, want %d) while the clock stood still", round, n, registers)
			}
			return slices.Contains(clk.pending(), due)
		})
		clk.Advance(backoff - time.Millisecond)
		if n := f.count("Register"); n != registers {
			t.Fatalf("round %d: registered again %s into a pause of %s", round, backoff-time.Millisecond, backoff)
		}
		if round == 1 {
			f.setFail("Register", nil)
		}
		clk.Advance(time.Millisecond)
		if round == 0 {
			next(RegistrationRetry)
		} else {
			next(RegistrationRestored)
		}
	}
	if !st.has(reg.Key()) {
		t.Fatal("instance not registered again")
	}
	if n := f.count("Register"); n != 4 {
		t.Fatalf("%d Register calls, want 4: the first and three attempts", n)
	}
}

// syncLog is a log output a test reads while the client writes it.
type syncLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// registerRenewed registers an instance with a short TTL through a client
// of f and the other addrs, which logs to the returned log, and waits
// until f has renewed its lease.
func registerRenewed(t *testing.T, f *fakeServer, others ...string) *syncLog {
	t.Helper()
	out := &syncLog{}
	c, err := New(context.Background(), append([]string{f.addr}, others...), WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond),
		WithLogger(hclog.New(&hclog.LoggerOptions{Output: out, Level: hclog.Info})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := testContext(t)
	reg, err := c.RegisterInstance(ctx, &rosterv1.Instance{Service: "web", Id: "w1", Address: "10.0.0.1", Port: 80},
		WithTTL(150*time.Millisecond))
	if err != nil {
		t.Fatalf("RegisterInstance: %v", err)
	}
	t.Cleanup(func() { reg.Close(ctx) })
	waitFor(t, "renewals", func() bool { return f.count("KeepAlive") >= 1 })
	return out
}

// TestRegistrationLogsARefusedKeepAlive: once a registration's keepalive
// stream is refused (the client's token was deleted, say), its lease is no
// longer renewed and the instance expires without any lost-lease answer.
// That must not pass in silence: the registrar logs the refusal, once
// while it lasts, and logs when the stream is back.
func TestRegistrationLogsARefusedKeepAlive(t *testing.T) {
	f := startFake(t, newFakeState())
	out := registerRenewed(t, f)

	f.setFail("KeepAlive stream", status.Error(codes.PermissionDenied, "permission denied: ACL token not found"))
	f.cut <- status.Error(codes.PermissionDenied, "permission denied: ACL token not found: it was deleted while this stream was open")
	waitFor(t, "three refused streams", func() bool { return f.count("KeepAlive stream") >= 4 })
	waitFor(t, "the refusal logged", func() bool { return strings.Contains(out.String(), "PermissionDenied") })
	if n := strings.Count(out.String(), "keepalive stream"); n != 1 {
		t.Fatalf("%d keepalive log lines during one refusal, want 1:\n%s", n, out.String())
	}

	f.setFail("KeepAlive stream", nil)
	waitFor(t, "the stream back logged", func() bool { return strings.Contains(out.String(), "keepalive stream connected again") })
}

// TestRegistrarTakesALossThatComesAsItRestores forces the interleaving
// where the lease of a re-registration is lost again, and its loss
// dispatched, just after the re-registration has succeeded and before the
// attempt's loop has ended: the new loss must be taken up (the session
// reports a lease lost once), not dropped as one already being retried.
func TestRegistrarTakesALossThatComesAsItRestores(t *testing.T) {
	st, f, c, ctx := fakeRegistrar(t)
	// A TTL this long renews only when the test asks (renewNow).
	reg, err := c.RegisterInstance(ctx, testInstance("a"), WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	hook := func(r *Registration) {
		if r != reg {
			return
		}
		once.Do(func() {
			st.remove(r.Key(), "")
			// What dispatch does with the new lease's loss.
			r.leaseLost(status.Error(codes.NotFound, "instance not found"))
		})
	}
	afterReregister.Store(&hook)
	t.Cleanup(func() { afterReregister.Store(nil) })

	st.remove(reg.Key(), "")
	reg.sess.renewNow()
	for range 2 {
		nextRegistrationEvent(t, reg, RegistrationLeaseLost)
		nextRegistrationEvent(t, reg, RegistrationRestored)
	}
	if !st.has(reg.Key()) {
		t.Fatal("instance lost again not registered again")
	}
	if got := f.count("Register"); got != 3 {
		t.Fatalf("%d Register calls, want 3", got)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestKeepAliveDownLogsEachCodeOnce: while the keepalive stream is down and
// the endpoints fail it differently (one refuses the token, another is
// not running), each failure's code is logged once, not at every switch
// between them.
func TestKeepAliveDownLogsEachCodeOnce(t *testing.T) {
	f := startFake(t, newFakeState())
	out := registerRenewed(t, f, deadAddr(t))

	f.setFail("KeepAlive stream", status.Error(codes.PermissionDenied, "permission denied: ACL token not found"))
	f.cut <- status.Error(codes.PermissionDenied, "permission denied: ACL token not found: it was deleted while this stream was open")
	// Each refused stream on the first endpoint comes after a failed one
	// on the second, which nothing listens on.
	lines := func() int { return strings.Count(out.String(), "keepalive stream down") }
	waitFor(t, "both failures logged", func() bool { return lines() >= 2 })
	more := f.count("KeepAlive stream") + 2
	waitFor(t, "two more refused streams, in turn with the dead endpoint", func() bool { return f.count("KeepAlive stream") >= more })
	if n := lines(); n != 2 {
		t.Fatalf("%d keepalive down lines while two endpoints failed in turn, want 2 (one a code):\n%s", n, out.String())
	}
}

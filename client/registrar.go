package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// DefaultRegistrationTTL is the lease TTL of an instance registered with
// RegisterInstance without WithTTL or WithCheck.
const DefaultRegistrationTTL = 10 * time.Second

// RegisterOption configures RegisterInstance.
type RegisterOption func(*rosterv1.Instance)

// WithTTL gives the instance a TTL lease of d, kept alive by the client.
func WithTTL(d time.Duration) RegisterOption {
	return func(i *rosterv1.Instance) { i.Ttl = durationpb.New(d) }
}

// WithCheck has the cluster check the instance actively (HTTP, TCP or
// gRPC health). Without WithTTL the instance then holds no lease.
func WithCheck(check *rosterv1.HealthCheck) RegisterOption {
	return func(i *rosterv1.Instance) { i.Check = check }
}

// WithTags sets the instance's tags.
func WithTags(tags ...string) RegisterOption {
	return func(i *rosterv1.Instance) { i.Tags = slices.Clone(tags) }
}

// WithMetadata sets the instance's metadata.
func WithMetadata(md map[string]string) RegisterOption {
	return func(i *rosterv1.Instance) { i.Metadata = maps.Clone(md) }
}

// WithWeight sets the instance's weight for the weighted balancers.
func WithWeight(w uint32) RegisterOption {
	return func(i *rosterv1.Instance) { i.Weight = w }
}

// WithZone sets the instance's zone.
func WithZone(zone string) RegisterOption {
	return func(i *rosterv1.Instance) { i.Zone = zone }
}

// RegistrationEventKind says what a RegistrationEvent reports.
type RegistrationEventKind int

const (
	// RegistrationLeaseLost: the cluster no longer holds the instance (its
	// lease expired, after a partition say). The registration registers it
	// again.
	RegistrationLeaseLost RegistrationEventKind = iota + 1
	// RegistrationRestored: the instance was registered again after its
	// lease was lost; Revision is the new registration's.
	RegistrationRestored
	// RegistrationRetry: registering again failed with Err; it is retried.
	RegistrationRetry
)

// String returns the kind in words.
func (k RegistrationEventKind) String() string {
	switch k {
	case RegistrationLeaseLost:
		return "lease lost"
	case RegistrationRestored:
		return "registered again"
	case RegistrationRetry:
		return "register again failed"
	}
	return fmt.Sprintf("RegistrationEventKind(%d)", int(k))
}

// RegistrationEvent is something a Registration reports.
type RegistrationEvent struct {
	// Kind says what happened.
	Kind RegistrationEventKind
	// Instance is the registration's instance.
	Instance InstanceKey
	// Revision is the new registration's revision (RegistrationRestored).
	Revision uint64
	// Err says why the lease was lost or an attempt failed.
	Err error
}

// Registration is an instance registered by RegisterInstance: its lease is
// kept alive over the client's shared keepalive session, and it is
// registered again whenever the cluster loses it, until Close.
type Registration struct {
	c    *Client
	key  InstanceKey
	inst *rosterv1.Instance
	sess *Session

	// ctx ends at Close, stopping the pauses between attempts at
	// registering again and cutting short an attempt in flight.
	ctx    context.Context
	cancel context.CancelFunc

	events chan RegistrationEvent

	// mu orders re-registration against Close: an attempt starts only
	// while the registration is open, and Close sees the one in flight
	// (inflight) to settle it before its Deregister (see settle).
	mu       sync.Mutex
	closed   bool
	revision uint64
	retrying bool
	inflight *reregistration
	// leaseGen is the generation of the registration's lease in sess:
	// lost-lease events of other generations (a closed Registration's of
	// the same instance) are not this registration's.
	leaseGen uint64
	// closeDone is closed when the first Close has returned.
	closeDone chan struct{}
}

// reregistration is one attempt at registering a lost instance again.
type reregistration struct {
	// req carries the attempt's request id: sent again with it, the
	// Register is applied at most once whichever copy arrives first.
	req *rosterv1.RegisterRequest
	// done is closed when the attempt has returned; err is its error.
	done chan struct{}
	err  error
}

// ErrAlreadyRegistered is returned by RegisterInstance for an instance that
// a Registration of the same client holds (open, or its Close has not
// returned); its gRPC code is codes.AlreadyExists.
var ErrAlreadyRegistered = errors.New("instance already registered by this client")

// alreadyRegisteredError is ErrAlreadyRegistered for one instance. It
// carries codes.AlreadyExists, as every other error of the client carries a
// gRPC code.
type alreadyRegisteredError struct{ key InstanceKey }

func (e *alreadyRegisteredError) Error() string {
	return fmt.Sprintf("register: instance %s is already registered by this client; Close the first Registration before registering it again", e.key)
}

func (e *alreadyRegisteredError) Unwrap() error { return ErrAlreadyRegistered }

// GRPCStatus makes status.Code and status.Convert see codes.AlreadyExists.
func (e *alreadyRegisteredError) GRPCStatus() *status.Status {
	return status.New(codes.AlreadyExists, e.Error())
}

// RegisterInstance registers inst and keeps it registered until Close. It
// returns once the first registration has been committed; that one is
// not retried beyond the client's usual failover, so its error tells the
// caller whether the instance is discoverable.
//
// The instance gets a TTL lease (WithTTL, DefaultRegistrationTTL unless a
// WithCheck is given), renewed over one keepalive stream shared by every
// registration of the client with that TTL. When the cluster reports the
// lease lost, the instance is registered again and RegistrationLeaseLost
// and RegistrationRestored are reported on Events. An instance closed with
// Close is never registered again.
//
// One client holds an instance (namespace, service and id) in at most one
// Registration: the Close of either of two would deregister the instance
// under the other. While a Registration of the instance is open, or its
// Close has not returned, RegisterInstance of the same instance fails at
// once, sending nothing, with an error that is ErrAlreadyRegistered
// (errors.Is) and has codes.AlreadyExists; of concurrent calls for one
// instance exactly one goes ahead. To change a registered instance, Close
// its Registration and register it again. A RegisterInstance that fails
// holds nothing.
//
// RegisterInstance is the keepalive-owning counterpart of Register, which
// sends one raw RegisterRequest.
func (c *Client) RegisterInstance(ctx context.Context, inst *rosterv1.Instance, opts ...RegisterOption) (*Registration, error) {
	if inst == nil {
		return nil, status.Error(codes.InvalidArgument, "register: instance is nil")
	}
	select {
	case <-c.closed:
		// Not "already registered" by a Registration the closed client
		// still holds.
		return nil, ErrClosed
	default:
	}
	in := proto.CloneOf(inst)
	for _, opt := range opts {
		opt(in)
	}
	if in.GetTtl() == nil && in.GetCheck() == nil {
		in.Ttl = durationpb.New(DefaultRegistrationTTL)
	}
	if in.Namespace == "" {
		in.Namespace = DefaultNamespace
	}
	c.discovery.init(c)
	rctx, cancel := context.WithCancel(c.discovery.ctx)
	r := &Registration{
		c: c, key: InstanceKey{in.Namespace, in.Service, in.Id}, inst: in,
		ctx: rctx, cancel: cancel, events: make(chan RegistrationEvent, 64),
		closeDone: make(chan struct{}),
	}
	// Claimed before anything is sent, so that of two calls for one
	// instance the second sends nothing.
	if err := c.discovery.claim(r); err != nil {
		cancel()
		return nil, err
	}
	resp, err := c.Register(ctx, &rosterv1.RegisterRequest{Instance: in})
	var sess *Session
	if err == nil {
		r.mu.Lock()
		r.revision = resp.GetRevision()
		r.mu.Unlock()
		if ttl := in.GetTtl().AsDuration(); ttl > 0 {
			sess, err = c.discovery.session(c, ttl)
		}
	}
	if err != nil {
		c.discovery.untrack(r)
		cancel()
		return nil, err
	}
	if sess != nil {
		// Locked: a lost lease of this generation, dispatched as soon as
		// the lease is added, waits for it to be recorded.
		r.mu.Lock()
		r.sess, r.leaseGen = sess, sess.add(r.key)
		r.mu.Unlock()
		sess.renewNow()
	}
	return r, nil
}

// Key returns the registered instance's key.
func (r *Registration) Key() InstanceKey { return r.key }

// Instance returns the instance as registered. Do not change it.
func (r *Registration) Instance() *rosterv1.Instance { return r.inst }

// Revision returns the revision of the instance's latest registration.
func (r *Registration) Revision() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revision
}

// Events returns the channel the registration reports on. It holds the
// last 64 events; newer ones are dropped while it is full. It is closed by
// Close.
func (r *Registration) Events() <-chan RegistrationEvent { return r.events }

func (r *Registration) emit(ev RegistrationEvent) {
	select {
	case r.events <- ev:
	default:
	}
}

// Close stops keeping the instance alive and deregisters it, within ctx.
// It is not registered again after Close, whatever happens. An instance the
// cluster no longer holds counts as deregistered. When the Deregister fails
// (the cluster is unreachable) Close returns its error; the lease, no
// longer renewed, then expires within its TTL.
//
// A re-registration in flight when Close starts (the lease was lost) is
// cut short. Before its Deregister, Close sends that Register again with
// the same request id, using at most half of ctx's remaining time: the
// cluster applies the id once, so the first attempt, which a forwarding
// node may still deliver, can no longer land after the Deregister. Should
// the repeat get no answer in that time, the Deregister is sent anyway; a
// late Register then leaves an instance that nobody renews, which expires
// within its TTL.
//
// Later calls return nil once the first has returned, or ctx's error.
func (r *Registration) Close(ctx context.Context) error {
	r.cancel()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		select {
		case <-r.closeDone:
			return nil
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	r.closed = true
	defer close(r.closeDone)
	// The instance is free for another RegisterInstance only once its
	// Deregister has been sent: sooner, that Deregister could remove the
	// new registration.
	defer r.c.discovery.untrack(r)
	close(r.events)
	sess := r.sess
	if sess != nil {
		sess.Remove(r.key)
	}
	inflight := r.inflight
	r.mu.Unlock()
	if sess != nil {
		r.c.discovery.releaseSession(sess)
	}
	if inflight != nil {
		r.settle(ctx, inflight)
	}
	_, err := r.c.Deregister(ctx, &rosterv1.DeregisterRequest{Namespace: r.key.Namespace, Service: r.key.Service, Id: r.key.ID})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}

// settle makes sure that the re-registration a, cut short by Close, cannot
// be applied after Close's Deregister: unless a got an answer, its Register
// is sent again with the same request id, with at most half of ctx's
// remaining time, so that the Deregister keeps the rest.
func (r *Registration) settle(ctx context.Context, a *reregistration) {
	select {
	case <-a.done:
	case <-ctx.Done():
		return
	}
	if !mayBeApplied(a.err) {
		return
	}
	sctx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		sctx, cancel = context.WithDeadline(ctx, deadline.Add(-time.Until(deadline)/2))
		defer cancel()
	}
	if _, err := r.c.Register(sctx, a.req); err != nil && mayBeApplied(err) {
		r.c.discovery.logger.Warn("re-registration cut short by close not settled; if it lands after the deregistration, the instance expires within its TTL",
			"instance", r.key.String(), "error", err)
	}
}

// mayBeApplied reports whether a write that returned err may still be
// applied by the cluster: it was cut short, or its outcome is unknown.
func mayBeApplied(err error) bool {
	if errors.Is(err, ErrClosed) {
		// Sent nothing, or nothing that was applied (see ErrClosed).
		return false
	}
	switch status.Code(err) {
	case codes.OK:
		return false
	case codes.Canceled, codes.DeadlineExceeded:
		return true
	}
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain && info.Reason == reasonOutcomeUnknown {
			return true
		}
	}
	return false
}

// reregisterTimeout bounds one attempt at registering a lost instance
// again. Close cuts the attempt short and settles it (see settle).
const reregisterTimeout = 10 * time.Second

// beforeReregister, when set by a test, runs before each attempt at
// registering a lost instance again is sent, with the registration locked
// and the attempt recorded as in flight.
var beforeReregister func(*Registration)

// leaseLost registers the instance again, retrying until it succeeds or
// the registration is closed.
func (r *Registration) leaseLost(cause error) {
	r.mu.Lock()
	if r.closed || r.retrying {
		r.mu.Unlock()
		return
	}
	r.retrying = true
	r.emit(RegistrationEvent{Kind: RegistrationLeaseLost, Instance: r.key, Err: cause})
	r.mu.Unlock()
	log := r.c.discovery.logger.With("instance", r.key.String())
	log.Warn("instance lease lost; registering again", "error", cause)
	for attempt := 0; ; attempt++ {
		if attempt > 0 && r.c.sleepOn(r.ctx, r.c.clk(), reregisterBackoff(attempt)) != nil {
			// Closed, or the client is: nothing registers it again.
			return
		}
		if done := r.reregister(log); done {
			if h := afterReregister.Load(); h != nil {
				(*h)(r)
			}
			return
		}
	}
}

// afterReregister, when set by a test, runs after an attempt at
// registering a lost instance again has ended the attempts, with the
// registration unlocked.
var afterReregister atomic.Pointer[func(*Registration)]

// reregisterBackoff is the pause before attempt n (from 1) at registering
// a lost instance again: 100 ms doubling to 3 s, on the client's clock.
func reregisterBackoff(n int) time.Duration {
	return min(100*time.Millisecond<<min(n-1, 5), 3*time.Second)
}

// reregister makes one attempt; it reports whether to stop trying. The
// registration is not locked while the Register is in flight, so Close
// need not wait for it.
func (r *Registration) reregister(log hclog.Logger) bool {
	r.mu.Lock()
	if r.closed || r.ctx.Err() != nil {
		r.mu.Unlock()
		return true
	}
	a := &reregistration{
		req:  &rosterv1.RegisterRequest{Instance: r.inst, RequestId: newRequestID()},
		done: make(chan struct{}),
	}
	r.inflight = a
	if beforeReregister != nil {
		beforeReregister(r)
	}
	r.mu.Unlock()

	// r.ctx ends at Close, which cuts the attempt short.
	ctx, cancel := context.WithTimeout(r.ctx, reregisterTimeout)
	resp, err := r.c.Register(ctx, a.req)
	cancel()

	r.mu.Lock()
	defer r.mu.Unlock()
	a.err = err
	close(a.done)
	if r.closed || r.ctx.Err() != nil {
		// Close has begun (it cancels r.ctx before it takes the lock):
		// the attempt stays in flight for Close to settle.
		return true
	}
	r.inflight = nil
	if err == nil {
		// Under the lock that records the new lease: a loss of it,
		// however soon, starts attempts of its own.
		r.retrying = false
		r.revision = resp.GetRevision()
		if r.sess != nil {
			// A new lease: its loss is reported as the first one's was.
			r.leaseGen = r.sess.renewedAgain(r.key)
		}
		r.emit(RegistrationEvent{Kind: RegistrationRestored, Instance: r.key, Revision: r.revision})
		log.Info("instance registered again", "revision", resp.GetRevision())
		return true
	}
	r.emit(RegistrationEvent{Kind: RegistrationRetry, Instance: r.key, Err: err})
	log.Warn("registering again failed", "error", err)
	return false
}

// session returns the client's keepalive session for leases of ttl,
// starting it on first use, for one more Registration: each that gets it
// gives it back with releaseSession.
func (d *discovery) session(c *Client, ttl time.Duration) (*Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.sessions[ttl]; ok {
		d.sessionUsers[s]++
		return s, nil
	}
	s, err := c.KeepAlive(d.ctx, ttl)
	if err != nil {
		return nil, err
	}
	d.sessions[ttl] = s
	d.sessionUsers[s] = 1
	go d.dispatch(s)
	return s, nil
}

// releaseSession gives back a Registration's use of s; the last one ends
// it (its stream and goroutines), so that a client that stops using a TTL
// does not keep a session for it. A later Registration of that TTL starts
// a new one.
func (d *discovery) releaseSession(s *Session) {
	d.mu.Lock()
	n := d.sessionUsers[s] - 1
	if n > 0 {
		d.sessionUsers[s] = n
		d.mu.Unlock()
		return
	}
	delete(d.sessionUsers, s)
	for ttl, cur := range d.sessions {
		if cur == s {
			delete(d.sessions, ttl)
		}
	}
	d.mu.Unlock()
	// Not Close, which waits for the session's goroutines: a Close of a
	// Registration may run on one of them (a test's hook does).
	s.cancel()
}

// dispatch hands a session's lost leases to their registrations, and logs
// its stream's failures: while the stream is down no lease of the session
// is renewed, and one that expires then is not reported lost (that takes
// an answer), so a stream that stays down, or is refused (the client's
// token deleted, say), must not pass in silence.
func (d *discovery) dispatch(s *Session) {
	// logged holds the codes of the failures logged while the stream has
	// been down: each is logged once until it is up again, however the
	// endpoints' answers alternate (a refused token on some, a node down
	// on another).
	logged := map[codes.Code]bool{}
	// broken: the last stream event was a failure.
	broken := false
	for ev := range s.Events() {
		switch ev.Kind {
		case StreamBroken:
			// A stream that breaks and is opened again at once (a node
			// restarting) is routine; one that cannot be opened again,
			// or is refused, is not. Logged once a failure's code.
			code := status.Code(ev.Err)
			if (broken || refusal(ev.Err)) && !logged[code] {
				d.logger.Warn("keepalive stream down: leases are not renewed until it is back; retrying",
					"ttl", s.ttl, "endpoint", ev.Endpoint, "error", ev.Err)
				logged[code] = true
			}
			broken = true
			continue
		case StreamConnected:
			if len(logged) > 0 {
				d.logger.Info("keepalive stream connected again", "ttl", s.ttl, "endpoint", ev.Endpoint)
			}
			clear(logged)
			broken = false
			continue
		case LeaseLost:
		default:
			continue
		}
		if h := beforeDispatch.Load(); h != nil {
			(*h)(s, ev)
		}
		d.mu.Lock()
		r := d.registrations[ev.Instance]
		d.mu.Unlock()
		// The registration of the instance now may not be the one whose
		// lease was lost: that one may have been closed, and the instance
		// registered again, since.
		if r != nil && !r.holds(s, ev.gen) {
			r = nil
		}
		if r != nil {
			go r.leaseLost(ev.Err)
		}
		if h := afterDispatch.Load(); h != nil {
			(*h)(s, ev, r)
		}
	}
}

// beforeDispatch and afterDispatch, when set by a test, run in dispatch
// around the hand-over of each lost lease: before the registration is
// looked up, and after with the registration it went to (nil: none).
// Atomic: the dispatchers of earlier tests' clients may still run.
var (
	beforeDispatch atomic.Pointer[func(*Session, LeaseEvent)]
	afterDispatch  atomic.Pointer[func(*Session, LeaseEvent, *Registration)]
)

// holds reports whether r's lease is generation gen of session s.
func (r *Registration) holds(s *Session, gen uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sess == s && r.leaseGen == gen
}

// claim records r as the client's registration of its instance, unless
// another holds it.
func (d *discovery) claim(r *Registration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.registrations == nil {
		d.registrations = map[InstanceKey]*Registration{}
	}
	if _, held := d.registrations[r.key]; held {
		return &alreadyRegisteredError{key: r.key}
	}
	d.registrations[r.key] = r
	return nil
}

func (d *discovery) untrack(r *Registration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.registrations[r.key] == r {
		delete(d.registrations, r.key)
	}
}

// DeregisterOnSignal closes regs when the process receives SIGINT or
// SIGTERM, each Close bounded by timeout, and then sends the joined errors
// of the Close calls on the returned channel and closes it. It stops
// listening, closing the channel without a value, when ctx ends first.
// While it listens, those signals no longer end the process: the caller
// decides what to do after the channel answers.
func DeregisterOnSignal(ctx context.Context, timeout time.Duration, regs ...*Registration) <-chan error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	out := make(chan error, 1)
	go func() {
		defer close(out)
		defer signal.Stop(sigs)
		select {
		case <-sigs:
		case <-ctx.Done():
			return
		}
		var errs []error
		for _, r := range regs {
			cctx, cancel := context.WithTimeout(context.Background(), timeout)
			if err := r.Close(cctx); err != nil {
				errs = append(errs, fmt.Errorf("deregister %s: %w", r.key, err))
			}
			cancel()
		}
		out <- errors.Join(errs...)
	}()
	return out
}

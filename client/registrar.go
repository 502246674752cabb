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
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
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
	// registering again.
	ctx    context.Context
	cancel context.CancelFunc

	events chan RegistrationEvent

	// mu orders re-registration against Close: a Register still in flight
	// when Close starts is finished before the Deregister is sent, so it
	// cannot land after it and bring the instance back.
	mu       sync.Mutex
	closed   bool
	revision uint64
	retrying bool
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
// RegisterInstance is the keepalive-owning counterpart of Register, which
// sends one raw RegisterRequest.
func (c *Client) RegisterInstance(ctx context.Context, inst *rosterv1.Instance, opts ...RegisterOption) (*Registration, error) {
	if inst == nil {
		return nil, errors.New("register: instance is nil")
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
	resp, err := c.Register(ctx, &rosterv1.RegisterRequest{Instance: in})
	if err != nil {
		return nil, err
	}
	c.discovery.init(c)
	rctx, cancel := context.WithCancel(c.discovery.ctx)
	r := &Registration{
		c: c, key: InstanceKey{in.Namespace, in.Service, in.Id}, inst: in,
		ctx: rctx, cancel: cancel, events: make(chan RegistrationEvent, 64),
		revision: resp.GetRevision(),
	}
	if ttl := in.GetTtl().AsDuration(); ttl > 0 {
		sess, err := c.discovery.session(c, ttl)
		if err != nil {
			cancel()
			return nil, err
		}
		r.sess = sess
		c.discovery.track(r)
		sess.Add(r.key)
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

// Close stops keeping the instance alive and deregisters it. It is not
// registered again after Close, whatever happens. An instance the cluster
// no longer holds counts as deregistered. When the Deregister fails (the
// cluster is unreachable) Close returns its error; the lease, no longer
// renewed, then expires within its TTL.
func (r *Registration) Close(ctx context.Context) error {
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	close(r.events)
	if r.sess != nil {
		r.sess.Remove(r.key)
		r.c.discovery.untrack(r)
	}
	_, err := r.c.Deregister(ctx, &rosterv1.DeregisterRequest{Namespace: r.key.Namespace, Service: r.key.Service, Id: r.key.ID})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}

// reregisterTimeout bounds one attempt at registering a lost instance
// again. The attempt is not cut short by Close: Close waits for it, so that
// its Register cannot reach the cluster after Close's Deregister.
const reregisterTimeout = 10 * time.Second

// beforeReregister, when set by a test, runs before each attempt at
// registering a lost instance again, with the registration locked.
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
	defer func() {
		r.mu.Lock()
		r.retrying = false
		r.mu.Unlock()
	}()
	for attempt := 0; ; attempt++ {
		if attempt > 0 && r.c.sleep(r.ctx, min(100*time.Millisecond<<min(attempt-1, 5), 3*time.Second)) != nil {
			return
		}
		if done := r.reregister(log); done {
			return
		}
	}
}

// reregister makes one attempt; it reports whether to stop trying.
func (r *Registration) reregister(log hclog.Logger) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.ctx.Err() != nil {
		return true
	}
	if beforeReregister != nil {
		beforeReregister(r)
	}
	ctx, cancel := context.WithTimeout(r.c.discovery.ctx, reregisterTimeout)
	defer cancel()
	resp, err := r.c.Register(ctx, &rosterv1.RegisterRequest{Instance: r.inst})
	if err == nil {
		r.revision = resp.GetRevision()
		r.emit(RegistrationEvent{Kind: RegistrationRestored, Instance: r.key, Revision: r.revision})
		log.Info("instance registered again", "revision", resp.GetRevision())
		return true
	}
	r.emit(RegistrationEvent{Kind: RegistrationRetry, Instance: r.key, Err: err})
	log.Warn("registering again failed", "error", err)
	return false
}

// session returns the client's keepalive session for leases of ttl,
// starting it on first use.
func (d *discovery) session(c *Client, ttl time.Duration) (*Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.sessions[ttl]; ok {
		return s, nil
	}
	s, err := c.KeepAlive(d.ctx, ttl)
	if err != nil {
		return nil, err
	}
	d.sessions[ttl] = s
	go d.dispatch(s)
	return s, nil
}

// dispatch hands a session's lost leases to their registrations.
func (d *discovery) dispatch(s *Session) {
	for ev := range s.Events() {
		if ev.Kind != LeaseLost {
			continue
		}
		d.mu.Lock()
		r := d.registrations[ev.Instance]
		d.mu.Unlock()
		if r != nil {
			go r.leaseLost(ev.Err)
		}
	}
}

func (d *discovery) track(r *Registration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.registrations == nil {
		d.registrations = map[InstanceKey]*Registration{}
	}
	d.registrations[r.key] = r
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

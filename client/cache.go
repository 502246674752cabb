package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// DefaultEmptyListGrace is how long the discovery cache holds back an
// update that would leave a service with no healthy instance.
const DefaultEmptyListGrace = 30 * time.Second

// cacheProgressInterval is how often a cache watch asks for a bookmark:
// every message from the cluster proves the copy current, so a silent
// stream shows up as a growing age.
const cacheProgressInterval = time.Second

// staleAfter is the age past which a cached list counts as stale.
const staleAfter = 3 * cacheProgressInterval

// DefaultCacheIdleTimeout is how long the discovery cache keeps a service
// that no Subscription holds and no lookup has asked for.
const DefaultCacheIdleTimeout = 5 * time.Minute

// persistedStartWait bounds how long the first lookup of a service waits
// for the cluster when a list persisted by WithCacheDir is at hand.
const persistedStartWait = 2 * time.Second

// discoveryOptions configure the discovery cache and the registrar.
type discoveryOptions struct {
	cacheDir string
	grace    time.Duration
	graceSet bool
	idle     time.Duration
	idleSet  bool
	logger   hclog.Logger
	// clock is the real one unless a test sets it: the discovery cache's,
	// the registrar's and the keepalive sessions' (clock.go).
	clock clock
}

// WithCacheDir makes the discovery cache keep each service's last known
// list in dir (one JSON file per service), so that a process starting while
// the cluster is unreachable begins with it.
func WithCacheDir(dir string) Option {
	return func(o *options) { o.discovery.cacheDir = dir }
}

// WithEmptyListGrace sets how long the discovery cache holds back an update
// that would take a service from some healthy instances to none
// (DefaultEmptyListGrace when unset). The held update is logged, and applied
// when the grace period ends with the service still empty. Zero or less
// turns the protection off.
func WithEmptyListGrace(d time.Duration) Option {
	return func(o *options) { o.discovery.grace, o.discovery.graceSet = d, true }
}

// WithCacheIdleTimeout sets how long the discovery cache keeps a service
// that no Subscription holds (a roster:/// channel holds one while it is
// open) and that no lookup has asked for (DefaultCacheIdleTimeout when
// unset). The service's watch is then ended and its list let go of (a copy
// in WithCacheDir stays); the next lookup or Subscribe starts it again, as
// the first one did, waiting for the first list. Zero or less keeps every
// service for the life of the client.
func WithCacheIdleTimeout(d time.Duration) Option {
	return func(o *options) { o.discovery.idle, o.discovery.idleSet = d, true }
}

// WithLogger sets the logger of the discovery cache and the registrar
// (hclog.Default when unset).
func WithLogger(l hclog.Logger) Option {
	return func(o *options) { o.discovery.logger = l }
}

// DiscoveryOption narrows a lookup in the discovery cache.
type DiscoveryOption func(*discoveryQuery)

type discoveryQuery struct {
	namespace string
	all       bool
}

// InNamespace looks the service up in namespace ns instead of the default
// one.
func InNamespace(ns string) DiscoveryOption {
	return func(q *discoveryQuery) { q.namespace = ns }
}

// IncludeUnhealthy returns every registered instance, not only the
// healthy ones (passing and not drained).
func IncludeUnhealthy() DiscoveryOption {
	return func(q *discoveryQuery) { q.all = true }
}

func newQuery(opts []DiscoveryOption) discoveryQuery {
	var q discoveryQuery
	for _, opt := range opts {
		opt(&q)
	}
	if q.namespace == "" {
		q.namespace = DefaultNamespace
	}
	return q
}

// CachedService is what the discovery cache knows about one service.
type CachedService struct {
	// Namespace and Service name the service.
	Namespace string
	Service   string
	// Instances are sorted by id. They are shared: do not change them.
	Instances []*rosterv1.Instance
	// Revision is the cluster revision the list reflects.
	Revision uint64
	// SyncedAt is when the cache last heard from the cluster about the
	// service (an event or a bookmark); for a list read from the cache dir,
	// when it was written.
	SyncedAt time.Time
	// Stale is true while the cache has not heard from the cluster lately
	// (the cluster is unreachable, say) or serves a list from the cache dir:
	// Instances is then the last known list.
	Stale bool
	// Held is true while an update that would leave no healthy instance is
	// held back (see WithEmptyListGrace).
	Held bool

	// clock is the client's (clock.go); nil: the real one.
	clock clock
}

// fakeOnly returns clk unless it is the real clock, for which it returns
// nil: a CachedService of a real client holds no clock, so it compares
// (reflect.DeepEqual, go-cmp) as its exported fields do.
func fakeOnly(clk clock) clock {
	if _, real := clk.(realClock); real {
		return nil
	}
	return clk
}

// Age returns how long ago the cache last heard from the cluster.
func (s CachedService) Age() time.Duration {
	if s.clock == nil {
		return time.Since(s.SyncedAt)
	}
	return s.clock.Now().Sub(s.SyncedAt)
}

// Instances returns the instances of service from the discovery cache:
// healthy ones unless IncludeUnhealthy is given. The first lookup of a
// service starts one watch for it, which keeps the copy current and resumes
// by revision after failures, and waits for its first list. Later lookups
// answer from memory, and keep answering with the last known list while the
// cluster is unreachable.
//
// While no list is known and every endpoint refuses the client's token
// (codes.PermissionDenied or codes.Unauthenticated), or fails the watch
// with another code than InvalidArgument (Unknown or Unimplemented, say,
// from a proxy in front of the cluster while it is redeployed), lookups
// fail with that error; the watch keeps trying, and lookups answer as soon
// as a node serves it (a node may not yet have applied a new token). A
// list known when the failures start is served on, without an error, as
// during an outage: CachedService marks it Stale once it has heard nothing
// from the cluster for 3 seconds, and Subscription.Err
// returns the failure. Only InvalidArgument (an invalid service or
// namespace name) ends the watch for good. A lookup
// whose context ends first returns the context's error as a gRPC status
// (codes.DeadlineExceeded or codes.Canceled).
func (c *Client) Instances(ctx context.Context, service string, opts ...DiscoveryOption) ([]*rosterv1.Instance, error) {
	s, err := c.CachedService(ctx, service, opts...)
	return s.Instances, err
}

// CachedService is Instances with the list's revision, age and staleness.
func (c *Client) CachedService(ctx context.Context, service string, opts ...DiscoveryOption) (CachedService, error) {
	q := newQuery(opts)
	e, err := c.discovery.acquire(c, q.namespace, service)
	if err != nil {
		return CachedService{}, err
	}
	// A lookup waiting for the first list holds the service too: an
	// eviction now would end the watch it waits on.
	defer c.discovery.release(e)
	if err := e.wait(ctx); err != nil {
		return CachedService{}, err
	}
	return e.snapshot(q.all), nil
}

// Subscription follows one service in the discovery cache.
type Subscription struct {
	e       *serviceCache
	all     bool
	changed chan struct{}
}

// Subscribe follows service in the discovery cache: Changed signals each
// change of its list, and Service returns the list. It does not wait for the
// cluster. Until Close, the cache keeps the service (see
// WithCacheIdleTimeout).
func (c *Client) Subscribe(service string, opts ...DiscoveryOption) (*Subscription, error) {
	q := newQuery(opts)
	e, err := c.discovery.acquire(c, q.namespace, service)
	if err != nil {
		return nil, err
	}
	s := &Subscription{e: e, all: q.all, changed: make(chan struct{}, 1)}
	e.mu.Lock()
	e.subs[s] = struct{}{}
	// A list is known, or the watch has ended for good or is failing (it
	// can be before this subscription is added, and then notify did not
	// reach it).
	if e.haveData() || e.err != nil || e.failure != nil {
		s.changed <- struct{}{}
	}
	e.mu.Unlock()
	return s, nil
}

// Changed receives after the list has changed (and once at the start when
// a list is already known), and when the service's watch has ended for
// good, is failing or is served again (see Err). Changes that come
// quicker than they are read are merged into one.
func (s *Subscription) Changed() <-chan struct{} { return s.changed }

// Service returns the current list; Revision is zero while none is known.
func (s *Subscription) Service() CachedService { return s.e.snapshot(s.all) }

// Err returns the error that ended the service's watch, if one did: an
// invalid service or namespace name (codes.InvalidArgument), which
// retrying cannot fix. While every endpoint refuses the client's token
// (codes.PermissionDenied or codes.Unauthenticated) or fails the watch
// otherwise (see Instances) it returns that failure; the watch keeps
// trying, and Err returns nil again once a node serves it.
func (s *Subscription) Err() error {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	if s.e.err != nil {
		return s.e.err
	}
	return s.e.failure
}

// Close stops the subscription's signals. The cache keeps the service for
// WithCacheIdleTimeout after its last Subscription and lookup.
func (s *Subscription) Close() {
	s.e.mu.Lock()
	_, open := s.e.subs[s]
	delete(s.e.subs, s)
	s.e.mu.Unlock()
	if open {
		s.e.c.discovery.release(s.e)
	}
}

// discovery is a Client's discovery cache and registrar state.
type discovery struct {
	once   sync.Once
	ctx    context.Context
	logger hclog.Logger
	clock  clock
	// idle is how long an unused service is kept; zero or less: for ever.
	idle time.Duration

	mu       sync.Mutex
	services map[serviceKey]*serviceCache
	sessions map[time.Duration]*Session
	// sessionUsers counts the Registrations using each session; the last
	// to close ends it (releaseSession).
	sessionUsers map[*Session]int
	// registrations are the client's Registrations by instance, from
	// before their first Register until their Close has returned: one an
	// instance (RegisterInstance), and where the sessions' lost-lease
	// events go.
	registrations map[InstanceKey]*Registration
}

type serviceKey struct{ namespace, service string }

func (d *discovery) init(c *Client) {
	d.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		d.ctx = ctx
		d.clock = c.clk()
		d.idle = DefaultCacheIdleTimeout
		if c.opts.discovery.idleSet {
			d.idle = c.opts.discovery.idle
		}
		d.logger = c.opts.discovery.logger
		if d.logger == nil {
			d.logger = hclog.Default()
		}
		d.logger = d.logger.Named("discovery")
		d.services = map[serviceKey]*serviceCache{}
		d.sessions = map[time.Duration]*Session{}
		d.sessionUsers = map[*Session]int{}
		go func() {
			<-c.closed
			cancel()
			d.stopTimers()
		}()
	})
}

// acquire returns the cache of one service, starting its watch on first
// use, and holds it until release: the cache keeps a service while anyone
// holds it. Holding and evicting are decided under d.mu, and an evicted
// service is out of d.services before its watch is ended, so acquire never
// returns an evicted one.
func (d *discovery) acquire(c *Client, namespace, service string) (*serviceCache, error) {
	select {
	case <-c.closed:
		return nil, ErrClosed
	default:
	}
	if service == "" {
		return nil, status.Error(codes.InvalidArgument, "service name is empty")
	}
	d.init(c)
	k := serviceKey{namespace, service}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.services[k]; ok {
		e.users++
		return e, nil
	}
	o := c.opts.discovery
	ctx, stop := context.WithCancel(d.ctx)
	e := &serviceCache{
		users: 1, stop: stop,
		c: c, key: k, logger: d.logger.With("namespace", namespace, "service", service),
		grace: DefaultEmptyListGrace, dir: cacheDirFor(o.cacheDir, namespace),
		all: map[string]*rosterv1.Instance{}, subs: map[*Subscription]struct{}{},
		live: make(chan struct{}), done: make(chan struct{}), failed: make(chan struct{}),
	}
	if o.graceSet {
		e.grace = o.grace
	}
	e.waitUntil = d.clock.Now().Add(persistedStartWait)
	e.load()
	d.services[k] = e
	go e.run(ctx)
	return e, nil
}

// serviceCache is the discovery cache of one service.
type serviceCache struct {
	c      *Client
	key    serviceKey
	logger hclog.Logger
	grace  time.Duration
	dir    string
	// waitUntil is when lookups stop waiting for the cluster and serve a
	// list read from the cache dir.
	waitUntil time.Time

	// live is closed when the first list from the cluster has arrived;
	// done when the watch has ended for good.
	live chan struct{}
	done chan struct{}
	// stop ends the watch of an evicted service.
	stop context.CancelFunc

	// users counts the lookups in progress and the open Subscriptions;
	// lastUsed is when the last one ended, and idleTimer, while armed,
	// fires at the end of an idle period. Guarded by discovery.mu.
	users     int
	lastUsed  time.Time
	idleTimer clockTimer

	mu sync.Mutex
	// all is the service as the watch has delivered it, by id.
	all      map[string]*rosterv1.Instance
	revision uint64
	isLive   bool
	syncedAt time.Time
	// published is what lookups see; healthy is its healthy subset.
	published    []*rosterv1.Instance
	healthy      []*rosterv1.Instance
	publishedRev uint64
	loaded       bool // published came from the cache dir
	heldSince    time.Time
	holdTimer    clockTimer
	// holds counts the holds begun, so that the timer of one that has
	// ended does not end the next one (see release).
	holds uint64
	// err ended the watch for good: the cluster found the request invalid.
	err error
	// failure is what every endpoint answers while the watch keeps trying:
	// a refusal of the client's token, or an answer a proxy in front of
	// the cluster may give (watchHooks.failing). failed is closed while
	// failure is set, so that waiting lookups return it.
	failure error
	failed  chan struct{}
	subs    map[*Subscription]struct{}
}

func (e *serviceCache) haveData() bool { return e.isLive || e.loaded }

// wait waits for a list: the cluster's, or the one from the cache dir once
// the service has waited persistedStartWait for the cluster. Without a
// list, a failure of every endpoint (a refusal of the client's token, say)
// is returned at once.
func (e *serviceCache) wait(ctx context.Context) error {
	e.mu.Lock()
	loaded := e.loaded
	e.mu.Unlock()
	var fallback <-chan struct{}
	if loaded {
		// Only the first lookups wait; once waitUntil has passed, the
		// persisted list is served at once.
		clk := e.c.discovery.clock
		var stop func()
		fallback, stop = after(clk, e.waitUntil.Sub(clk.Now()))
		defer stop()
	}
	e.mu.Lock()
	failed := e.failed
	e.mu.Unlock()
	for {
		select {
		case <-e.live:
			return nil
		case <-fallback:
			return nil
		case <-e.done:
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.haveData() {
				return nil
			}
			return e.err
		case <-failed:
			e.mu.Lock()
			err, have := e.failure, e.haveData()
			failed = e.failed
			e.mu.Unlock()
			if err != nil && !have {
				return err
			}
			if err != nil {
				failed = nil // a list is at hand: wait for live or fallback
			}
		case <-ctx.Done():
			// A gRPC status, as every other call of the client returns.
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// setFailure records that every endpoint refuses the client's token or
// fails the watch otherwise (err), or, with nil, that a node has sent a
// message again; e.mu is held.
func (e *serviceCache) setFailure(err error) {
	// Subscribers hear of a change of what Err says: a failure starting,
	// ending, or taking another code; not of each retry that fails alike.
	changed := (err == nil) != (e.failure == nil) || status.Code(err) != status.Code(e.failure)
	switch {
	case err != nil && e.failure == nil:
		e.logger.Warn("service watch failed by every endpoint; retrying", "error", err)
		close(e.failed)
	case err == nil && e.failure != nil:
		e.logger.Info("service watch served again")
		e.failed = make(chan struct{})
	}
	if err != nil {
		err = fmt.Errorf("watch %s/%s: %w", e.key.namespace, e.key.service, err)
	}
	e.failure = err
	if changed {
		e.notify()
	}
}

func (e *serviceCache) snapshot(all bool) CachedService {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := CachedService{
		Namespace: e.key.namespace, Service: e.key.service,
		Instances: e.healthy, Revision: e.publishedRev, SyncedAt: e.syncedAt,
		Held: !e.heldSince.IsZero(), clock: fakeOnly(e.c.discovery.clock),
	}
	if all {
		s.Instances = e.published
	}
	s.Stale = !e.isLive || s.Age() > staleAfter
	return s
}

// run feeds the cache from one watch until the client is closed or the
// service is evicted.
func (e *serviceCache) run(ctx context.Context) {
	defer close(e.done)
	req := &rosterv1.WatchRequest{
		Namespace:        e.key.namespace,
		Service:          e.key.service,
		ProgressInterval: durationpb.New(cacheProgressInterval),
		// The cache keeps instances by id: a change's new state is all it
		// needs.
		OmitPrevInstance: true,
		// The first list shows every write acknowledged before it was
		// asked for, on whichever node serves it; without a quorum to
		// confirm that, the freshest list a node can give.
		StartRead: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE},
	}
	hooks := watchHooks{
		degrade: func(err error) {
			e.logger.Warn("no node could confirm a linearizable first list; starting from a node's own state", "error", err)
		},
		// A refused token is retried for as long as the client lives: a
		// node that has not yet applied a new token refuses it, and the
		// entry must not die of that; nor of what a proxy in front of the
		// cluster answers while it is redeployed. Lookups see the failure
		// meanwhile.
		failing: func(err error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.setFailure(err)
		},
	}
	for resp, err := range e.c.watch(ctx, req, hooks, nil) {
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, ErrClosed) {
				e.logger.Error("service watch ended", "error", err)
			}
			e.mu.Lock()
			e.err = fmt.Errorf("watch %s/%s: %w", e.key.namespace, e.key.service, err)
			e.notify()
			e.mu.Unlock()
			return
		}
		e.apply(resp)
	}
}

// apply folds one watch message into the cache.
func (e *serviceCache) apply(resp *rosterv1.WatchResponse) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.syncedAt = e.c.discovery.clock.Now()
	if e.failure != nil {
		e.setFailure(nil)
	}
	first := !e.isLive
	if resp.GetReset_() {
		clear(e.all)
	}
	for _, ev := range resp.GetEvents() {
		inst := ev.GetInstance()
		switch ev.GetType() {
		case rosterv1.Event_TYPE_PUT:
			e.all[inst.GetId()] = inst
		case rosterv1.Event_TYPE_DELETE:
			delete(e.all, inst.GetId())
		}
	}
	changed := resp.GetReset_() || len(resp.GetEvents()) > 0
	if resp.GetReset_() {
		// A reset is the state at its revision, which may be below the
		// last one seen (a cluster rebuilt without its history).
		e.revision = resp.GetRevision()
	} else {
		e.revision = max(e.revision, resp.GetRevision())
	}
	if first && (resp.GetReset_() || len(resp.GetEvents()) > 0) {
		e.isLive = true
		if e.loaded {
			e.logger.Info("service list from the cluster replaces the persisted one", "revision", e.revision, "instances", len(e.all))
		}
		e.loaded = false
		close(e.live)
	}
	if changed {
		e.publish()
	}
}

// publish makes the watched state what lookups see, unless it would take
// the service from some healthy instances to none: that is held for the
// grace period.
func (e *serviceCache) publish() {
	all := make([]*rosterv1.Instance, 0, len(e.all))
	for _, inst := range e.all {
		all = append(all, inst)
	}
	slices.SortFunc(all, func(a, b *rosterv1.Instance) int { return cmp.Compare(a.GetId(), b.GetId()) })
	healthy := healthyOf(all)
	if len(healthy) == 0 && len(e.healthy) > 0 && e.grace > 0 {
		if e.heldSince.IsZero() {
			clk := e.c.discovery.clock
			e.heldSince = clk.Now()
			e.holds++
			hold := e.holds
			e.logger.Warn("update leaving no healthy instance held", "grace", e.grace, "revision", e.revision, "healthy_before", len(e.healthy))
			e.holdTimer = clk.AfterFunc(e.grace, func() { e.release(hold) })
		}
		return
	}
	if !e.heldSince.IsZero() {
		e.logger.Info("held empty update replaced by one with healthy instances", "revision", e.revision, "healthy", len(healthy))
		e.heldSince = time.Time{}
		e.holdTimer.Stop()
	}
	e.set(all, healthy)
}

// beforeRelease, when set by a test, runs when the timer of a hold fires,
// before the hold is looked at.
var beforeRelease atomic.Pointer[func(*serviceCache)]

// release applies a held update once the grace period of hold has passed,
// if the service is still without healthy instances. A timer that fires
// as its hold ends cannot be stopped in time: the hold it finds may be a
// later one, whose grace period is not over.
func (e *serviceCache) release(hold uint64) {
	if h := beforeRelease.Load(); h != nil {
		(*h)(e)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.heldSince.IsZero() || e.holds != hold {
		return
	}
	select {
	case <-e.c.closed:
		// A closed client changes nothing: not its subscriptions' lists,
		// nor the cache dir that the next process starts from.
		return
	default:
	}
	e.logger.Warn("service has had no healthy instance for the whole grace period; applying", "grace", e.grace, "revision", e.revision)
	e.heldSince = time.Time{}
	all := make([]*rosterv1.Instance, 0, len(e.all))
	for _, inst := range e.all {
		all = append(all, inst)
	}
	slices.SortFunc(all, func(a, b *rosterv1.Instance) int { return cmp.Compare(a.GetId(), b.GetId()) })
	e.set(all, healthyOf(all))
}

func (e *serviceCache) set(all, healthy []*rosterv1.Instance) {
	e.published, e.healthy, e.publishedRev = all, healthy, e.revision
	e.save()
	e.notify()
}

// notify signals every subscription; e.mu is held.
func (e *serviceCache) notify() {
	for s := range e.subs {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
}

// Healthy reports whether inst should receive traffic: passing and not
// drained, as the server's healthy-only reads decide.
func Healthy(inst *rosterv1.Instance) bool {
	return inst.GetEnabled() && inst.GetStatus() == rosterv1.HealthStatus_HEALTH_STATUS_PASSING
}

func healthyOf(all []*rosterv1.Instance) []*rosterv1.Instance {
	var out []*rosterv1.Instance
	for _, inst := range all {
		if Healthy(inst) {
			out = append(out, inst)
		}
	}
	return out
}

// cacheDirFor returns the cache dir for a service of namespace: none for a
// namespace that is a path step: ".." would lead out of dir, "." to dir
// itself instead of a namespace's directory in it (no cluster accepts
// either; escaping takes care of every other name).
func cacheDirFor(dir, namespace string) string {
	if namespace == "." || namespace == ".." {
		return ""
	}
	return dir
}

// path returns the file the service is kept in under the cache dir.
func (e *serviceCache) path() string {
	return filepath.Join(e.dir, url.PathEscape(e.key.namespace), url.PathEscape(e.key.service)+".json")
}

// save writes the published list to the cache dir, replacing the file at
// once so that a crash leaves the old list or the new one.
func (e *serviceCache) save() {
	if e.dir == "" {
		return
	}
	b, err := protojson.Marshal(&rosterv1.GetServiceResponse{Instances: e.published, ServiceRevision: e.publishedRev})
	if err == nil {
		err = writeFileAtomic(e.path(), b)
	}
	if err != nil {
		e.logger.Warn("cannot persist service list", "dir", e.dir, "error", err)
	}
}

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// load reads the service's list from the cache dir, when there is one.
func (e *serviceCache) load() {
	if e.dir == "" {
		return
	}
	b, err := os.ReadFile(e.path())
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var saved rosterv1.GetServiceResponse
	if err == nil {
		err = protojson.Unmarshal(b, &saved)
	}
	if err != nil {
		e.logger.Warn("ignoring unreadable persisted service list", "path", e.path(), "error", err)
		return
	}
	st, err := os.Stat(e.path())
	if err != nil {
		return
	}
	e.published = saved.GetInstances()
	e.healthy = healthyOf(e.published)
	e.publishedRev = saved.GetServiceRevision()
	e.syncedAt = st.ModTime()
	e.loaded = true
	e.logger.Info("starting with persisted service list", "path", e.path(), "revision", e.publishedRev, "instances", len(e.published))
}

package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// DefaultNamespace is the namespace the server uses when a request leaves
// it empty.
const DefaultNamespace = "default"

// InstanceKey names one registered instance.
type InstanceKey struct {
	Namespace string
	Service   string
	ID        string
}

// String returns the key as namespace/service/id.
func (k InstanceKey) String() string {
	return k.Namespace + "/" + k.Service + "/" + k.ID
}

// normal returns k with an empty namespace spelled as the server spells it.
func (k InstanceKey) normal() InstanceKey {
	if k.Namespace == "" {
		k.Namespace = DefaultNamespace
	}
	return k
}

// LeaseEventKind says what a LeaseEvent reports.
type LeaseEventKind int

const (
	// LeaseLost: the server no longer holds the instance's lease (it answered
	// NOT_FOUND, typically because the lease expired and the instance was
	// removed). The session keeps renewing; re-register to restore it.
	LeaseLost LeaseEventKind = iota + 1
	// LeaseRestored: a lease reported lost was renewed again, for example
	// after the instance was registered again.
	LeaseRestored
	// StreamConnected: the keepalive stream to Endpoint answered its first
	// renewal.
	StreamConnected
	// StreamBroken: the keepalive stream to Endpoint failed with Err; the
	// session reconnects, to the next endpoint when this one is unreachable.
	StreamBroken
)

// String returns the kind in words.
func (k LeaseEventKind) String() string {
	switch k {
	case LeaseLost:
		return "lease lost"
	case LeaseRestored:
		return "lease restored"
	case StreamConnected:
		return "stream connected"
	case StreamBroken:
		return "stream broken"
	}
	return fmt.Sprintf("LeaseEventKind(%d)", int(k))
}

// LeaseEvent is something a Session reports.
type LeaseEvent struct {
	Kind LeaseEventKind
	// Instance is set for LeaseLost and LeaseRestored.
	Instance InstanceKey
	// Endpoint is set for StreamConnected and StreamBroken.
	Endpoint string
	// Err says why a lease was lost or a stream broke.
	Err error

	// gen is the generation of the lease a LeaseLost or LeaseRestored is
	// about (see Session.add).
	gen uint64
}

// MaxKeepAliveBatch is the most instances one KeepAlive message may renew;
// a server refuses a larger batch as a whole.
const MaxKeepAliveBatch = 1000

// keepAliveBatch is the most instances one message of a Session renews.
const keepAliveBatch = MaxKeepAliveBatch / 2

// Session keeps the TTL leases of a set of instances alive over one
// Registry.KeepAlive stream: every ttl/3 it renews each instance, many in
// one message (up to 500), or one a message with a server too old for
// batches. It reports leases lost and restored, and stream failures, on
// Events. When the stream breaks it reconnects, moving to the next endpoint
// when the current one is unreachable, and goes on renewing.
type Session struct {
	client   *Client
	interval time.Duration
	ttl      time.Duration
	cancel   context.CancelFunc
	done     chan struct{}
	// wake asks the stream to renew now, after Add.
	wake chan struct{}
	// oneEach: a server refused a batch, so the next stream sends one
	// instance a message (the one after it tries batches again).
	oneEach atomic.Bool

	mu     sync.Mutex
	leases map[InstanceKey]*leaseState
	// lastGen numbers the leases added, so that an answer or an event
	// about a lease removed since is not taken for one added after it
	// under the same key.
	lastGen uint64
	queue   []LeaseEvent
	queued  chan struct{}
	events  chan LeaseEvent
}

type leaseState struct {
	lost bool
	gen  uint64
}

// leaseRef is one lease as a renewal sent it: its instance and generation.
type leaseRef struct {
	key InstanceKey
	gen uint64
}

// KeepAlive starts a Session renewing the leases of instances, whose TTL
// is ttl. The session runs until ctx ends, Close is called or the client
// is closed.
func (c *Client) KeepAlive(ctx context.Context, ttl time.Duration, instances ...InstanceKey) (*Session, error) {
	if ttl <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "keepalive ttl %s: must be positive", ttl)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Session{
		client:   c,
		ttl:      ttl,
		interval: max(ttl/3, 10*time.Millisecond),
		cancel:   cancel,
		done:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		leases:   make(map[InstanceKey]*leaseState),
		queued:   make(chan struct{}, 1),
		events:   make(chan LeaseEvent),
	}
	for _, k := range instances {
		s.add(k)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.run(ctx)
		// run also ends when the client is closed: the session ends with
		// it, its events and Done too.
		s.cancel()
	}()
	go func() {
		defer wg.Done()
		s.forward(ctx)
	}()
	go func() {
		wg.Wait()
		close(s.done)
	}()
	return s, nil
}

// Add starts renewing the lease of one more instance.
func (s *Session) Add(k InstanceKey) {
	s.add(k)
	s.renewNow()
}

// renewNow asks the stream to renew every lease now.
func (s *Session) renewNow() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// add starts renewing the lease of k, unless it is renewed already, and
// returns the lease's generation: a lease removed and added again gets a
// new one, and answers and events about the one before it are dropped.
func (s *Session) add(k InstanceKey) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	lease, ok := s.leases[k.normal()]
	if !ok {
		s.lastGen++
		lease = &leaseState{gen: s.lastGen}
		s.leases[k.normal()] = lease
	}
	return lease.gen
}

// renewedAgain gives the lease of k a new generation, not lost: the
// instance was registered again, and what the server says of the lease
// from before (a late NOT_FOUND) is dropped, while a loss of the new one is
// reported even though no renewal has succeeded in between. It returns
// the new generation; zero when k is not renewed.
func (s *Session) renewedAgain(k InstanceKey) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	lease, ok := s.leases[k.normal()]
	if !ok {
		return 0
	}
	s.lastGen++
	lease.gen, lease.lost = s.lastGen, false
	return lease.gen
}

// Remove stops renewing the lease of an instance. It does not deregister it.
func (s *Session) Remove(k InstanceKey) {
	s.mu.Lock()
	delete(s.leases, k.normal())
	s.mu.Unlock()
}

// Events returns the channel the session reports on. Events are queued, so
// a slow reader never delays renewals; the channel is closed when the
// session ends, and events not yet read then are dropped.
func (s *Session) Events() <-chan LeaseEvent {
	return s.events
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} {
	return s.done
}

// Close stops renewing and waits for the session to end.
func (s *Session) Close() {
	s.cancel()
	<-s.done
}

func (s *Session) emit(ev LeaseEvent) {
	s.mu.Lock()
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.queued <- struct{}{}:
	default:
	}
}

// forward moves queued events to the events channel.
func (s *Session) forward(ctx context.Context) {
	defer close(s.events)
	for {
		select {
		case <-s.queued:
		case <-ctx.Done():
			return
		}
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, ev := range batch {
			select {
			case s.events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// run keeps a keepalive stream open until ctx ends.
func (s *Session) run(ctx context.Context) {
	c := s.client
	failures := 0
	for {
		if err := streamPause(ctx, c, failures); err != nil {
			return
		}
		i := int(c.current.Load()) % len(c.conns)
		if _, err := c.connect(ctx, i); err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return
			}
			s.emit(LeaseEvent{Kind: StreamBroken, Endpoint: c.addrs[i], Err: err})
			c.moveOn(i)
			failures++
			continue
		}
		answered, err := s.stream(ctx, i)
		if ctx.Err() != nil {
			return
		}
		s.emit(LeaseEvent{Kind: StreamBroken, Endpoint: c.addrs[i], Err: err})
		if status.Code(err) != codes.ResourceExhausted {
			c.moveOn(i)
		}
		if answered {
			failures = 0
		}
		failures++
	}
}

// stream renews leases over one KeepAlive stream to endpoint i until it
// fails. It reports whether the server answered anything.
func (s *Session) stream(ctx context.Context, i int) (answered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := rosterv1.NewRegistryClient(s.client.conns[i]).KeepAlive(ctx)
	if err != nil {
		return false, err
	}

	var mu sync.Mutex
	// inflight holds the instances of each message sent and not yet
	// answered, oldest first: the server answers in order.
	var inflight [][]leaseRef
	// sentBatch: a batch went out; batchAnswered: one was answered
	// instance by instance; refused: one was refused as a whole as
	// invalid. The receiver owns the last two until it has exited.
	var sentBatch, batchAnswered, refused bool
	// The renewals and the stall check run on the client's clock.
	clk := s.client.clk()
	waitingSince := clk.Now()
	recvErr := make(chan error, 1)
	go func() {
		first := true
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			mu.Lock()
			var keys []leaseRef
			if len(inflight) > 0 {
				keys = inflight[0]
				inflight[0] = nil
				inflight = inflight[1:]
			}
			waitingSince = clk.Now()
			answered = true
			mu.Unlock()
			if first {
				first = false
				s.emit(LeaseEvent{Kind: StreamConnected, Endpoint: s.client.addrs[i]})
			}
			if h := beforeLeaseAnswer.Load(); h != nil {
				(*h)(s, resp)
			}
			if len(resp.GetResults()) > 0 {
				batchAnswered = true
			} else if len(keys) > 1 && codes.Code(resp.GetCode()) == codes.InvalidArgument {
				// A server that takes smaller batches, or none: end
				// this stream and renew one by one on the next.
				refused = true
				recvErr <- status.Error(codes.InvalidArgument, resp.GetError())
				return
			}
			s.answered(keys, resp)
		}
	}()
	// The receiver owns answered until it has exited; read it only after.
	finish := func(err error) (bool, error) {
		cancel()
		if rerr := <-recvErr; err == nil {
			err = rerr
		}
		return answered, err
	}
	batches := !s.oneEach.Swap(false)
	defer func() {
		// A server that does not know batches ends the stream at the
		// first one, refusing an unknown field; one that knows them but
		// refuses this one answers so. Either way the next stream renews
		// one instance a message.
		mu.Lock()
		sent := sentBatch
		mu.Unlock()
		if refused || (sent && !batchAnswered && status.Code(err) == codes.InvalidArgument) {
			s.oneEach.Store(true)
		}
	}()

	renew := func() {
		keys := s.keys()
		var msgs []*rosterv1.HeartbeatRequest
		var groups [][]leaseRef
		batched := false
		for len(keys) > 0 {
			n := 1
			if batches && len(keys) > 1 {
				n = min(len(keys), keepAliveBatch)
			}
			group := keys[:n:n]
			keys = keys[n:]
			req := &rosterv1.HeartbeatRequest{}
			if n == 1 {
				k := group[0].key
				req.Namespace, req.Service, req.Id = k.Namespace, k.Service, k.ID
			} else {
				batched = true
				req.Instances = make([]*rosterv1.InstanceRef, n)
				for j, l := range group {
					k := l.key
					req.Instances[j] = &rosterv1.InstanceRef{Namespace: k.Namespace, Service: k.Service, Id: k.ID}
				}
			}
			msgs = append(msgs, req)
			groups = append(groups, group)
		}
		mu.Lock()
		if len(inflight) == 0 {
			waitingSince = clk.Now()
		}
		inflight = append(inflight, groups...)
		sentBatch = sentBatch || batched
		mu.Unlock()
		for _, req := range msgs {
			if err := stream.Send(req); err != nil {
				// Send only says the stream is gone; Recv says why.
				return
			}
		}
	}
	renew()
	ticker := newClockTicker(clk, s.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			mu.Lock()
			stalled := len(inflight) > 0 && clk.Now().Sub(waitingSince) > s.ttl
			mu.Unlock()
			if stalled {
				return finish(status.Errorf(codes.DeadlineExceeded, "no keepalive answer from %s within %s", s.client.addrs[i], s.ttl))
			}
			renew()
		case <-s.wake:
			renew()
		case err := <-recvErr:
			return answered, err
		case <-ctx.Done():
			return finish(status.FromContextError(ctx.Err()).Err())
		}
	}
}

// beforeLeaseAnswer, when set by a test, runs before the session records
// each answer of the server, on the stream's receiving goroutine. Atomic:
// the sessions of earlier tests' clients may still run.
var beforeLeaseAnswer atomic.Pointer[func(*Session, *rosterv1.HeartbeatResponse)]

// keys returns the leases being renewed, in a stable order.
func (s *Session) keys() []leaseRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]leaseRef, 0, len(s.leases))
	for k, lease := range s.leases {
		keys = append(keys, leaseRef{key: k, gen: lease.gen})
	}
	slices.SortFunc(keys, func(a, b leaseRef) int { return cmp.Compare(a.key.String(), b.key.String()) })
	return keys
}

// answered records the server's answer to one message, which renewed
// keys: one instance, or a batch answered in resp.Results.
func (s *Session) answered(keys []leaseRef, resp *rosterv1.HeartbeatResponse) {
	if len(resp.GetResults()) == 0 {
		if resp.GetService() != "" || len(keys) == 0 {
			k := InstanceKey{Namespace: resp.GetNamespace(), Service: resp.GetService(), ID: resp.GetId()}.normal()
			// The answer names its instance; the generation is the one
			// sent, or, for an answer to nothing sent, whichever is
			// current.
			ref := leaseRef{key: k}
			if len(keys) == 1 && keys[0].key.normal() == k {
				ref.gen = keys[0].gen
			}
			keys = []leaseRef{ref}
		}
		// One answer for the message: a single renewal, or a batch
		// refused as a whole.
		for _, k := range keys {
			s.renewed(k, codes.Code(resp.GetCode()), resp.GetError())
		}
		return
	}
	for j, r := range resp.GetResults() {
		if j < len(keys) {
			s.renewed(keys[j], codes.Code(r.GetCode()), r.GetError())
		}
	}
}

// renewed records the server's answer for one lease. An answer about a
// lease removed since (another generation) is dropped: it says nothing
// of the lease renewed now under the same key.
func (s *Session) renewed(l leaseRef, code codes.Code, msg string) {
	k := l.key.normal()
	s.mu.Lock()
	lease, ok := s.leases[k]
	var ev *LeaseEvent
	switch {
	case !ok:
	case l.gen != 0 && l.gen != lease.gen:
	case code == codes.NotFound && !lease.lost:
		lease.lost = true
		ev = &LeaseEvent{Kind: LeaseLost, Instance: k, Err: status.Error(code, msg), gen: lease.gen}
	case code == codes.OK && lease.lost:
		lease.lost = false
		ev = &LeaseEvent{Kind: LeaseRestored, Instance: k, gen: lease.gen}
	}
	s.mu.Unlock()
	// Other codes (no leader for a moment, say) leave the lease as it was:
	// the next renewal tells.
	if ev != nil {
		s.emit(*ev)
	}
}

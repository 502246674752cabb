package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/internal/checker"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// namespace holds everything the checked workload writes.
const namespace = "chaos"

// leasedService holds the TTL instances checker X judges.
const leasedService = "leased"

// Per-attempt deadlines. A write's deadline is below the server's hold
// timeout on purpose: a call cut short is an unknown outcome, which the
// checkers handle; it is never retried inside the recorded op.
const (
	writeTimeout = 3 * time.Second
	readTimeout  = 2 * time.Second
)

// workload drives the recorded clients, lease owners and watchers.
type workload struct {
	cfg *Config
	c   *cluster
	rec *recorder
	// sdk is the Go SDK over every node's address: half the writes go
	// through it, so the checkers judge its retries too.
	sdk *client.Client

	services []string
	values   atomic.Uint64

	// Capability detection: set when the server answers Unimplemented.
	noHeartbeat atomic.Bool
	noWatch     atomic.Bool
	noKeepAlive atomic.Bool

	// Watchers' progress, for the final wait.
	watchMu   sync.Mutex
	watchLast map[string]uint64
	streams   []*checker.WatchStream
	slowMode  atomic.Bool
	slowCuts  atomic.Int64
	watchErrs atomic.Int64

	// Leased keys whose register was attempted: absence of those is an
	// expiry observation.
	leasedMu    sync.Mutex
	leasedTried map[string]bool
	// streamNodes: the node each stream lease owner's KeepAlive stream is
	// connected to, by instance id.
	streamMu    sync.Mutex
	streamNodes map[string]string
	// stopLeases stops the lease owners separately from the clients, so
	// leases stay alive through the final reads.
	nextClient atomic.Int64
}

// viaSDK stands for "through the SDK" where a write names the node it goes
// to: the SDK picks endpoints and retries on its own.
var viaSDK = &node{id: "sdk"}

func newWorkload(cfg *Config, c *cluster, rec *recorder) (*workload, error) {
	w := &workload{cfg: cfg, c: c, rec: rec, watchLast: map[string]uint64{}, leasedTried: map[string]bool{},
		streamNodes: map[string]string{}}
	var addrs []string
	for _, n := range c.nodes {
		addrs = append(addrs, n.api)
	}
	sdk, err := client.New(context.Background(), addrs, client.WithConnectTimeout(time.Second), client.WithRetryBackoff(20*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("sdk client: %w", err)
	}
	w.sdk = sdk
	for i := 0; i < cfg.Services; i++ {
		w.services = append(w.services, fmt.Sprintf("s%d", i))
	}
	for _, svc := range w.services {
		for i := 0; i < cfg.IDs; i++ {
			rec.h.KeySpace = append(rec.h.KeySpace, checker.InstanceKey(namespace, svc, fmt.Sprintf("i%d", i)))
		}
	}
	for i := 0; i < cfg.Leased; i++ {
		rec.h.KeySpace = append(rec.h.KeySpace, checker.InstanceKey(namespace, leasedService, fmt.Sprintf("l%d", i)))
	}
	for i := 0; i < cfg.Streamed; i++ {
		rec.h.KeySpace = append(rec.h.KeySpace, checker.InstanceKey(namespace, leasedService, fmt.Sprintf("k%d", i)))
	}
	return w, nil
}

// close releases the SDK's connections.
func (w *workload) close() { _ = w.sdk.Close() }

// writeTo picks where a write goes: the SDK half the time, otherwise a
// random serving node.
func (w *workload) writeTo(r *rand.Rand) *node {
	if r.IntN(2) == 0 {
		return viaSDK
	}
	return w.c.pick(r)
}

// clientID hands out a fresh client id: each id has one call in flight.
func (w *workload) clientID() int { return int(w.nextClient.Add(1) - 1) }

// value returns a fresh unique address:port.
func (w *workload) value() (string, uint32) {
	v := w.values.Add(1)
	return fmt.Sprintf("10.%d.%d.%d", (v>>16)&255, (v>>8)&255, v&255), uint32(1 + v>>24)
}

func valueOf(inst *rosterv1.Instance) string {
	return fmt.Sprintf("%s:%d", inst.GetAddress(), inst.GetPort())
}

// register records one Register attempt on node n, or through the SDK
// when n is viaSDK.
func (w *workload) register(ctx context.Context, client int, n *node, svc, id string, ttl time.Duration) checker.Op {
	addr, port := w.value()
	inst := &rosterv1.Instance{Namespace: namespace, Service: svc, Id: id, Address: addr, Port: port}
	if ttl > 0 {
		inst.Ttl = durationpb.New(ttl)
	}
	op := checker.Op{ClientID: client, Kind: checker.KindRegister, Key: checker.InstanceKey(namespace, svc, id),
		Value: valueOf(inst), TTL: ttl, Node: n.id}
	cctx, cancel := context.WithTimeout(ctx, writeTimeout)
	op.Call = w.rec.now()
	var resp *rosterv1.RegisterResponse
	var err error
	if n == viaSDK {
		resp, err = w.sdk.Register(cctx, &rosterv1.RegisterRequest{Instance: inst})
	} else {
		resp, err = n.reg.Register(cctx, &rosterv1.RegisterRequest{Instance: inst})
	}
	op.Return = w.rec.now()
	cancel()
	op.Outcome, op.Code = outcomeVia(n, err)
	if err == nil {
		op.Revision = resp.Revision
	}
	w.rec.add(op)
	return op
}

// deregister records one Deregister attempt on node n, or through the SDK
// when n is viaSDK.
func (w *workload) deregister(ctx context.Context, client int, n *node, svc, id string) checker.Op {
	op := checker.Op{ClientID: client, Kind: checker.KindDeregister, Key: checker.InstanceKey(namespace, svc, id), Node: n.id}
	cctx, cancel := context.WithTimeout(ctx, writeTimeout)
	op.Call = w.rec.now()
	req := &rosterv1.DeregisterRequest{Namespace: namespace, Service: svc, Id: id}
	var resp *rosterv1.DeregisterResponse
	var err error
	if n == viaSDK {
		resp, err = w.sdk.Deregister(cctx, req)
	} else {
		resp, err = n.reg.Deregister(cctx, req)
	}
	op.Return = w.rec.now()
	cancel()
	op.Outcome, op.Code = outcomeVia(n, err)
	if err == nil {
		op.Revision = resp.Revision
	}
	w.rec.add(op)
	return op
}

// get records one linearizable GetService attempt and returns what it saw.
func (w *workload) get(ctx context.Context, client int, n *node, svc string, timeout time.Duration) (checker.Op, *rosterv1.GetServiceResponse) {
	op := checker.Op{ClientID: client, Kind: checker.KindGet, Service: checker.ServiceKey(namespace, svc), Node: n.id}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	op.Call = w.rec.now()
	resp, err := n.reg.GetService(cctx, &rosterv1.GetServiceRequest{Namespace: namespace, Service: svc,
		Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE}})
	op.Return = w.rec.now()
	cancel()
	op.Outcome, op.Code = outcome(err)
	if err != nil {
		// A failed read tells nothing; L drops it. Counted all the same.
		op.Outcome = checker.OutcomeFail
		w.rec.add(op)
		return op, nil
	}
	op.Revision = resp.GetHeader().GetRevision()
	op.Observed = map[string]string{}
	for _, inst := range resp.Instances {
		op.Observed[inst.Id] = valueOf(inst)
	}
	w.rec.add(op)
	return op, resp
}

// heartbeat records one Heartbeat attempt.
func (w *workload) heartbeat(ctx context.Context, client int, n *node, svc, id string) (checker.Op, error) {
	op := checker.Op{ClientID: client, Kind: checker.KindHeartbeat, Key: checker.InstanceKey(namespace, svc, id), Node: n.id}
	cctx, cancel := context.WithTimeout(ctx, readTimeout)
	op.Call = w.rec.now()
	resp, err := n.reg.Heartbeat(cctx, &rosterv1.HeartbeatRequest{Namespace: namespace, Service: svc, Id: id})
	op.Return = w.rec.now()
	cancel()
	op.Outcome, op.Code = outcome(err)
	if err == nil && resp.Ttl != nil {
		op.TTL = resp.Ttl.AsDuration()
	}
	if status.Code(err) == codes.Unimplemented {
		w.noHeartbeat.Store(true)
		return op, err
	}
	w.rec.add(op)
	return op, err
}

// client is one recorded client: register, deregister and linearizable get
// on the key space, one call at a time.
func (w *workload) client(ctx context.Context, r *rand.Rand) {
	id := w.clientID()
	for ctx.Err() == nil {
		svc := w.services[r.IntN(len(w.services))]
		inst := fmt.Sprintf("i%d", r.IntN(w.cfg.IDs))
		switch x := r.IntN(100); {
		case x < 35:
			w.register(ctx, id, w.writeTo(r), svc, inst, 0)
		case x < 50:
			w.deregister(ctx, id, w.writeTo(r), svc, inst)
		default:
			// Reads go anywhere, paused and cut-off nodes included: a node
			// that should not answer must not answer stale.
			n := w.c.pick(r)
			if m := w.c.members(); r.IntN(4) == 0 && len(m) > 0 {
				n = m[r.IntN(len(m))]
			}
			w.get(ctx, id, n, svc, readTimeout)
		}
		sleep(ctx, time.Duration(r.IntN(15))*time.Millisecond)
	}
}

// registerLeased registers the leased instance id for its owner, noting
// the key as tried (from then on leaseReader reports its absences to
// checker X); it reports whether the registration was acknowledged, after
// a pause when it was not.
func (w *workload) registerLeased(ctx context.Context, r *rand.Rand, client int, key, id string) bool {
	w.leasedMu.Lock()
	w.leasedTried[key] = true
	w.leasedMu.Unlock()
	op := w.register(ctx, client, w.writeTo(r), leasedService, id, w.cfg.TTL)
	if op.Outcome != checker.OutcomeOK {
		sleep(ctx, 300*time.Millisecond)
		return false
	}
	return true
}

// leaseOwner keeps one TTL instance alive with heartbeats, sometimes falls
// silent for longer than the TTL (so it expires, legitimately), then
// registers again.
func (w *workload) leaseOwner(ctx context.Context, r *rand.Rand, id string) {
	client := w.clientID()
	key := checker.InstanceKey(namespace, leasedService, id)
	registered := false
	silentAt := time.Now().Add(20*time.Second + time.Duration(r.IntN(40))*time.Second)
	for ctx.Err() == nil {
		if !registered {
			registered = w.registerLeased(ctx, r, client, key, id)
			continue
		}
		sleep(ctx, w.cfg.TTL/5)
		if w.noHeartbeat.Load() {
			continue
		}
		if time.Now().After(silentAt) && !w.noHeartbeat.Load() {
			// Fall silent: the lease must run out, no earlier than TTL after
			// the last acknowledged heartbeat (checker X).
			sleep(ctx, w.cfg.TTL+2*time.Second+time.Duration(r.IntN(2000))*time.Millisecond)
			silentAt = time.Now().Add(30*time.Second + time.Duration(r.IntN(40))*time.Second)
			registered = false
			continue
		}
		_, err := w.heartbeat(ctx, client, w.c.pick(r), leasedService, id)
		if status.Code(err) == codes.NotFound {
			registered = false
		}
	}
}

// leaseReader reads the leased service and reports every leased instance
// it finds missing as an expiry observation for checker X.
func (w *workload) leaseReader(ctx context.Context, r *rand.Rand) {
	client := w.clientID()
	for ctx.Err() == nil {
		sleep(ctx, 300*time.Millisecond)
		op, resp := w.get(ctx, client, w.c.pick(r), leasedService, readTimeout)
		if resp == nil {
			continue
		}
		w.leasedMu.Lock()
		for key := range w.leasedTried {
			id := key[len(namespace)+len(leasedService)+2:]
			if _, ok := op.Observed[id]; !ok {
				w.rec.expiry(checker.Expiry{Key: key, Time: op.Return, NotBefore: op.Call,
					Revision: op.Revision, Source: "get"})
			}
		}
		w.leasedMu.Unlock()
	}
}

// watcher watches the whole namespace, recording every message, and resumes
// on another node at the last revision it received whenever a stream ends.
func (w *workload) watcher(ctx context.Context, r *rand.Rand, name string, slot int, slow bool) {
	stream := &checker.WatchStream{Watcher: name, Namespace: namespace}
	w.watchMu.Lock()
	w.streams = append(w.streams, stream)
	w.watchMu.Unlock()
	var last uint64
	started := false
	next := slot
	for ctx.Err() == nil {
		n := w.nextWatchNode(&next)
		if n == nil {
			continue
		}
		sub := checker.Subscription{StartRevision: last, Node: n.id, Time: w.rec.now()}
		if !started {
			sub.StartRevision = 0
		}
		err := w.watchOnce(ctx, name, n, &sub, &last, &started, slow)
		w.watchMu.Lock()
		stream.Subscriptions = append(stream.Subscriptions, sub)
		w.watchMu.Unlock()
		if status.Code(err) == codes.Unimplemented {
			w.noWatch.Store(true)
			return
		}
		sleep(ctx, time.Duration(100+r.IntN(200))*time.Millisecond)
	}
}

// nextWatchNode returns the node at *next in the rotation of the
// watchers, and moves *next on; nil when that node cannot serve a watch
// now (not a member, down, or paused).
func (w *workload) nextWatchNode(next *int) *node {
	n := w.c.nodes[*next%len(w.c.nodes)]
	*next++
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	if !n.member || !n.up || n.paused {
		return nil
	}
	return n
}

// watchOnce runs one Watch call until it ends.
func (w *workload) watchOnce(ctx context.Context, name string, n *node, sub *checker.Subscription, last *uint64, started *bool, slow bool) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := n.reg.Watch(cctx, &rosterv1.WatchRequest{Namespace: namespace, StartRevision: sub.StartRevision,
		ProgressInterval: durationpb.New(time.Second)})
	for err == nil {
		var msg *rosterv1.WatchResponse
		msg, err = s.Recv()
		if err != nil {
			break
		}
		w.record(name, sub, msg, last, started)
		if slow && w.slowMode.Load() {
			// A consumer slower than the event rate: the server must cut it
			// off with a resumable error rather than buffer without bound.
			time.Sleep(100 * time.Millisecond)
		}
	}
	w.watchEnded(ctx, sub, err)
	return err
}

// record adds one message to a watcher's subscription.
func (w *workload) record(name string, sub *checker.Subscription, msg *rosterv1.WatchResponse, last *uint64, started *bool) {
	wm := checker.WatchMessage{Revision: msg.Revision, Reset: msg.Reset_, Progress: msg.Progress, Time: w.rec.now()}
	for _, e := range msg.Events {
		inst := e.Instance
		if inst == nil {
			inst = e.PrevInstance
		}
		ev := checker.WatchEvent{Revision: e.Revision, Key: checker.InstanceKey(inst.GetNamespace(), inst.GetService(), inst.GetId())}
		switch e.Type {
		case rosterv1.Event_TYPE_PUT:
			ev.Type, ev.Value = checker.EventPut, valueOf(e.Instance)
		case rosterv1.Event_TYPE_DELETE:
			ev.Type = checker.EventDelete
			if inst.GetService() == leasedService && !msg.Reset_ {
				w.rec.expiry(checker.Expiry{Key: ev.Key, Time: wm.Time, Revision: e.Revision, Source: "watch:" + sub.Node})
			}
		}
		wm.Events = append(wm.Events, ev)
	}
	sub.Messages = append(sub.Messages, wm)
	*started = true
	if msg.Revision > *last {
		*last = msg.Revision
		w.watchMu.Lock()
		w.watchLast[name] = msg.Revision
		w.watchMu.Unlock()
	}
}

// watchEnded records why a subscription ended, unless the run is over.
func (w *workload) watchEnded(ctx context.Context, sub *checker.Subscription, err error) {
	if ctx.Err() == nil {
		sub.Err = err.Error()
		w.watchErrs.Add(1)
		if st, ok := status.FromError(err); ok {
			for _, d := range st.Details() {
				if strings.Contains(fmt.Sprint(d), "SLOW_WATCHER") {
					w.slowCuts.Add(1)
				}
			}
		}
	}
}

// manyWatcher is len(names) watchers of the whole namespace carried by one
// WatchMany stream, each recorded as its own watcher: the stream's messages
// name the watches they are for (often all of them at once). When the
// stream or one of its watches ends, every watch resumes, on another node,
// each from the last revision it received.
func (w *workload) manyWatcher(ctx context.Context, r *rand.Rand, names []string, slot int) {
	streams := make([]*checker.WatchStream, len(names))
	w.watchMu.Lock()
	for i, name := range names {
		streams[i] = &checker.WatchStream{Watcher: name, Namespace: namespace}
		w.streams = append(w.streams, streams[i])
	}
	w.watchMu.Unlock()
	last := make([]uint64, len(names))
	started := make([]bool, len(names))
	next := slot
	for ctx.Err() == nil {
		n := w.nextWatchNode(&next)
		if n == nil {
			continue
		}
		subs := make([]checker.Subscription, len(names))
		for i := range subs {
			subs[i] = checker.Subscription{StartRevision: last[i], Node: n.id, Time: w.rec.now()}
			if !started[i] {
				subs[i].StartRevision = 0
			}
		}
		err := w.watchManyOnce(ctx, names, n, subs, last, started)
		w.watchMu.Lock()
		for i := range subs {
			streams[i].Subscriptions = append(streams[i].Subscriptions, subs[i])
		}
		w.watchMu.Unlock()
		if status.Code(err) == codes.Unimplemented {
			return // a build before WatchMany
		}
		sleep(ctx, time.Duration(100+r.IntN(200))*time.Millisecond)
	}
}

// watchManyOnce runs one WatchMany stream, watch i+1 being names[i], until
// it or one of its watches ends.
func (w *workload) watchManyOnce(ctx context.Context, names []string, n *node, subs []checker.Subscription, last []uint64, started []bool) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := n.reg.WatchMany(cctx)
	for i := 0; err == nil && i < len(names); i++ {
		err = s.Send(&rosterv1.WatchManyRequest{Action: &rosterv1.WatchManyRequest_Create{Create: &rosterv1.WatchCreate{
			WatchId: uint64(i + 1), Request: &rosterv1.WatchRequest{Namespace: namespace, StartRevision: subs[i].StartRevision,
				ProgressInterval: durationpb.New(time.Second)}}}})
	}
	for err == nil {
		var msg *rosterv1.WatchManyResponse
		msg, err = s.Recv()
		if err != nil {
			break
		}
		for _, id := range msg.WatchIds {
			i := int(id) - 1
			if i < 0 || i >= len(names) {
				err = fmt.Errorf("WatchMany sent a message for watch %d, which was never created", id)
				break
			}
			if e := msg.Ended; e != nil {
				err = fmt.Errorf("watch %d ended: %w", id, status.Error(codes.Code(e.Code), e.Message))
				break
			}
			w.record(names[i], &subs[i], msg.Response, &last[i], &started[i])
		}
	}
	for i := range subs {
		w.watchEnded(ctx, &subs[i], err)
	}
	return err
}

// lastRevisions returns every watcher's last received revision.
func (w *workload) lastRevisions() map[string]uint64 {
	w.watchMu.Lock()
	defer w.watchMu.Unlock()
	out := map[string]uint64{}
	for _, s := range w.streams {
		out[s.Watcher] = w.watchLast[s.Watcher]
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// fillRequest is an unchecked registration outside the checked namespace.
func fillRequest(i int) *rosterv1.RegisterRequest {
	return &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
		Namespace: "fill", Service: "filler", Id: fmt.Sprintf("f%d", i%500),
		Address: "10.99.0.1", Port: uint32(1000 + i),
	}}
}

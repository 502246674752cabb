package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/internal/checker"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// epoch is the zero of the monotonic times recorded in histories.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// value is what the checker compares: the instance's address:port.
func value(i *rosterv1.Instance) string { return fmt.Sprintf("%s:%d", i.GetAddress(), i.GetPort()) }

func eventKey(i *rosterv1.Instance) string {
	return checker.InstanceKey(i.GetNamespace(), i.GetService(), i.GetId())
}

// toMessage converts a WatchResponse to the checker's form.
func toMessage(resp *rosterv1.WatchResponse) checker.WatchMessage {
	m := checker.WatchMessage{Revision: resp.Revision, Reset: resp.Reset_, Progress: resp.Progress, Time: now()}
	for _, e := range resp.Events {
		we := checker.WatchEvent{Revision: e.Revision, Key: eventKey(e.Instance)}
		switch e.Type {
		case rosterv1.Event_TYPE_PUT:
			we.Type, we.Value = checker.EventPut, value(e.Instance)
		case rosterv1.Event_TYPE_DELETE:
			we.Type = checker.EventDelete
		default:
			we.Type = checker.EventType(e.Type.String())
		}
		m.Events = append(m.Events, we)
	}
	return m
}

// recorder runs one watcher against a cluster and records everything it
// receives, resuming (on the next running node when its node is gone) from
// the last revision it received, as a careful client would.
type recorder struct {
	t    testing.TB
	c    *testcluster.Cluster
	req  *rosterv1.WatchRequest
	node int // index into c.Nodes of the node it watches now
	// many: the watch is the one watch of a WatchMany stream.
	many bool

	mu     sync.Mutex
	stream checker.WatchStream
	last   uint64 // last revision completed
	resets int
	errs   []error

	cancel context.CancelFunc
	done   chan struct{}
}

func startRecorder(t testing.TB, c *testcluster.Cluster, name string, node *testcluster.Node, req *rosterv1.WatchRequest) *recorder {
	t.Helper()
	return startRecorderOn(t, c, name, node, req, false)
}

// startManyRecorder is startRecorder with the watch created on a WatchMany
// stream of its own: caught up, it is read for by the stream's group.
func startManyRecorder(t testing.TB, c *testcluster.Cluster, name string, node *testcluster.Node, req *rosterv1.WatchRequest) *recorder {
	t.Helper()
	return startRecorderOn(t, c, name, node, req, true)
}

func startRecorderOn(t testing.TB, c *testcluster.Cluster, name string, node *testcluster.Node, req *rosterv1.WatchRequest, many bool) *recorder {
	t.Helper()
	if req.ProgressInterval == nil {
		req.ProgressInterval = durationpb.New(100 * time.Millisecond)
	}
	ns := req.Namespace
	if ns == "" {
		ns = "default"
	}
	r := &recorder{
		t: t, c: c, req: req, many: many, last: req.StartRevision, done: make(chan struct{}),
		stream: checker.WatchStream{Watcher: name, Namespace: ns, Service: req.Service, HealthyOnly: req.HealthyOnly},
	}
	for i, nd := range c.Nodes {
		if nd == node {
			r.node = i
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	started := make(chan struct{})
	go r.run(ctx, started)
	<-started
	t.Cleanup(r.stop)
	return r
}

func (r *recorder) run(ctx context.Context, started chan struct{}) {
	defer close(r.done)
	first := true
	for ctx.Err() == nil {
		nd := r.c.Nodes[r.node]
		r.mu.Lock()
		start := r.last
		r.stream.Subscriptions = append(r.stream.Subscriptions, checker.Subscription{StartRevision: start, Node: nd.ID, Time: now()})
		sub := &r.stream.Subscriptions[len(r.stream.Subscriptions)-1]
		r.mu.Unlock()
		req := proto.Clone(r.req).(*rosterv1.WatchRequest)
		req.StartRevision = start
		err := r.follow(ctx, nd, req, sub, started, first)
		first = false
		r.mu.Lock()
		r.stream.Subscriptions[len(r.stream.Subscriptions)-1].Err = fmt.Sprint(err)
		r.errs = append(r.errs, err)
		r.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if code := status.Code(err); code != codes.ResourceExhausted {
			// The node is gone or unreachable: move to the next running one.
			r.node = r.nextRunning()
		}
	}
}

func (r *recorder) nextRunning() int {
	for i := 1; i <= len(r.c.Nodes); i++ {
		j := (r.node + i) % len(r.c.Nodes)
		for _, nd := range r.c.Running() {
			if nd == r.c.Nodes[j] {
				return j
			}
		}
	}
	return r.node
}

func (r *recorder) follow(ctx context.Context, nd *testcluster.Node, req *rosterv1.WatchRequest, sub *checker.Subscription, started chan struct{}, first bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recv, err := r.open(ctx, nd, req)
	if first {
		close(started)
	}
	if err != nil {
		return err
	}
	for {
		resp, err := recv()
		if err != nil {
			return err
		}
		m := toMessage(resp)
		r.mu.Lock()
		// sub points into the slice only this goroutine appends to.
		sub.Messages = append(sub.Messages, m)
		covered := m.Revision
		for _, e := range m.Events {
			covered = max(covered, e.Revision)
		}
		if m.Reset {
			r.resets++
			r.last = m.Revision
		} else {
			r.last = max(r.last, covered)
		}
		r.mu.Unlock()
	}
}

// open starts the watch on nd and returns how to read it.
func (r *recorder) open(ctx context.Context, nd *testcluster.Node, req *rosterv1.WatchRequest) (func() (*rosterv1.WatchResponse, error), error) {
	return openWatch(ctx, nd, req, r.many)
}

// openWatch starts a watch on nd and returns how to read it: a Watch
// stream, or (many) a WatchMany stream with this one watch, whose end is
// its error.
func openWatch(ctx context.Context, nd *testcluster.Node, req *rosterv1.WatchRequest, many bool) (func() (*rosterv1.WatchResponse, error), error) {
	if !many {
		stream, err := nd.Registry().Watch(ctx, req)
		if err != nil {
			return nil, err
		}
		return stream.Recv, nil
	}
	stream, err := nd.Registry().WatchMany(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(createWatch(1, req)); err != nil {
		if errors.Is(err, io.EOF) {
			// The server ended the stream: its status comes with Recv.
			_, err = stream.Recv()
		}
		return nil, err
	}
	return func() (*rosterv1.WatchResponse, error) {
		m, err := stream.Recv()
		switch {
		case err != nil:
			return nil, err
		case m.Ended != nil:
			return nil, status.ErrorProto(m.Ended)
		case len(m.WatchIds) != 1 || m.WatchIds[0] != 1:
			return nil, fmt.Errorf("a message for watches %v on a stream of one watch, 1", m.WatchIds)
		}
		return m.Response, nil
	}, nil
}

// bothStreams runs f as a subtest for a Watch stream and for a watch of a
// WatchMany stream.
func bothStreams(t *testing.T, f func(t *testing.T, many bool)) {
	t.Run("Watch", func(t *testing.T) { f(t, false) })
	t.Run("WatchMany", func(t *testing.T) { f(t, true) })
}

// stop ends the watcher and waits for it.
func (r *recorder) stop() {
	r.cancel()
	<-r.done
}

// reached reports whether the watcher has received everything up to rev.
func (r *recorder) reached(rev uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last >= rev
}

// result stops the watcher and returns what it recorded.
func (r *recorder) result() checker.WatchStream {
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stream
}

func (r *recorder) resetCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resets
}

// workload drives random register, deregister and maintenance calls from
// several clients against random nodes and records them for the checkers.
type workload struct {
	c        *testcluster.Cluster
	services []string
	ids      int

	mu     sync.Mutex
	ops    []checker.Op
	port   uint32
	maxRev uint64
}

func newWorkload(c *testcluster.Cluster, services []string, ids int) *workload {
	return &workload{c: c, services: services, ids: ids}
}

func (w *workload) nextPort() uint32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.port++
	return w.port
}

func (w *workload) record(op checker.Op) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ops = append(w.ops, op)
	w.maxRev = max(w.maxRev, op.Revision)
}

// run makes ops calls from clients concurrent clients, each on random nodes.
func (w *workload) run(t testing.TB, ctx context.Context, clients, ops int, seed uint64) {
	var wg sync.WaitGroup
	for cl := 0; cl < clients; cl++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(cl)))
			for i := 0; i < ops/clients && ctx.Err() == nil; i++ {
				w.one(ctx, cl, rng)
			}
		}()
	}
	wg.Wait()
}

func (w *workload) one(ctx context.Context, client int, rng *rand.Rand) {
	running := w.c.Running()
	nd := running[rng.IntN(len(running))]
	svc := w.services[rng.IntN(len(w.services))]
	id := fmt.Sprintf("i%d", rng.IntN(w.ids))
	key := checker.InstanceKey("default", svc, id)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	op := checker.Op{ClientID: client, Key: key, Call: now(), Node: nd.ID}
	var rev uint64
	var err error
	switch p := rng.IntN(10); {
	case p < 6:
		port := w.nextPort()
		inst := &rosterv1.Instance{Service: svc, Id: id, Address: "10.1.2.3", Port: port}
		op.Kind, op.Value = checker.KindRegister, value(inst)
		var resp *rosterv1.RegisterResponse
		resp, err = nd.Registry().Register(cctx, &rosterv1.RegisterRequest{Instance: inst})
		rev = resp.GetRevision()
	case p < 8:
		op.Kind = checker.KindDeregister
		var resp *rosterv1.DeregisterResponse
		resp, err = nd.Registry().Deregister(cctx, &rosterv1.DeregisterRequest{Service: svc, Id: id})
		rev = resp.GetRevision()
	default:
		// Maintenance is not a checker L op, but its events reach every
		// watcher and move instances in and out of the healthy set.
		_, _ = nd.Registry().SetMaintenance(cctx, &rosterv1.SetMaintenanceRequest{Service: svc, Id: id, Enabled: rng.IntN(2) == 0})
		return
	}
	op.Return = now()
	switch code := status.Code(err); {
	case err == nil:
		op.Outcome, op.Revision = checker.OutcomeOK, rev
	case code == codes.NotFound || code == codes.InvalidArgument || code == codes.FailedPrecondition:
		op.Outcome, op.Code = checker.OutcomeFail, code.String()
	default:
		op.Outcome, op.Code = checker.OutcomeUnknown, code.String()
	}
	w.record(op)
}

// history returns the recorded register and deregister calls.
func (w *workload) history() []checker.Op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]checker.Op(nil), w.ops...)
}

// finalLists reads every service linearizably on nd.
func finalLists(t testing.TB, ctx context.Context, nd *testcluster.Node, services []string) []checker.Snapshot {
	t.Helper()
	var out []checker.Snapshot
	for _, svc := range services {
		call := now()
		resp, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: svc})
		if err != nil {
			t.Fatalf("final list of %s on %s: %v", svc, nd.ID, err)
		}
		snap := checker.Snapshot{Namespace: "default", Service: svc, Revision: resp.Header.GetRevision(),
			Call: call, Return: now(), Instances: map[string]string{}}
		for _, i := range resp.Instances {
			snap.Instances[eventKey(i)] = value(i)
		}
		out = append(out, snap)
	}
	return out
}

func maxRevision(snaps []checker.Snapshot) uint64 {
	var rev uint64
	for _, s := range snaps {
		rev = max(rev, s.Revision)
	}
	return rev
}

// checkW runs checker W and fails the test on any violation.
func checkW(t testing.TB, h *checker.History) checker.Result {
	t.Helper()
	res := checker.CheckWatches(h)
	if !res.OK() {
		t.Fatalf("checker W: %s\n%s", res.Summary, strings.Join(res.Details, "\n"))
	}
	t.Logf("checker W: %s", res.Summary)
	return res
}

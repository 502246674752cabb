package client

import (
	"context"
	"maps"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// fakeState is the registry state shared by the fake servers of one test,
// standing in for a replicated cluster.
type fakeState struct {
	mu        sync.Mutex
	instances map[InstanceKey]*rosterv1.Instance
	// deregistered remembers the request ids of applied deregistrations,
	// as the real state machine does, so a repeat is answered, not applied.
	deregistered map[string]bool
	history      []*rosterv1.WatchResponse
	// changed is closed and replaced whenever history grows.
	changed chan struct{}
}

func newFakeState() *fakeState {
	return &fakeState{instances: make(map[InstanceKey]*rosterv1.Instance), deregistered: map[string]bool{}, changed: make(chan struct{})}
}

func (st *fakeState) put(k InstanceKey) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.instances[k.normal()] = &rosterv1.Instance{Namespace: k.normal().Namespace, Service: k.Service, Id: k.ID}
}

func (st *fakeState) has(k InstanceKey) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.instances[k.normal()]
	return ok
}

// remove deletes k once per request id; a repeated id reports success
// without touching the state.
func (st *fakeState) remove(k InstanceKey, requestID string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if requestID != "" && st.deregistered[requestID] {
		return true
	}
	_, ok := st.instances[k.normal()]
	if ok && requestID != "" {
		st.deregistered[requestID] = true
	}
	delete(st.instances, k.normal())
	return ok
}

// appendRevisions adds one watch response per revision, each with one PUT.
func (st *fakeState) appendRevisions(from, to uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for rev := from; rev <= to; rev++ {
		st.history = append(st.history, &rosterv1.WatchResponse{
			Revision: rev,
			Events: []*rosterv1.Event{{
				Type:     rosterv1.Event_TYPE_PUT,
				Revision: rev,
				Instance: &rosterv1.Instance{Namespace: "default", Service: "web", Id: "w1", ModRevision: rev},
			}},
		})
	}
	close(st.changed)
	st.changed = make(chan struct{})
}

// appendEvent adds one watch response, at the revision after the last,
// with one event of typ for inst.
func (st *fakeState) appendEvent(typ rosterv1.Event_Type, inst *rosterv1.Instance) {
	st.mu.Lock()
	defer st.mu.Unlock()
	rev := uint64(1)
	if n := len(st.history); n > 0 {
		rev = st.history[n-1].GetRevision() + 1
	}
	inst.ModRevision = rev
	st.history = append(st.history, &rosterv1.WatchResponse{
		Revision: rev,
		Events:   []*rosterv1.Event{{Type: typ, Revision: rev, Instance: inst}},
	})
	close(st.changed)
	st.changed = make(chan struct{})
}

// after returns the history past rev and a channel closed when it grows.
func (st *fakeState) after(rev uint64) ([]*rosterv1.WatchResponse, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []*rosterv1.WatchResponse
	for _, r := range st.history {
		if r.GetRevision() > rev {
			out = append(out, r)
		}
	}
	return out, st.changed
}

// fakeServer is one in-process gRPC server implementing Registry and
// Cluster over a fakeState, recording what it is asked.
type fakeServer struct {
	rosterv1.UnimplementedRegistryServer
	rosterv1.UnimplementedClusterServer

	addr  string
	state *fakeState
	srv   *grpc.Server

	mu    sync.Mutex
	calls map[string]int
	// fail, when set for a method, is returned by it (after applying the
	// call, for Deregister: a reply lost on the way back).
	fail        map[string]error
	watchStarts []uint64
	// watchesOpen counts the Watch streams being served.
	watchesOpen int
	// watchReads are the start_read consistencies of the watches opened,
	// "" where none was sent.
	watchReads []string
	// watchOmitPrev and watchProgressIDs: each watch's omit_prev_instance
	// and progress_id.
	watchOmitPrev    []bool
	watchProgressIDs []string
	// requestIDs are the request ids of the writes received, in order.
	requestIDs []string
	// overlap makes Watch resend this many revisions before the start.
	overlap uint64
	// cut ends the open Watch or KeepAlive streams with the error sent.
	cut chan error
	// oldKeepAlive makes KeepAlive refuse a batch as an unknown field, as
	// a server from before batches does.
	oldKeepAlive bool
	// maxBatch, when set, makes KeepAlive refuse a larger batch as a
	// whole, in its answer.
	maxBatch int
	// silentKeepAlive makes KeepAlive read renewals, counting them, and
	// answer none (a node that has stalled).
	silentKeepAlive bool
	// watchMany makes the server serve WatchMany (from the state's
	// history, as Watch); without it WatchMany is Unimplemented, as on a
	// server from before it. watchCancels counts the cancels received,
	// by watch id.
	watchMany    bool
	watchCancels map[uint64]int
	// holdRegister makes Register hang until its caller gives up (a
	// leader that stalls), telling registerHeld of each call it holds.
	holdRegister bool
	registerHeld chan struct{}
	// noLeader makes Watch refuse a stream that requires a leader, or
	// asks for a linearizable first list, as a node without a leader
	// does; resetFirst makes a Watch from revision 0 start with a reset
	// of the state (the history's events), as a real node does.
	// watchLeader records, for each Watch, whether it required a leader.
	noLeader, resetFirst bool
	watchLeader          []bool
}

func startFake(t *testing.T, state *fakeState) *fakeServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	f := &fakeServer{
		addr:  lis.Addr().String(),
		state: state,
		srv:   grpc.NewServer(),
		calls: make(map[string]int),
		fail:  make(map[string]error),
		cut:   make(chan error),

		watchCancels: map[uint64]int{},

		registerHeld: make(chan struct{}, 1),
	}
	rosterv1.RegisterRegistryServer(f.srv, f)
	rosterv1.RegisterClusterServer(f.srv, f)
	go func() { _ = f.srv.Serve(lis) }()
	t.Cleanup(f.srv.Stop)
	return f
}

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func (f *fakeServer) record(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	return f.fail[method]
}

func (f *fakeServer) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requestIDs...)
}

func (f *fakeServer) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeServer) setFail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

func (f *fakeServer) startReads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.watchReads...)
}

func (f *fakeServer) omitPrevs() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.watchOmitPrev...)
}

func (f *fakeServer) progressIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.watchProgressIDs...)
}

func (f *fakeServer) openWatches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watchesOpen
}

func (f *fakeServer) starts() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.watchStarts...)
}

func (f *fakeServer) Register(ctx context.Context, req *rosterv1.RegisterRequest) (*rosterv1.RegisterResponse, error) {
	f.mu.Lock()
	f.requestIDs = append(f.requestIDs, req.GetRequestId())
	hold := f.holdRegister
	f.mu.Unlock()
	if err := f.record("Register"); err != nil {
		return nil, err
	}
	if hold {
		select {
		case f.registerHeld <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	in := req.GetInstance()
	f.state.put(InstanceKey{Namespace: in.GetNamespace(), Service: in.GetService(), ID: in.GetId()})
	return &rosterv1.RegisterResponse{Revision: 7}, nil
}

func (f *fakeServer) Deregister(_ context.Context, req *rosterv1.DeregisterRequest) (*rosterv1.DeregisterResponse, error) {
	fail := f.record("Deregister")
	if !f.state.remove(InstanceKey{Namespace: req.GetNamespace(), Service: req.GetService(), ID: req.GetId()}, req.GetRequestId()) {
		return nil, status.Error(codes.NotFound, "instance not found")
	}
	if fail != nil {
		return nil, fail
	}
	return &rosterv1.DeregisterResponse{Revision: 8}, nil
}

func (f *fakeServer) GetService(_ context.Context, req *rosterv1.GetServiceRequest) (*rosterv1.GetServiceResponse, error) {
	if err := f.record("GetService"); err != nil {
		return nil, err
	}
	return &rosterv1.GetServiceResponse{Header: &rosterv1.ResponseHeader{Revision: 9, NodeId: f.addr}}, nil
}

func (f *fakeServer) RemoveNode(context.Context, *rosterv1.RemoveNodeRequest) (*rosterv1.RemoveNodeResponse, error) {
	if err := f.record("RemoveNode"); err != nil {
		return nil, err
	}
	return &rosterv1.RemoveNodeResponse{}, nil
}

func (f *fakeServer) Watch(req *rosterv1.WatchRequest, stream grpc.ServerStreamingServer[rosterv1.WatchResponse]) error {
	if err := f.record("Watch"); err != nil {
		return err
	}
	f.mu.Lock()
	f.watchStarts = append(f.watchStarts, req.GetStartRevision())
	read := ""
	if req.GetStartRead() != nil {
		read = req.GetStartRead().GetConsistency().String()
	}
	f.watchReads = append(f.watchReads, read)
	f.watchOmitPrev = append(f.watchOmitPrev, req.GetOmitPrevInstance())
	f.watchProgressIDs = append(f.watchProgressIDs, req.GetProgressId())
	from := req.GetStartRevision() - min(f.overlap, req.GetStartRevision())
	md, _ := metadata.FromIncomingContext(stream.Context())
	leader := len(md.Get(requireLeaderKey)) > 0
	f.watchLeader = append(f.watchLeader, leader)
	if f.noLeader && (leader || req.GetStartRead().GetConsistency() == rosterv1.Consistency_CONSISTENCY_LINEARIZABLE) {
		f.mu.Unlock()
		return status.Error(codes.Unavailable, "no leader")
	}
	if f.resetFirst && req.GetStartRevision() == 0 {
		batch, _ := f.state.after(0)
		reset := &rosterv1.WatchResponse{Reset_: true}
		for _, r := range batch {
			reset.Events = append(reset.Events, r.GetEvents()...)
			reset.Revision = r.GetRevision()
		}
		from = reset.Revision
		if err := stream.Send(reset); err != nil {
			f.mu.Unlock()
			return err
		}
	}
	f.watchesOpen++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.watchesOpen--
		f.mu.Unlock()
	}()
	for {
		batch, changed := f.state.after(from)
		for _, resp := range batch {
			if err := stream.Send(resp); err != nil {
				return err
			}
			from = resp.GetRevision()
		}
		select {
		case <-changed:
		case err := <-f.cut:
			return err
		case <-stream.Context().Done():
			return nil
		}
	}
}

// cancels returns how many cancels the server has received, by watch id.
func (f *fakeServer) cancels() map[uint64]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.watchCancels)
}

// WatchMany serves each watch created from the state's history, as Watch
// does, and ends one with CANCELLED when the client cancels it.
func (f *fakeServer) WatchMany(stream grpc.BidiStreamingServer[rosterv1.WatchManyRequest, rosterv1.WatchManyResponse]) error {
	f.mu.Lock()
	on := f.watchMany
	f.mu.Unlock()
	if !on {
		return status.Error(codes.Unimplemented, "method WatchMany not implemented")
	}
	if err := f.record("WatchMany"); err != nil {
		return err
	}
	var sendMu sync.Mutex
	send := func(m *rosterv1.WatchManyResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	type served struct {
		stop context.CancelFunc
		done chan struct{}
	}
	watches := map[uint64]served{}
	defer func() {
		for _, w := range watches {
			w.stop()
			<-w.done
		}
	}()
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		switch a := req.GetAction().(type) {
		case *rosterv1.WatchManyRequest_Create:
			id, from := a.Create.GetWatchId(), a.Create.GetRequest().GetStartRevision()
			ctx, stop := context.WithCancel(stream.Context())
			w := served{stop: stop, done: make(chan struct{})}
			watches[id] = w
			go func() {
				defer close(w.done)
				for {
					batch, changed := f.state.after(from)
					for _, resp := range batch {
						if ctx.Err() != nil || send(&rosterv1.WatchManyResponse{WatchIds: []uint64{id}, Response: resp}) != nil {
							return
						}
						from = resp.GetRevision()
					}
					select {
					case <-changed:
					case <-ctx.Done():
						return
					}
				}
			}()
		case *rosterv1.WatchManyRequest_Cancel:
			id := a.Cancel.GetWatchId()
			f.mu.Lock()
			f.watchCancels[id]++
			f.mu.Unlock()
			if w, ok := watches[id]; ok {
				delete(watches, id)
				w.stop()
				<-w.done
				ended := status.New(codes.Canceled, "watch cancelled").Proto()
				if err := send(&rosterv1.WatchManyResponse{WatchIds: []uint64{id}, Ended: ended}); err != nil {
					return nil
				}
			}
		}
	}
}

func (f *fakeServer) KeepAlive(stream grpc.BidiStreamingServer[rosterv1.HeartbeatRequest, rosterv1.HeartbeatResponse]) error {
	// A stream refused as a whole (a token the node does not accept).
	if err := f.record("KeepAlive stream"); err != nil {
		return err
	}
	reqs := make(chan *rosterv1.HeartbeatRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	for {
		select {
		case req := <-reqs:
			f.mu.Lock()
			silent := f.silentKeepAlive
			f.mu.Unlock()
			if silent {
				f.record("KeepAlive unanswered")
				continue
			}
			if len(req.Instances) > 0 {
				f.mu.Lock()
				old, most := f.oldKeepAlive, f.maxBatch
				f.mu.Unlock()
				if old {
					return status.Error(codes.InvalidArgument, "request has fields this server does not know (in roster.v1.HeartbeatRequest)")
				}
				if most > 0 && len(req.Instances) > most {
					f.record("KeepAlive batch refused")
					if err := stream.Send(&rosterv1.HeartbeatResponse{Code: int32(codes.InvalidArgument), Error: "too many"}); err != nil {
						return err
					}
					continue
				}
				f.record("KeepAlive batch")
				resp := &rosterv1.HeartbeatResponse{}
				for _, in := range req.Instances {
					r := &rosterv1.HeartbeatResult{Ttl: durationpb.New(0)}
					if k := (InstanceKey{Namespace: in.Namespace, Service: in.Service, ID: in.Id}).normal(); !f.state.has(k) {
						r = &rosterv1.HeartbeatResult{Code: int32(codes.NotFound), Error: "instance " + k.String() + " not found"}
					}
					resp.Results = append(resp.Results, r)
				}
				if err := stream.Send(resp); err != nil {
					return err
				}
				continue
			}
			f.record("KeepAlive")
			k := InstanceKey{Namespace: req.GetNamespace(), Service: req.GetService(), ID: req.GetId()}.normal()
			resp := &rosterv1.HeartbeatResponse{Namespace: k.Namespace, Service: k.Service, Id: k.ID, Ttl: durationpb.New(0)}
			if !f.state.has(k) {
				resp.Code = int32(codes.NotFound)
				resp.Error = "instance " + k.String() + " not found"
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		case err := <-f.cut:
			return err
		case <-recvErr:
			return nil
		case <-stream.Context().Done():
			return nil
		}
	}
}

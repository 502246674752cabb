package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// fakeServer is an in-process Roster server with canned answers that
// records every request it gets.
type fakeServer struct {
	rosterv1.UnimplementedRegistryServer
	rosterv1.UnimplementedClusterServer

	addr string

	mu        sync.Mutex
	requests  map[string][]proto.Message
	fail      map[string]error
	instances map[string]bool
	// watch is what Watch sends before it waits for the stream to end.
	watch []*rosterv1.WatchResponse
	// nodeID and members, when set, are what Status and Members answer.
	nodeID  string
	members []*rosterv1.Member
	// status, when set, is what Status answers.
	status *rosterv1.StatusResponse
	// registerLeft is, for each Register, how long its deadline was away
	// when it arrived (0: none).
	registerLeft []time.Duration
}

func startFake(t *testing.T) *fakeServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return startFakeOn(t, lis)
}

// startFakeOn serves a fakeServer on lis with the given server options.
func startFakeOn(t *testing.T, lis net.Listener, opts ...grpc.ServerOption) *fakeServer {
	t.Helper()
	f := &fakeServer{
		addr:      lis.Addr().String(),
		requests:  make(map[string][]proto.Message),
		fail:      make(map[string]error),
		instances: make(map[string]bool),
	}
	srv := grpc.NewServer(opts...)
	rosterv1.RegisterRegistryServer(srv, f)
	rosterv1.RegisterClusterServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f
}

func (f *fakeServer) record(method string, req proto.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests[method] = append(f.requests[method], req)
	return f.fail[method]
}

// calls returns the requests made of method.
func (f *fakeServer) calls(method string) []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proto.Message(nil), f.requests[method]...)
}

// total counts every request made.
func (f *fakeServer) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, reqs := range f.requests {
		n += len(reqs)
	}
	return n
}

func (f *fakeServer) setFail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

func (f *fakeServer) setInstance(id string, present bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances[id] = present
}

func (f *fakeServer) Register(ctx context.Context, req *rosterv1.RegisterRequest) (*rosterv1.RegisterResponse, error) {
	if err := f.record("Register", req); err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		f.mu.Lock()
		f.registerLeft = append(f.registerLeft, time.Until(d))
		f.mu.Unlock()
	}
	f.setInstance(req.GetInstance().GetId(), true)
	return &rosterv1.RegisterResponse{Revision: 7}, nil
}

func (f *fakeServer) Deregister(_ context.Context, req *rosterv1.DeregisterRequest) (*rosterv1.DeregisterResponse, error) {
	if err := f.record("Deregister", req); err != nil {
		return nil, err
	}
	f.setInstance(req.GetId(), false)
	return &rosterv1.DeregisterResponse{Revision: 8}, nil
}

func (f *fakeServer) GetService(_ context.Context, req *rosterv1.GetServiceRequest) (*rosterv1.GetServiceResponse, error) {
	if err := f.record("GetService", req); err != nil {
		return nil, err
	}
	return &rosterv1.GetServiceResponse{
		Header: &rosterv1.ResponseHeader{Revision: 42},
		Instances: []*rosterv1.Instance{
			{Namespace: "default", Service: req.GetService(), Id: "p1", Address: "10.0.0.5", Port: 8080,
				Tags: []string{"v2"}, Metadata: map[string]string{"version": "1.4"}, Weight: 100, Zone: "eu-1",
				Status: rosterv1.HealthStatus_HEALTH_STATUS_PASSING, Enabled: true, CreateRevision: 3, ModRevision: 40},
			{Namespace: "default", Service: req.GetService(), Id: "p2", Address: "10.0.0.6", Port: 8080,
				Weight: 100, Status: rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL, CreateRevision: 5, ModRevision: 41},
		},
	}, nil
}

func (f *fakeServer) ListServices(_ context.Context, req *rosterv1.ListServicesRequest) (*rosterv1.ListServicesResponse, error) {
	if err := f.record("ListServices", req); err != nil {
		return nil, err
	}
	return &rosterv1.ListServicesResponse{
		Header:   &rosterv1.ResponseHeader{Revision: 42},
		Services: []*rosterv1.ServiceSummary{{Namespace: "default", Service: "payments", Instances: 2, Passing: 1}},
	}, nil
}

func (f *fakeServer) Heartbeat(_ context.Context, req *rosterv1.HeartbeatRequest) (*rosterv1.HeartbeatResponse, error) {
	if err := f.record("Heartbeat", req); err != nil {
		return nil, err
	}
	return &rosterv1.HeartbeatResponse{Namespace: "default", Service: req.GetService(), Id: req.GetId(), Ttl: durationpb.New(30 * time.Second)}, nil
}

func (f *fakeServer) ReportHealth(_ context.Context, req *rosterv1.ReportHealthRequest) (*rosterv1.ReportHealthResponse, error) {
	if err := f.record("ReportHealth", req); err != nil {
		return nil, err
	}
	if req.GetStatus() != rosterv1.HealthStatus_HEALTH_STATUS_WARNING || req.GetReason() != "disk full" {
		return nil, status.Errorf(codes.InvalidArgument, "fake expects warning with reason \"disk full\", got %v %q", req.GetStatus(), req.GetReason())
	}
	return &rosterv1.ReportHealthResponse{Revision: 11, Ttl: durationpb.New(30 * time.Second)}, nil
}

func (f *fakeServer) SetMaintenance(_ context.Context, req *rosterv1.SetMaintenanceRequest) (*rosterv1.SetMaintenanceResponse, error) {
	if err := f.record("SetMaintenance", req); err != nil {
		return nil, err
	}
	return &rosterv1.SetMaintenanceResponse{Revision: 9}, nil
}

func (f *fakeServer) Status(_ context.Context, req *rosterv1.StatusRequest) (*rosterv1.StatusResponse, error) {
	if err := f.record("Status", req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	id, st := f.nodeID, f.status
	f.mu.Unlock()
	if st != nil {
		return st, nil
	}
	if id == "" {
		id = "n1"
	}
	return &rosterv1.StatusResponse{NodeId: id, State: "leader", LeaderId: "n1", Term: 3, CommitIndex: 50,
		AppliedIndex: 50, Revision: 42, LastContact: durationpb.New(1500 * time.Millisecond)}, nil
}

func (f *fakeServer) Members(_ context.Context, req *rosterv1.MembersRequest) (*rosterv1.MembersResponse, error) {
	if err := f.record("Members", req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	members := f.members
	f.mu.Unlock()
	if members != nil {
		return &rosterv1.MembersResponse{Members: members}, nil
	}
	healthy := false
	return &rosterv1.MembersResponse{Members: []*rosterv1.Member{
		{NodeId: "n1", RaftAddr: "127.0.0.1:7421", ApiAddr: "127.0.0.1:7420", Voter: true, Leader: true, Healthy: true,
			Autopilot: &rosterv1.AutopilotHealth{Healthy: true, State: "leader", StableSince: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
				LastContact: durationpb.New(0), LastIndex: 42, LastTerm: 3}},
		{NodeId: "n2", RaftAddr: "127.0.0.1:7431", ApiAddr: "127.0.0.1:7430", Healthy: true,
			Autopilot: &rosterv1.AutopilotHealth{Healthy: true, State: "staging", LastContact: durationpb.New(15 * time.Millisecond), LastIndex: 41, LastTerm: 3}},
		{NodeId: "r1", RaftAddr: "127.0.0.1:7441", ApiAddr: "127.0.0.1:7440", ReadReplica: true},
		{NodeId: "n3", RaftAddr: "127.0.0.1:7451", ApiAddr: "127.0.0.1:7450", Voter: true,
			Autopilot: &rosterv1.AutopilotHealth{State: "voter", Failed: true, StableSince: timestamppb.New(time.Date(2026, 1, 2, 3, 10, 0, 0, time.UTC)),
				LastContact: durationpb.New(0), LastIndex: 30, LastTerm: 3}},
		{NodeId: "n4", RaftAddr: "127.0.0.1:7461", ApiAddr: "127.0.0.1:7460", Voter: true,
			Autopilot: &rosterv1.AutopilotHealth{State: "voter", StableSince: timestamppb.New(time.Date(2026, 1, 2, 3, 11, 0, 0, time.UTC)),
				LastContact: durationpb.New(2 * time.Second), LastIndex: 40, LastTerm: 3}},
	}, AutopilotHealthy: &healthy, FailureTolerance: 0}, nil
}

func (f *fakeServer) RemoveNode(_ context.Context, req *rosterv1.RemoveNodeRequest) (*rosterv1.RemoveNodeResponse, error) {
	if err := f.record("RemoveNode", req); err != nil {
		return nil, err
	}
	return &rosterv1.RemoveNodeResponse{}, nil
}

func (f *fakeServer) TransferLeadership(_ context.Context, req *rosterv1.TransferLeadershipRequest) (*rosterv1.TransferLeadershipResponse, error) {
	if err := f.record("TransferLeadership", req); err != nil {
		return nil, err
	}
	return &rosterv1.TransferLeadershipResponse{LeaderId: "n2"}, nil
}

func (f *fakeServer) Watch(req *rosterv1.WatchRequest, stream grpc.ServerStreamingServer[rosterv1.WatchResponse]) error {
	if err := f.record("Watch", req); err != nil {
		return err
	}
	f.mu.Lock()
	batch := f.watch
	f.mu.Unlock()
	for _, resp := range batch {
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}

func (f *fakeServer) KeepAlive(stream grpc.BidiStreamingServer[rosterv1.HeartbeatRequest, rosterv1.HeartbeatResponse]) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		f.record("KeepAlive", req)
		resp := &rosterv1.HeartbeatResponse{Namespace: "default", Service: req.GetService(), Id: req.GetId(), Ttl: durationpb.New(time.Second)}
		f.mu.Lock()
		present := f.instances[req.GetId()]
		f.mu.Unlock()
		if !present {
			resp.Code = int32(codes.NotFound)
			resp.Error = "instance not found"
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// syncBuffer is a bytes.Buffer safe to write from the command while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the complete lines written so far.
func (b *syncBuffer) lines() []string {
	s := b.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

// invalidName is the error a real server gives a bad service name.
var invalidName = status.Error(codes.InvalidArgument, `service "Bad_Name" must be a lowercase DNS label`)

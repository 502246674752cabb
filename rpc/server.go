// Package rpc serves Roster's gRPC API: it validates every request, relays
// writes to the leader, serves reads at the requested consistency and
// streams watches from this node's own state. Errors become gRPC statuses in
// exactly one function (toStatus).
package rpc

import (
	"context"
	"crypto/tls"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/cluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// Options tune the server.
type Options struct {
	// HoldTimeout bounds how long a call that must run on the leader (a
	// write, a heartbeat, a read index) may take, retries included, when the
	// caller's deadline is later (default 5s).
	HoldTimeout time.Duration
	// ForwardTimeout bounds one attempt of a call relayed to the leader
	// (default 2s, at most HoldTimeout), so a leader that accepts the
	// connection and never answers cannot hold the call.
	ForwardTimeout time.Duration
	// ReadTimeout bounds waiting for a revision or read index when the
	// caller set no deadline (default 10s).
	ReadTimeout time.Duration
	// DialOptions for connections to peers (transport credentials, tokens).
	DialOptions []grpc.DialOption
	Logger      hclog.Logger
	// Watch tunes watch streams.
	Watch WatchOptions

	// VerifyPeerServer, when set, must accept the TLS state of the
	// connection of every call only servers make (a relayed call, Join);
	// others are refused with PermissionDenied (serveronly.go).
	VerifyPeerServer func(tls.ConnectionState) error

	// ACL turns on token checks (acl.go).
	ACL ACLOptions

	// Limits bound request size, instance counts, watchers and call rates
	// (limits.go).
	Limits Limits
}

// Server implements the Registry and Cluster services on one node.
type Server struct {
	rosterv1.UnimplementedRegistryServer
	rosterv1.UnimplementedClusterServer
	rosterv1.UnimplementedACLServer

	node   *cluster.Node
	opts   Options
	logger hclog.Logger
	peers  *conns
	health *health.Server

	// remoteReadIndex coalesces a follower's read-index requests to the leader.
	remoteReadIndex *cluster.Rounds
	readRounds      atomic.Uint64

	// sp is a follower's copy of the leader's self-preservation state.
	sp      selfPreservationView
	watch   watchState
	metrics *serverMetrics

	// draining is closed by Drain: streams end and new ones are refused.
	draining  chan struct{}
	drainOnce sync.Once
	// drainCtx is canceled with draining, for waits that take a context.
	drainCtx    context.Context
	cancelDrain context.CancelFunc

	stopAnnouncing func()
	stop           chan struct{}

	// gate ends the watch streams that require a leader when the node has
	// gone without one (leadergate.go).
	gate *leaderGate

	// readHooks, set by tests only, time and observe blocking reads.
	readHooks atomic.Pointer[readHooks]

	// tokenCalls are the streams and blocking reads to end once their
	// token is gone (revoke.go).
	tokenCalls tokenCalls

	// limiter and watchers enforce Options.Limits (limits.go).
	limiter  *rateLimiter
	watchers watcherCounts
}

// New returns a server for node.
func New(node *cluster.Node, opts Options) *Server {
	if opts.HoldTimeout <= 0 {
		opts.HoldTimeout = 5 * time.Second
	}
	if opts.ForwardTimeout <= 0 {
		opts.ForwardTimeout = 2 * time.Second
	}
	opts.ForwardTimeout = min(opts.ForwardTimeout, opts.HoldTimeout)
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 10 * time.Second
	}
	if opts.Watch.LeaderlessTimeout <= 0 {
		opts.Watch.LeaderlessTimeout = DefaultLeaderlessTimeout
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if len(opts.DialOptions) == 0 {
		opts.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	s := &Server{
		node:   node,
		opts:   opts,
		logger: opts.Logger,
		peers: &conns{
			dialOpts: slices.Concat(opts.DialOptions, []grpc.DialOption{grpc.WithKeepaliveParams(peerKeepalive),
				grpc.WithChainUnaryInterceptor(recordRelayedMethod)}),
			byAdr: map[string]*grpc.ClientConn{},
		},
		health:   health.NewServer(),
		metrics:  newServerMetrics(),
		draining: make(chan struct{}),
		stop:     make(chan struct{}),
		limiter:  newRateLimiter(opts.Limits),
		gate:     newLeaderGate(opts.Watch.LeaderlessTimeout),
	}
	s.drainCtx, s.cancelDrain = context.WithCancel(context.Background())
	s.remoteReadIndex = cluster.NewRounds(s.leaderReadIndex)
	node.SetStatsFetcher(s.fetchServerStats)
	return s
}

// streamWorkers is how many goroutines serve calls, each one call at a
// time, instead of a new goroutine for every call (gRPC starts one when all
// are busy). A call's handler grows a new goroutine's stack several times,
// and copying stacks was 5% of a leader's CPU under 256 writers; a worker
// keeps its grown stack for the next call. 256 covers the concurrent calls
// of that load; idle workers cost a few MiB of stacks.
const streamWorkers = 256

// ServerOptions returns the grpc.ServerOptions the services expect: message
// limits, the interceptors (metrics, panic recovery, unknown-field
// rejection, server-only calls, per-client limits), the
// codec that sends watch events pre-encoded, and a keepalive policy that
// lets peers and SDK clients ping as often as their keepalive asks.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		grpc.ForceServerCodecV2(newServerCodec()),
		grpc.MaxSendMsgSize(256 << 20),
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ChainUnaryInterceptor(s.metricsUnary, s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.metricsStream, s.streamInterceptor),
	}, slices.Concat(s.serverOnlyOptions(), s.limitOptions(), s.aclOptions())...)
}

// RegisterServices adds Roster's services, grpc.health.v1 and server
// reflection to g.
func (s *Server) RegisterServices(g *grpc.Server) {
	rosterv1.RegisterRegistryServer(g, s)
	rosterv1.RegisterClusterServer(g, s)
	rosterv1.RegisterACLServer(g, s)
	healthpb.RegisterHealthServer(g, drainingHealth{Server: s.health, draining: s.draining})
	reflection.Register(g)
}

// Start begins background work: the node's loop publishing its API address
// in the member table (relayed to the leader through this server), and
// serving health.
func (s *Server) Start() {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(rosterv1.Registry_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.stopAnnouncing = s.node.StartAnnouncing(s.relayAnnounce)
	go s.followSelfPreservation()
	go s.gate.follow(s.hasLeader, s.stop)
	go s.bootstrapFromSecret()
	if s.opts.ACL.Enabled {
		go s.followTokens()
	}
}

// Stop marks the node not serving, ends its streams (see Drain) and ends
// background work.
func (s *Server) Stop() {
	select {
	case <-s.stop:
		return
	default:
	}
	s.Drain()
	close(s.stop)
	if s.stopAnnouncing != nil {
		s.stopAnnouncing()
	}
	s.peers.close()
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
		}
	}()
	if m, ok := req.(proto.Message); ok {
		if err := rejectUnknownFields(m.ProtoReflect()); err != nil {
			return nil, toStatus(err)
		}
	}
	resp, err = h(ctx, req)
	return resp, toStatus(err)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("panic in stream handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
		}
	}()
	if s.isDraining() {
		return toStatus(errDraining)
	}
	return toStatus(h(srv, ss))
}

// header describes this node for a response reflecting revision rev.
func (s *Server) header(rev uint64) *rosterv1.ResponseHeader {
	st := s.node.Status()
	h := &rosterv1.ResponseHeader{
		NodeId:       st.NodeID,
		LeaderId:     st.LeaderID,
		Term:         st.Term,
		Revision:     rev,
		AppliedIndex: st.Applied,
		CommitIndex:  st.CommitIndex,
	}
	if st.LastContact > 0 {
		h.LastContact = durationpb.New(st.LastContact)
	}
	h.SelfPreservation = s.selfPreserving("", "")
	return h
}

// relayAnnounce asks the leader to record self's addresses, for the node's
// announce loop.
func (s *Server) relayAnnounce(ctx context.Context, self store.Member) error {
	_, err := s.Join(ctx, &rosterv1.JoinRequest{
		NodeId: self.NodeID, RaftAddr: self.RaftAddr, ApiAddr: self.APIAddr, UpdateOnly: true,
	})
	return err
}

func (s *Server) withReadTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		// End a little early, so the caller reads why the read could not
		// be served (no leader, or how far this node has applied).
		return answerBefore(ctx)
	}
	return context.WithTimeout(ctx, s.opts.ReadTimeout)
}

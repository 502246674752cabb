package rpc

import (
	"context"
	"crypto/x509"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// Defaults of Limits that apply when a field is zero. The limits a zero
// value leaves off (instance counts, watchers, rate) have their defaults in
// rosterd's flags.
const (
	// DefaultMaxRequestBytes bounds one request message. The largest valid
	// registration is under 64 KiB, and one Raft entry is at most 1 MiB.
	DefaultMaxRequestBytes = 1 << 20
	// transportMaxBytes is what the transport reads at most (or
	// MaxRequestBytes when larger). A message between MaxRequestBytes and
	// it is read and refused with a clear InvalidArgument; a larger one is
	// refused unread, with ResourceExhausted.
	transportMaxBytes = 16 << 20
)

// ClientAddrKey is the metadata key under which a front end in this
// process (HTTP, DNS) names the client it calls for (HOST:PORT or HOST),
// so that rate limits and watcher limits count that client and not the
// front end. It is only believed on the in-process connection.
const ClientAddrKey = "roster-client-addr"

// Limits bound what one client may ask of a node. A zero field is no limit,
// except MaxRequestBytes (DefaultMaxRequestBytes).
type Limits struct {
	// MaxRequestBytes bounds one request message: a larger one fails with
	// InvalidArgument (over 16 MiB, with ResourceExhausted, unread).
	MaxRequestBytes int
	// MaxInstancesPerService and MaxInstancesPerNamespace bound the
	// instances a registration may leave. The leader checks them and stamps
	// them into the command, so every node's state machine applies the
	// same check; a registration beyond them fails with ResourceExhausted
	// and changes nothing.
	MaxInstancesPerService   int
	MaxInstancesPerNamespace int
	// MaxWatchersPerConnection bounds the open watches of one client
	// connection, Watch streams and the watches of WatchMany streams alike
	// (for the HTTP front end: one HTTP client connection).
	MaxWatchersPerConnection int
	// Rate and Burst: a token bucket per client for writes (calls that go
	// through Raft: Register, Deregister, SetMaintenance, ReportHealth and
	// the cluster operations), Rate calls per second with bursts of Burst
	// (default: Rate, at least 1).
	Rate  float64
	Burst int
	// ReadRate and ReadBurst: a second bucket per client for everything
	// else: reads, heartbeats (each KeepAlive message counts), opening a
	// watch.
	ReadRate  float64
	ReadBurst int
}

func (l Limits) maxRequestBytes() int {
	if l.MaxRequestBytes <= 0 {
		return DefaultMaxRequestBytes
	}
	return l.MaxRequestBytes
}

func (l Limits) instances() store.InstanceLimits {
	return store.InstanceLimits{PerService: l.MaxInstancesPerService, PerNamespace: l.MaxInstancesPerNamespace}
}

// writeMethods are the calls the write bucket counts.
var writeMethods = map[string]bool{
	rosterv1.Registry_Register_FullMethodName:           true,
	rosterv1.Registry_Deregister_FullMethodName:         true,
	rosterv1.Registry_SetMaintenance_FullMethodName:     true,
	rosterv1.Registry_ReportHealth_FullMethodName:       true,
	rosterv1.Cluster_SetSelfPreservation_FullMethodName: true,
	rosterv1.Cluster_RemoveNode_FullMethodName:          true,
	rosterv1.Cluster_TransferLeadership_FullMethodName:  true,
}

// clientIdentity names the client of a call for rate and watcher limits:
// the subject of its verified TLS client certificate when it has one, else
// its address's host. On the in-process connection it is the client the
// front end names in ClientAddrKey; "" when none (the DNS front end: its
// answers are local stale reads, and a UDP source address is easily forged,
// so a limit per address would throttle the forged victim). conn also tells
// connections of one client apart (its full address).
func clientIdentity(ctx context.Context) (client, conn string) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown", "unknown"
	}
	if p.Addr.Network() == "bufconn" {
		md, _ := metadata.FromIncomingContext(ctx)
		v := md.Get(ClientAddrKey)
		if len(v) == 0 || v[0] == "" {
			return "", "in-process"
		}
		addr := v[0]
		return "ip:" + hostOf(addr), "ip:" + addr
	}
	addr := p.Addr.String()
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		if c := verifiedLeaf(info); c != nil {
			return "cert:" + c.Subject.String(), "cert:" + c.Subject.String() + "@" + addr
		}
	}
	return "ip:" + hostOf(addr), "ip:" + addr
}

func verifiedLeaf(info credentials.TLSInfo) *x509.Certificate {
	if len(info.State.VerifiedChains) > 0 && len(info.State.VerifiedChains[0]) > 0 {
		return info.State.VerifiedChains[0][0]
	}
	return nil
}

func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return strings.TrimSpace(addr)
}

// WithClientAddr returns ctx carrying addr (the remote address of an HTTP
// or DNS client) for calls on the in-process connection.
func WithClientAddr(ctx context.Context, addr string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, ClientAddrKey, addr)
}

// exempt reports whether a call escapes per-client limits: calls only
// servers make (relayed by a follower, whose client it already counted,
// or Join). With TLS the server-only check refuses them from anyone else.
func exempt(ctx context.Context, method string) bool {
	return serverOnly(ctx, method)
}

// watcherCounts counts the open watch streams of each connection.
type watcherCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (w *watcherCounts) acquire(conn string, limit int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == nil {
		w.n = map[string]int{}
	}
	if limit > 0 && w.n[conn] >= limit {
		return false
	}
	w.n[conn]++
	return true
}

func (w *watcherCounts) release(conn string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n[conn]--; w.n[conn] <= 0 {
		delete(w.n, conn)
	}
}

// limitUnary applies the rate limit and the request size limit to a unary
// call.
func (s *Server) limitUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if s.limiter != nil && !exempt(ctx, info.FullMethod) {
		if client, _ := clientIdentity(ctx); client != "" {
			if err := s.limiter.allow(client, writeMethods[info.FullMethod]); err != nil {
				return nil, toStatus(err)
			}
		}
	}
	if m, ok := req.(proto.Message); ok {
		if n, limit := proto.Size(m), s.opts.Limits.maxRequestBytes(); n > limit {
			return nil, toStatus(invalidf("request is %d bytes; the limit is %d", n, limit))
		}
	}
	return h(ctx, req)
}

// limitStream applies the rate limit to opening a stream and to each
// KeepAlive message, and bounds the watch streams of a connection.
func (s *Server) limitStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx := ss.Context()
	if exempt(ctx, info.FullMethod) {
		return h(srv, ss)
	}
	client, conn := clientIdentity(ctx)
	if s.limiter != nil && client != "" {
		if err := s.limiter.allow(client, false); err != nil {
			return toStatus(err)
		}
		if info.FullMethod == rosterv1.Registry_KeepAlive_FullMethodName {
			ss = &limitedStream{ServerStream: ss, s: s, client: client}
		}
	}
	if info.FullMethod == rosterv1.Registry_Watch_FullMethodName {
		limit := s.opts.Limits.MaxWatchersPerConnection
		if !s.watchers.acquire(conn, limit) {
			return toStatus(&limitError{msg: "this connection has " + itoa(limit) +
				" open watch streams, the limit per connection (close some, or open another connection)", reason: ReasonWatcherLimit})
		}
		defer s.watchers.release(conn)
	}
	return h(srv, ss)
}

// limitedStream counts each message a client sends on a KeepAlive stream
// against its read bucket, a batch once for each instance it renews: a
// batch is cheaper to serve, not a way around the rate.
type limitedStream struct {
	grpc.ServerStream
	s      *Server
	client string
}

func (l *limitedStream) RecvMsg(m any) error {
	if err := l.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	n := 1
	if hb, ok := m.(*rosterv1.HeartbeatRequest); ok {
		n = max(1, len(hb.Instances))
	}
	if err := l.s.limiter.allowN(l.client, false, n); err != nil {
		return toStatus(err)
	}
	return nil
}

// limitOptions are the interceptors enforcing Limits, and the message size
// bound. They run inside the metrics and recovery interceptors.
func (s *Server) limitOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(max(transportMaxBytes, s.opts.Limits.maxRequestBytes())),
		grpc.ChainUnaryInterceptor(s.limitUnary),
		grpc.ChainStreamInterceptor(s.limitStream),
	}
}

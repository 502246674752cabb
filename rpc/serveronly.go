package rpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// errNotAServer: a call only servers make came from a connection that did
// not present a server certificate.
var errNotAServer = errors.New("only a server of this cluster may make this call")

// serverOnlyMethods are the methods only servers call, marked or not: a
// node joining the cluster (or announcing its addresses) is a server.
var serverOnlyMethods = map[string]bool{
	rosterv1.Cluster_Join_FullMethodName: true,
}

// serverOnly reports whether a call must come from a server: a call a
// follower relayed (it carries the forwarded mark, which makes the leader
// trust it as one a peer already accepted), or a server-only method.
func serverOnly(ctx context.Context, method string) bool {
	return serverOnlyMethods[method] || isForwarded(ctx)
}

// checkServerPeer refuses a server-only call whose connection did not
// present a certificate that Options.VerifyPeerServer accepts. Without
// VerifyPeerServer (no TLS) every call passes.
func (s *Server) checkServerPeer(ctx context.Context, method string) error {
	if s.opts.VerifyPeerServer == nil || !serverOnly(ctx, method) {
		return nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Errorf(codes.PermissionDenied, "%v: no peer", errNotAServer)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return status.Errorf(codes.PermissionDenied, "%v: the connection is not TLS", errNotAServer)
	}
	if err := s.opts.VerifyPeerServer(info.State); err != nil {
		s.logger.Warn("refused a server-only call from a non-server", "method", method, "peer", p.Addr, "reason", err)
		return status.Error(codes.PermissionDenied, fmt.Sprintf("%v: %v", errNotAServer, err))
	}
	return nil
}

func (s *Server) serverOnlyUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.checkServerPeer(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) serverOnlyStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.checkServerPeer(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// serverOnlyOptions are the interceptors that refuse server-only calls
// from anything but a server; they run inside the others.
func (s *Server) serverOnlyOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.serverOnlyUnary),
		grpc.ChainStreamInterceptor(s.serverOnlyStream),
	}
}

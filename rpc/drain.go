package rpc

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// errDraining ends the streams of a node that is shutting down: the client
// should reconnect to another node.
var errDraining = errors.New("node draining: reconnect to another node")

// Drain prepares the node to stop. It marks grpc.health.v1 NOT_SERVING
// first, so health checkers and balancers stop sending new calls here, and
// then ends every open Watch, KeepAlive and health Watch stream with
// Unavailable and the NODE_DRAINING reason, so clients reconnect elsewhere
// at once. New streams are refused the same way. Unary calls in flight
// finish. Call it before grpc.Server.GracefulStop, which otherwise waits for
// streams that never end on their own. It is safe to call more than once.
func (s *Server) Drain() {
	s.drainOnce.Do(func() {
		s.health.Shutdown()
		close(s.draining)
		s.cancelDrain()
	})
}

// Draining is closed when Drain is called: front ends that wait on their
// own (the HTTP API's blocking queries) end their waits with it.
func (s *Server) Draining() <-chan struct{} { return s.draining }

// isDraining reports whether Drain has been called.
func (s *Server) isDraining() bool {
	select {
	case <-s.draining:
		return true
	default:
		return false
	}
}

// drainingHealth is grpc.health.v1 whose Watch streams end when the node
// drains, after they have reported NOT_SERVING.
type drainingHealth struct {
	*health.Server
	draining <-chan struct{}
}

func (h drainingHealth) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.draining:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := h.Server.Watch(req, ctxStream{ServerStream: stream, ctx: ctx})
	select {
	case <-h.draining:
	default:
		return err
	}
	if stream.Context().Err() != nil {
		return err
	}
	// The inner Watch may have seen the cancellation before the status
	// change: say NOT_SERVING last, whatever was sent before.
	if err := stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}); err != nil {
		return err
	}
	return errDraining
}

// ctxStream is a health Watch stream with a context that also ends on drain.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c ctxStream) Context() context.Context { return c.ctx }

func (c ctxStream) Send(m *healthpb.HealthCheckResponse) error { return c.SendMsg(m) }

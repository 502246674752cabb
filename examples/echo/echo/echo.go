// Package echo is the gRPC service of the echo example: one unary method,
// Echo, that answers with the name of the server that served it. It is
// written by hand on the well-known StringValue message, so the example
// needs no generated code.
package echo

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ServiceName is the full gRPC name of the service.
const ServiceName = "roster.example.echo.v1.Echo"

// MethodEcho is the full gRPC method name of Echo.
const MethodEcho = "/" + ServiceName + "/Echo"

// Server answers every Echo with its own name.
type Server struct {
	// Name is what the server answers: its listen address in the example.
	Name string
}

// Echo returns the server's name.
func (s *Server) Echo(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String(s.Name), nil
}

// Register adds srv to a gRPC server.
func Register(g grpc.ServiceRegistrar, srv *Server) {
	g.RegisterService(&grpc.ServiceDesc{
		ServiceName: ServiceName,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(s any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.StringValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				return s.(*Server).Echo(ctx, in)
			},
		}},
		Metadata: "echo",
	}, srv)
}

// Call sends msg to Echo over conn and returns the name of the server that
// answered.
func Call(ctx context.Context, conn grpc.ClientConnInterface, msg string, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, MethodEcho, wrapperspb.String(msg), out, opts...); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

package rpc

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// InProcess serves g on an in-memory listener and returns a connection to
// it, for front ends in the same process (HTTP, DNS): their calls pass
// through the same interceptors, validation, forwarding and consistency as
// a network client's. Close the connection, then stop g, to end it.
func InProcess(g *grpc.Server) (*grpc.ClientConn, error) {
	lis := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(lis) }()
	return grpc.NewClient("passthrough:///in-process",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)),
	)
}

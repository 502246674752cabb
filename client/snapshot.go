package client

import (
	"context"

	"google.golang.org/grpc"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// SnapshotSave opens a stream of a snapshot taken at a linearizable point
// (see rosterv1.ClusterClient.SnapshotSave).
func (c *Client) SnapshotSave(ctx context.Context, opts ...grpc.CallOption) (grpc.ServerStreamingClient[rosterv1.SnapshotSaveResponse], error) {
	return call(ctx, c, retryRead, func(ctx context.Context, conn *grpc.ClientConn) (grpc.ServerStreamingClient[rosterv1.SnapshotSaveResponse], error) {
		return rosterv1.NewClusterClient(conn).SnapshotSave(ctx, &rosterv1.SnapshotSaveRequest{}, opts...)
	})
}

// SnapshotRestore opens an upload of a snapshot file to restore. It is not
// retried once the stream is open.
func (c *Client) SnapshotRestore(ctx context.Context, opts ...grpc.CallOption) (grpc.ClientStreamingClient[rosterv1.SnapshotRestoreRequest, rosterv1.SnapshotRestoreResponse], error) {
	return call(ctx, c, retryUnsent, func(ctx context.Context, conn *grpc.ClientConn) (grpc.ClientStreamingClient[rosterv1.SnapshotRestoreRequest, rosterv1.SnapshotRestoreResponse], error) {
		return rosterv1.NewClusterClient(conn).SnapshotRestore(ctx, opts...)
	})
}

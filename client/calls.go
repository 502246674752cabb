package client

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// call runs one unary RPC through invoke and returns its response.
func call[Resp any](ctx context.Context, c *Client, idempotent bool, rpc func(context.Context, *grpc.ClientConn) (Resp, error)) (Resp, error) {
	var resp Resp
	err := c.invoke(ctx, idempotent, func(ctx context.Context, conn *grpc.ClientConn, _ bool) error {
		r, err := rpc(ctx, conn)
		if err == nil {
			resp = r
		}
		return err
	})
	return resp, err
}

// Register creates or replaces one instance. It is an upsert by
// namespace/service/id, so it is retried on another endpoint when the
// current one is unreachable.
func (c *Client) Register(ctx context.Context, req *rosterv1.RegisterRequest, opts ...grpc.CallOption) (*rosterv1.RegisterResponse, error) {
	return call(ctx, c, true, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.RegisterResponse, error) {
		return rosterv1.NewRegistryClient(conn).Register(ctx, req, opts...)
	})
}

// Deregister removes one instance. It is retried on another endpoint when
// the current one is unreachable; when a retry answers NotFound after an
// earlier attempt may already have removed the instance, Deregister reports
// success with a response whose revision is zero (unknown).
func (c *Client) Deregister(ctx context.Context, req *rosterv1.DeregisterRequest, opts ...grpc.CallOption) (*rosterv1.DeregisterResponse, error) {
	var resp *rosterv1.DeregisterResponse
	err := c.invoke(ctx, true, func(ctx context.Context, conn *grpc.ClientConn, maybeApplied bool) error {
		r, err := rosterv1.NewRegistryClient(conn).Deregister(ctx, req, opts...)
		if status.Code(err) == codes.NotFound && maybeApplied {
			resp = &rosterv1.DeregisterResponse{}
			return nil
		}
		if err == nil {
			resp = r
		}
		return err
	})
	return resp, err
}

// GetService lists the instances of one service.
func (c *Client) GetService(ctx context.Context, req *rosterv1.GetServiceRequest, opts ...grpc.CallOption) (*rosterv1.GetServiceResponse, error) {
	return call(ctx, c, true, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.GetServiceResponse, error) {
		return rosterv1.NewRegistryClient(conn).GetService(ctx, req, opts...)
	})
}

// ListServices lists services with their instance counts.
func (c *Client) ListServices(ctx context.Context, req *rosterv1.ListServicesRequest, opts ...grpc.CallOption) (*rosterv1.ListServicesResponse, error) {
	return call(ctx, c, true, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.ListServicesResponse, error) {
		return rosterv1.NewRegistryClient(conn).ListServices(ctx, req, opts...)
	})
}

// Heartbeat renews the TTL lease of one instance.
func (c *Client) Heartbeat(ctx context.Context, req *rosterv1.HeartbeatRequest, opts ...grpc.CallOption) (*rosterv1.HeartbeatResponse, error) {
	return call(ctx, c, true, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.HeartbeatResponse, error) {
		return rosterv1.NewRegistryClient(conn).Heartbeat(ctx, req, opts...)
	})
}

// SetMaintenance drains (Enabled false) or re-enables an instance.
func (c *Client) SetMaintenance(ctx context.Context, req *rosterv1.SetMaintenanceRequest, opts ...grpc.CallOption) (*rosterv1.SetMaintenanceResponse, error) {
	return call(ctx, c, true, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.SetMaintenanceResponse, error) {
		return rosterv1.NewRegistryClient(conn).SetMaintenance(ctx, req, opts...)
	})
}

// Status reports the cluster as seen by the node that answers.
func (c *Client) Status(ctx context.Context, req *rosterv1.StatusRequest, opts ...grpc.CallOption) (*rosterv1.StatusResponse, error) {
	return call(ctx, c, true, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.StatusResponse, error) {
		return rosterv1.NewClusterClient(conn).Status(ctx, req, opts...)
	})
}

// Members lists the nodes of the cluster.
func (c *Client) Members(ctx context.Context, req *rosterv1.MembersRequest, opts ...grpc.CallOption) (*rosterv1.MembersResponse, error) {
	return call(ctx, c, true, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.MembersResponse, error) {
		return rosterv1.NewClusterClient(conn).Members(ctx, req, opts...)
	})
}

// RemoveNode removes a node from the cluster. It moves to another endpoint
// only when the current one could not be reached at all; once the request
// may have been sent, its failure is returned as it is.
func (c *Client) RemoveNode(ctx context.Context, req *rosterv1.RemoveNodeRequest, opts ...grpc.CallOption) (*rosterv1.RemoveNodeResponse, error) {
	return call(ctx, c, false, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.RemoveNodeResponse, error) {
		return rosterv1.NewClusterClient(conn).RemoveNode(ctx, req, opts...)
	})
}

// TransferLeadership asks the leader to hand over to another voter (any,
// when req.NodeId is empty). Like RemoveNode it is not retried once sent.
func (c *Client) TransferLeadership(ctx context.Context, req *rosterv1.TransferLeadershipRequest, opts ...grpc.CallOption) (*rosterv1.TransferLeadershipResponse, error) {
	return call(ctx, c, false, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.TransferLeadershipResponse, error) {
		return rosterv1.NewClusterClient(conn).TransferLeadership(ctx, req, opts...)
	})
}

// SetSelfPreservation changes the cluster's replicated self-preservation
// settings (forwarded to the leader). The change sets absolute values, so
// it is safe to send again.
func (c *Client) SetSelfPreservation(ctx context.Context, req *rosterv1.SetSelfPreservationRequest, opts ...grpc.CallOption) (*rosterv1.SetSelfPreservationResponse, error) {
	return call(ctx, c, true, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.SetSelfPreservationResponse, error) {
		return rosterv1.NewClusterClient(conn).SetSelfPreservation(ctx, req, opts...)
	})
}

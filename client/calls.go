package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// call runs one unary RPC through invoke and returns its response.
func call[Resp any](ctx context.Context, c *Client, policy retryPolicy, rpc func(context.Context, *grpc.ClientConn) (Resp, error)) (Resp, error) {
	var resp Resp
	err := c.invoke(ctx, policy, func(ctx context.Context, conn *grpc.ClientConn) error {
		r, err := rpc(ctx, conn)
		if err == nil {
			resp = r
		}
		return err
	})
	return resp, err
}

// newRequestID returns a fresh request id: 128 random bits in hex.
func newRequestID() string {
	var b [16]byte
	// crypto/rand.Read never fails (it crashes the program instead).
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Register creates or replaces one instance (an upsert by
// namespace/service/id). It carries a request id (a fresh one when
// req.RequestId is empty; req itself is not changed), so it is retried
// after any Unavailable, on the next endpoint and within ctx's deadline,
// and still applied at most once: a retry returns the first result.
func (c *Client) Register(ctx context.Context, req *rosterv1.RegisterRequest, opts ...grpc.CallOption) (*rosterv1.RegisterResponse, error) {
	if req.GetRequestId() == "" {
		req = withRequestID(req, func(r *rosterv1.RegisterRequest, id string) { r.RequestId = id })
	}
	return call(ctx, c, retryWrite, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.RegisterResponse, error) {
		return rosterv1.NewRegistryClient(conn).Register(ctx, req, opts...)
	})
}

// withRequestID returns a copy of req carrying a fresh request id.
func withRequestID[M proto.Message](req M, set func(M, string)) M {
	c := proto.Clone(req).(M)
	if !c.ProtoReflect().IsValid() {
		// A nil request: send an empty one, which the server explains.
		c = c.ProtoReflect().Type().New().Interface().(M)
	}
	set(c, newRequestID())
	return c
}

// Deregister removes one instance; NotFound if it is not registered. It is
// retried like Register, with one request id: a retry after the instance
// was removed (and perhaps registered again by someone else) returns the
// first result and removes nothing.
func (c *Client) Deregister(ctx context.Context, req *rosterv1.DeregisterRequest, opts ...grpc.CallOption) (*rosterv1.DeregisterResponse, error) {
	if req.GetRequestId() == "" {
		req = withRequestID(req, func(r *rosterv1.DeregisterRequest, id string) { r.RequestId = id })
	}
	return call(ctx, c, retryWrite, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.DeregisterResponse, error) {
		return rosterv1.NewRegistryClient(conn).Deregister(ctx, req, opts...)
	})
}

// GetService lists the instances of one service.
func (c *Client) GetService(ctx context.Context, req *rosterv1.GetServiceRequest, opts ...grpc.CallOption) (*rosterv1.GetServiceResponse, error) {
	return call(ctx, c, retryRead, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.GetServiceResponse, error) {
		return rosterv1.NewRegistryClient(conn).GetService(ctx, req, opts...)
	})
}

// ListServices lists services with their instance counts.
func (c *Client) ListServices(ctx context.Context, req *rosterv1.ListServicesRequest, opts ...grpc.CallOption) (*rosterv1.ListServicesResponse, error) {
	return call(ctx, c, retryRead, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.ListServicesResponse, error) {
		return rosterv1.NewRegistryClient(conn).ListServices(ctx, req, opts...)
	})
}

// Heartbeat renews the TTL lease of one instance.
func (c *Client) Heartbeat(ctx context.Context, req *rosterv1.HeartbeatRequest, opts ...grpc.CallOption) (*rosterv1.HeartbeatResponse, error) {
	return call(ctx, c, retryRead, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.HeartbeatResponse, error) {
		return rosterv1.NewRegistryClient(conn).Heartbeat(ctx, req, opts...)
	})
}

// ReportHealth sets a TTL instance's health as its own process sees it
// (passing, warning or critical) and renews its lease. It is retried like
// Heartbeat: reporting the same status twice changes nothing.
func (c *Client) ReportHealth(ctx context.Context, req *rosterv1.ReportHealthRequest, opts ...grpc.CallOption) (*rosterv1.ReportHealthResponse, error) {
	return call(ctx, c, retryRead, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.ReportHealthResponse, error) {
		return rosterv1.NewRegistryClient(conn).ReportHealth(ctx, req, opts...)
	})
}

// SetMaintenance drains (Enabled false) or re-enables an instance. It is
// retried like Register, with one request id.
func (c *Client) SetMaintenance(ctx context.Context, req *rosterv1.SetMaintenanceRequest, opts ...grpc.CallOption) (*rosterv1.SetMaintenanceResponse, error) {
	if req.GetRequestId() == "" {
		req = withRequestID(req, func(r *rosterv1.SetMaintenanceRequest, id string) { r.RequestId = id })
	}
	return call(ctx, c, retryWrite, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.SetMaintenanceResponse, error) {
		return rosterv1.NewRegistryClient(conn).SetMaintenance(ctx, req, opts...)
	})
}

// Status reports the cluster as seen by the node that answers.
func (c *Client) Status(ctx context.Context, req *rosterv1.StatusRequest, opts ...grpc.CallOption) (*rosterv1.StatusResponse, error) {
	return call(ctx, c, retryRead, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.StatusResponse, error) {
		return rosterv1.NewClusterClient(conn).Status(ctx, req, opts...)
	})
}

// Members lists the nodes of the cluster.
func (c *Client) Members(ctx context.Context, req *rosterv1.MembersRequest, opts ...grpc.CallOption) (*rosterv1.MembersResponse, error) {
	return call(ctx, c, retryRead, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.MembersResponse, error) {
		return rosterv1.NewClusterClient(conn).Members(ctx, req, opts...)
	})
}

// RemoveNode removes a node from the cluster. It moves to another endpoint
// only when the current one could not be reached at all; once the request
// may have been sent, its failure is returned as it is.
func (c *Client) RemoveNode(ctx context.Context, req *rosterv1.RemoveNodeRequest, opts ...grpc.CallOption) (*rosterv1.RemoveNodeResponse, error) {
	return call(ctx, c, retryUnsent, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.RemoveNodeResponse, error) {
		return rosterv1.NewClusterClient(conn).RemoveNode(ctx, req, opts...)
	})
}

// TransferLeadership asks the leader to hand over to another voter (any,
// when req.NodeId is empty). Like RemoveNode it is not retried once sent.
func (c *Client) TransferLeadership(ctx context.Context, req *rosterv1.TransferLeadershipRequest, opts ...grpc.CallOption) (*rosterv1.TransferLeadershipResponse, error) {
	return call(ctx, c, retryUnsent, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.TransferLeadershipResponse, error) {
		return rosterv1.NewClusterClient(conn).TransferLeadership(ctx, req, opts...)
	})
}

// SetSelfPreservation changes the cluster's replicated self-preservation
// settings (forwarded to the leader). It carries no request id, so like
// RemoveNode it moves to another endpoint only when it was never sent.
func (c *Client) SetSelfPreservation(ctx context.Context, req *rosterv1.SetSelfPreservationRequest, opts ...grpc.CallOption) (*rosterv1.SetSelfPreservationResponse, error) {
	return call(ctx, c, retryUnsent, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.SetSelfPreservationResponse, error) {
		return rosterv1.NewClusterClient(conn).SetSelfPreservation(ctx, req, opts...)
	})
}

package rpc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// GetLeases implements rosterv1.RegistryServer. Leases are renewed in the
// leader's memory only, so the leader answers; followers relay the call.
func (s *Server) GetLeases(ctx context.Context, req *rosterv1.GetLeasesRequest) (*rosterv1.GetLeasesResponse, error) {
	ns, err := validateNamespace(req.Namespace)
	if err != nil {
		return nil, err
	}
	if err := validateService(req.Service); err != nil {
		return nil, err
	}
	return onLeader(ctx, s, repeatable,
		func(ctx context.Context) (*rosterv1.GetLeasesResponse, error) {
			return s.leasesLocal(ns, req.Service)
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.GetLeasesResponse, error) {
			return rosterv1.NewRegistryClient(cc).GetLeases(ctx, req)
		})
}

func (s *Server) leasesLocal(ns, svc string) (*rosterv1.GetLeasesResponse, error) {
	ls, err := s.node.ServiceLeases(ns, svc)
	if err != nil {
		return nil, err
	}
	resp := &rosterv1.GetLeasesResponse{Header: s.header(s.node.Store().View().Revision())}
	for _, l := range ls {
		resp.Leases = append(resp.Leases, &rosterv1.LeaseInfo{
			Id:            l.ID,
			Ttl:           durationpb.New(l.TTL),
			LastRenewedAt: timestamppb.New(l.LastRenewed),
			Deadline:      timestamppb.New(l.Deadline),
		})
	}
	return resp, nil
}

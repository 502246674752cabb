package rpc

import (
	"context"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/grpc"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// Blocking query bounds.
const (
	DefaultWaitTimeout = 60 * time.Second
	MaxWaitTimeout     = 10 * time.Minute
)

// Register implements rosterv1.RegistryServer.
func (s *Server) Register(ctx context.Context, req *rosterv1.RegisterRequest) (_ *rosterv1.RegisterResponse, err error) {
	if req.RequestId, err = requestID(req.RequestId); err != nil {
		return nil, err
	}
	inst, err := validateInstance(req.GetInstance())
	if err != nil {
		return nil, err
	}
	return onLeader(ctx, s, deduplicated,
		func(ctx context.Context) (*rosterv1.RegisterResponse, error) {
			rev, err := s.node.RegisterWithin(ctx, inst, req.RequestId, s.opts.Limits.instances())
			if err != nil {
				return nil, err
			}
			return &rosterv1.RegisterResponse{Header: s.header(s.node.Store().Revision()), Revision: rev}, nil
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.RegisterResponse, error) {
			return rosterv1.NewRegistryClient(cc).Register(ctx, req)
		})
}

// Deregister implements rosterv1.RegistryServer.
func (s *Server) Deregister(ctx context.Context, req *rosterv1.DeregisterRequest) (_ *rosterv1.DeregisterResponse, err error) {
	if req.RequestId, err = requestID(req.RequestId); err != nil {
		return nil, err
	}
	k, err := validateKey(req.Namespace, req.Service, req.Id)
	if err != nil {
		return nil, err
	}
	return onLeader(ctx, s, deduplicated,
		func(ctx context.Context) (*rosterv1.DeregisterResponse, error) {
			rev, err := s.node.Deregister(ctx, k, req.RequestId)
			if err != nil {
				return nil, err
			}
			return &rosterv1.DeregisterResponse{Header: s.header(s.node.Store().Revision()), Revision: rev}, nil
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.DeregisterResponse, error) {
			return rosterv1.NewRegistryClient(cc).Deregister(ctx, req)
		})
}

// SetMaintenance implements rosterv1.RegistryServer.
func (s *Server) SetMaintenance(ctx context.Context, req *rosterv1.SetMaintenanceRequest) (_ *rosterv1.SetMaintenanceResponse, err error) {
	if req.RequestId, err = requestID(req.RequestId); err != nil {
		return nil, err
	}
	k, err := validateKey(req.Namespace, req.Service, req.Id)
	if err != nil {
		return nil, err
	}
	if len(req.Reason) > MaxReasonLen {
		return nil, invalidf("reason is %d bytes; the limit is %d", len(req.Reason), MaxReasonLen)
	}
	return onLeader(ctx, s, deduplicated,
		func(ctx context.Context) (*rosterv1.SetMaintenanceResponse, error) {
			rev, err := s.node.SetMaintenance(ctx, k, req.Enabled, req.Reason, req.RequestId)
			if err != nil {
				return nil, err
			}
			return &rosterv1.SetMaintenanceResponse{Header: s.header(s.node.Store().Revision()), Revision: rev}, nil
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.SetMaintenanceResponse, error) {
			return rosterv1.NewRegistryClient(cc).SetMaintenance(ctx, req)
		})
}

// GetService implements rosterv1.RegistryServer. With wait_revision it is a
// blocking query: it returns once the service's revision passes it. A wait
// that runs out, or that the node draining ends, answers as a fresh read at
// the request's consistency would: the read barrier again (a linearizable
// read confirms the leader's read index, and fails as any read fails on a
// node without a quorum), then the service as it is. Ending with an answer
// rather than an error on drain is what a Consul agent does at the end of a
// wait: clients (consul-template, Prometheus' Consul SD) take it as a wait
// that ran out and poll again, on another node once this one's health says
// NOT_SERVING, instead of logging an error and backing off; and the answer
// is as fresh as any read the node gives.
func (s *Server) GetService(ctx context.Context, req *rosterv1.GetServiceRequest) (*rosterv1.GetServiceResponse, error) {
	ns, err := validateNamespace(req.Namespace)
	if err != nil {
		return nil, err
	}
	if err := validateService(req.Service); err != nil {
		return nil, err
	}
	if err := s.readBarrier(ctx, req.Read); err != nil {
		return nil, err
	}
	var timeout <-chan time.Time
	var draining <-chan struct{}
	if req.WaitRevision > 0 {
		wait := DefaultWaitTimeout
		if req.WaitTimeout != nil {
			wait = req.WaitTimeout.AsDuration()
		}
		if wait <= 0 || wait > MaxWaitTimeout {
			return nil, invalidf("wait_timeout must be between 0 and %s", MaxWaitTimeout)
		}
		if h := s.readHooks.Load(); h != nil && h.waitTimer != nil {
			timeout = h.waitTimer(wait)
		} else {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		draining = s.draining
	}
	answer := func(view *store.View, svcRev uint64, insts []*store.Instance) *rosterv1.GetServiceResponse {
		return &rosterv1.GetServiceResponse{
			Header:          s.serviceHeader(view.Revision(), ns, req.Service),
			Instances:       filterInstances(insts, req),
			ServiceRevision: svcRev,
		}
	}
	for {
		ws := memdb.NewWatchSet()
		ws.Add(s.node.Store().AbandonCh())
		view := s.node.Store().View()
		svcRev, insts, err := view.Service(ws, ns, req.Service)
		if err != nil {
			return nil, err
		}
		if req.WaitRevision == 0 || svcRev > req.WaitRevision {
			return answer(view, svcRev, insts), nil
		}
		if h := s.readHooks.Load(); h != nil && h.waiting != nil {
			h.waiting(svcRev)
		}
		select {
		case <-ws.WatchCh(ctx):
			continue
		case <-timeout:
		case <-draining:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// The wait is over: read afresh at the request's consistency.
		if err := s.readBarrier(ctx, req.Read); err != nil {
			return nil, err
		}
		view = s.node.Store().View()
		svcRev, insts, err = view.Service(nil, ns, req.Service)
		if err != nil {
			return nil, err
		}
		return answer(view, svcRev, insts), nil
	}
}

// readHooks are test hooks of blocking reads; nil fields are skipped.
type readHooks struct {
	// waitTimer replaces the timer of a blocking GetService's wait: the
	// wait runs out when the channel it returns delivers.
	waitTimer func(wait time.Duration) <-chan time.Time
	// waiting runs each time a blocking GetService is about to wait, with
	// the service revision it has seen.
	waiting func(svcRev uint64)
}

func filterInstances(insts []*store.Instance, req *rosterv1.GetServiceRequest) []*rosterv1.Instance {
	out := make([]*rosterv1.Instance, 0, len(insts))
next:
	for _, i := range insts {
		if req.HealthyOnly && !i.Healthy() {
			continue
		}
		if req.Zone != "" && i.Zone() != req.Zone {
			continue
		}
		for _, want := range req.Tags {
			found := false
			for _, t := range i.Tags() {
				if t == want {
					found = true
					break
				}
			}
			if !found {
				continue next
			}
		}
		for k, v := range req.Metadata {
			if got, ok := i.Metadata()[k]; !ok || got != v {
				continue next
			}
		}
		out = append(out, toAPIInstance(i))
	}
	return out
}

// ListServices implements rosterv1.RegistryServer.
func (s *Server) ListServices(ctx context.Context, req *rosterv1.ListServicesRequest) (*rosterv1.ListServicesResponse, error) {
	if req.Namespace != "" {
		if _, err := validateNamespace(req.Namespace); err != nil {
			return nil, err
		}
	}
	if err := s.readBarrier(ctx, req.Read); err != nil {
		return nil, err
	}
	view := s.node.Store().View()
	var detail store.SummaryDetail
	if req.WithTags {
		detail |= store.WithTags
	}
	if req.WithInstanceIds {
		detail |= store.WithInstanceIDs
	}
	sums, err := view.Services(nil, req.Namespace, detail)
	if err != nil {
		return nil, err
	}
	out := &rosterv1.ListServicesResponse{Header: s.header(view.Revision()), ExtinctRevision: view.Extinct()}
	for _, sum := range sums {
		out.Services = append(out.Services, &rosterv1.ServiceSummary{
			Namespace: sum.Namespace, Service: sum.Service,
			Instances: uint32(sum.Instances), Passing: uint32(sum.Passing),
			Warning: uint32(sum.Warning), Critical: uint32(sum.Critical), Drained: uint32(sum.Drained),
			Tags: sum.Tags, InstanceIds: sum.IDs,
		})
	}
	return out, nil
}

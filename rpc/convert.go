package rpc

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// toAPIInstance converts a stored instance to its API form.
func toAPIInstance(i *store.Instance) *rosterv1.Instance {
	out := &rosterv1.Instance{
		Namespace:            i.Namespace,
		Service:              i.Service,
		Id:                   i.ID,
		Address:              i.Address,
		Port:                 uint32(i.Port),
		Tags:                 i.Tags(),
		Metadata:             i.Metadata(),
		Weight:               uint32(i.Weight),
		Zone:                 i.Zone(),
		Status:               rosterv1.HealthStatus(i.Status),
		StatusReason:         i.StatusReason(),
		Enabled:              i.Enabled,
		MaintenanceReason:    i.MaintenanceReason(),
		CreateRevision:       i.CreateRevision,
		ModRevision:          i.ModRevision,
		RegistrationRevision: i.RegistrationRevision,
	}
	if i.StatusChangedAt != 0 {
		out.StatusChangedAt = timestamppb.New(time.Unix(0, i.StatusChangedAt))
	}
	if i.TTL > 0 {
		out.Ttl = durationpb.New(i.TTL)
	}
	if d := i.DeregisterCriticalAfter(); d > 0 {
		out.DeregisterCriticalAfter = durationpb.New(d)
	}
	if c := i.Check(); c != nil {
		hc := &rosterv1.HealthCheck{
			GrpcService:            c.GRPCService,
			Interval:               durationpb.New(c.Interval),
			Timeout:                durationpb.New(c.Timeout),
			FailuresBeforeCritical: c.FailuresBeforeCritical,
			SuccessesBeforePassing: c.SuccessesBeforePassing,
		}
		switch {
		case c.HTTP != "":
			hc.Target = &rosterv1.HealthCheck_Http{Http: c.HTTP}
		case c.TCP != "":
			hc.Target = &rosterv1.HealthCheck_Tcp{Tcp: c.TCP}
		case c.GRPC != "":
			hc.Target = &rosterv1.HealthCheck_Grpc{Grpc: c.GRPC}
		}
		out.Check = hc
	}
	return out
}

// keyOnly is the API form of a deleted instance's key.
func keyOnly(k store.Key) *rosterv1.Instance {
	return &rosterv1.Instance{Namespace: k.Namespace, Service: k.Service, Id: k.ID}
}

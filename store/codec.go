package store

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// InstanceToRecord converts an instance to its stored (log and snapshot) form.
func InstanceToRecord(i *Instance) *raftcmdv1.Instance {
	r := &raftcmdv1.Instance{
		Namespace:                 i.Namespace,
		Service:                   i.Service,
		Id:                        i.ID,
		Address:                   i.Address,
		Port:                      uint32(i.Port),
		Tags:                      i.Tags(),
		Metadata:                  i.Metadata(),
		Weight:                    uint32(i.Weight),
		Zone:                      i.Zone(),
		TtlNs:                     int64(i.TTL),
		DeregisterCriticalAfterNs: int64(i.DeregisterCriticalAfter()),
		Status:                    int32(i.Status),
		StatusReason:              i.StatusReason(),
		StatusChangedUnixNs:       i.StatusChangedAt,
		Enabled:                   i.Enabled,
		MaintenanceReason:         i.MaintenanceReason(),
		CreateRevision:            i.CreateRevision,
		ModRevision:               i.ModRevision,
		RegistrationRevision:      i.RegistrationRevision,
		HeldSinceUnixNs:           i.HeldSince(),
	}
	if c := i.Check(); c != nil {
		r.Check = &raftcmdv1.HealthCheck{
			Http: c.HTTP, Tcp: c.TCP, Grpc: c.GRPC, GrpcService: c.GRPCService,
			IntervalNs: int64(c.Interval), TimeoutNs: int64(c.Timeout),
			FailuresBeforeCritical: c.FailuresBeforeCritical,
			SuccessesBeforePassing: c.SuccessesBeforePassing,
		}
	}
	return r
}

// InstanceFromRecord converts a stored record to a new instance.
func InstanceFromRecord(r *raftcmdv1.Instance) *Instance {
	i := &Instance{
		Namespace:            r.GetNamespace(),
		Service:              r.GetService(),
		ID:                   r.GetId(),
		Address:              r.GetAddress(),
		Port:                 uint16(r.GetPort()), // every API checks 1-65535
		Labels:               NewLabels(r.GetTags(), r.GetMetadata(), r.GetZone()),
		Weight:               uint16(min(r.GetWeight(), math.MaxUint16)), // every API checks 0-10000
		TTL:                  time.Duration(r.GetTtlNs()),
		Status:               HealthOf(r.GetStatus()),
		StatusChangedAt:      r.GetStatusChangedUnixNs(),
		Enabled:              r.GetEnabled(),
		CreateRevision:       r.GetCreateRevision(),
		ModRevision:          r.GetModRevision(),
		RegistrationRevision: r.GetRegistrationRevision(),
	}
	var rare rareFields
	if c := r.GetCheck(); c != nil {
		rare.check = &Check{
			HTTP: c.GetHttp(), TCP: c.GetTcp(), GRPC: c.GetGrpc(), GRPCService: c.GetGrpcService(),
			Interval: time.Duration(c.GetIntervalNs()), Timeout: time.Duration(c.GetTimeoutNs()),
			FailuresBeforeCritical: c.GetFailuresBeforeCritical(),
			SuccessesBeforePassing: c.GetSuccessesBeforePassing(),
		}
	}
	rare.deregisterCriticalAfter = time.Duration(r.GetDeregisterCriticalAfterNs())
	rare.maintenanceReason = r.GetMaintenanceReason()
	rare.heldSince = r.GetHeldSinceUnixNs()
	if rare != (rareFields{}) {
		i.rare = &rare
	}
	i.SetStatusReason(r.GetStatusReason())
	return i
}

// RequestResultToRecord converts a request result to its snapshot form.
func RequestResultToRecord(r *RequestResult) *raftcmdv1.RequestResult {
	return &raftcmdv1.RequestResult{
		RequestId:    r.ID(),
		Revision:     r.Revision,
		Error:        raftcmdv1.RequestResult_Error(r.ErrKind()),
		ErrorMessage: r.ErrMessage(),
		NowUnixNs:    r.Time,
		Index:        r.Index,
		Digest:       r.Digest[:],
	}
}

// RequestResultFromRecord converts a snapshot record to a new request
// result, or says why it cannot: a digest that is not DigestSize bytes.
func RequestResultFromRecord(r *raftcmdv1.RequestResult) (*RequestResult, error) {
	if len(r.GetDigest()) != DigestSize {
		return nil, fmt.Errorf("request result %q: digest is %d bytes, want %d", r.GetRequestId(), len(r.GetDigest()), DigestSize)
	}
	res := &RequestResult{
		Revision: r.GetRevision(),
		Time:     r.GetNowUnixNs(),
		Index:    r.GetIndex(),
		Digest:   [DigestSize]byte(r.GetDigest()),
	}
	if kind := RequestError(r.GetError()); kind != RequestOK || r.GetErrorMessage() != "" {
		res.setErr(kind, r.GetErrorMessage())
	}
	res.setID(r.GetRequestId())
	return res, nil
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// MarshalInstance encodes an instance deterministically (map order fixed).
func MarshalInstance(i *Instance) ([]byte, error) {
	return deterministic.Marshal(InstanceToRecord(i))
}

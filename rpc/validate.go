package rpc

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// Limits on what a registration may carry. Every API (gRPC, and the HTTP,
// Consul-compatible and DNS front ends through it) validates through this
// file, which applies the rules of store/validate.go, the ones a restored
// backup is checked against too.
const (
	MaxIDLen         = store.MaxIDLen
	MaxAddressLen    = store.MaxAddressLen
	MaxTags          = store.MaxTags
	MaxTagLen        = store.MaxTagLen
	MaxMetadataKeys  = store.MaxMetadataKeys
	MaxMetadataKey   = store.MaxMetadataKey
	MaxMetadataValue = store.MaxMetadataValue
	MaxMetadataBytes = store.MaxMetadataBytes
	// MaxReasonLen bounds a maintenance or health report reason.
	MaxReasonLen     = 1024
	MaxWeight        = store.MaxWeight
	DefaultWeight    = 100
	MinTTL           = store.MinTTL
	MaxTTL           = store.MaxTTL
	MinCheckInterval = store.MinCheckInterval
	MaxCheckInterval = store.MaxCheckInterval
	MaxThreshold     = store.MaxThreshold
	MaxCriticalAfter = store.MaxCriticalAfter
	MaxRequestIDLen  = 128
)

// invalid makes a rule store/validate.go reports broken a request that
// fails validation.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	return &invalidError{msg: err.Error()}
}

func validateNamespace(ns string) (string, error) {
	if ns == "" {
		return store.DefaultNamespace, nil
	}
	return ns, invalid(store.CheckNamespace(ns))
}

func validateService(svc string) error { return invalid(store.CheckService(svc)) }

func validateID(id string) error { return invalid(store.CheckID("instance id", id)) }

// requestID returns the request id of a write: the client's, validated, or
// a fresh one when the client sent none. The node that receives the call
// picks it, so its own retries of the call (forwarding) carry the same id.
func requestID(id string) (string, error) {
	if id == "" {
		var b [16]byte
		// crypto/rand.Read never fails (it crashes the program instead).
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:]), nil
	}
	if len(id) > MaxRequestIDLen {
		return "", invalidf("request id is %d bytes; the limit is %d", len(id), MaxRequestIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return "", invalidf("request id %q must be printable ASCII without spaces", truncate(id))
		}
	}
	return id, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// validateKey checks a namespace/service/id triple and defaults the namespace.
func validateKey(ns, svc, id string) (store.Key, error) {
	ns, err := validateNamespace(ns)
	if err != nil {
		return store.Key{}, err
	}
	if err := validateService(svc); err != nil {
		return store.Key{}, err
	}
	if err := validateID(id); err != nil {
		return store.Key{}, err
	}
	return store.Key{Namespace: ns, Service: svc, ID: id}, nil
}

func validateHostPort(what, hp string) error { return invalid(store.CheckHostPort(what, hp)) }

func validateHost(what, host string) error { return invalid(store.CheckHost(what, host)) }

// validateInstance turns a registration into a store instance, applying
// defaults, or says what is wrong with it. Output-only fields are ignored.
func validateInstance(in *rosterv1.Instance) (*store.Instance, error) {
	if in == nil {
		return nil, invalidf("instance is required")
	}
	k, err := validateKey(in.Namespace, in.Service, in.Id)
	if err != nil {
		return nil, err
	}
	if err := validateHost("address", in.Address); err != nil {
		return nil, err
	}
	// Checked before they are narrowed to 16 bits.
	if err := store.CheckPort(in.Port); err != nil {
		return nil, invalid(err)
	}
	if err := store.CheckLabels(in.Tags, in.Metadata, in.Zone); err != nil {
		return nil, invalid(err)
	}
	weight := in.Weight
	if weight == 0 {
		weight = DefaultWeight
	}
	if err := store.CheckWeight(weight); err != nil {
		return nil, invalid(err)
	}
	out := &store.Instance{
		Namespace: k.Namespace, Service: k.Service, ID: k.ID,
		// The port was checked to be 1-65535 above.
		Address: in.Address, Port: uint16(in.Port), Weight: uint16(weight), // 1-MaxWeight, checked above
		Labels: store.NewLabels(slices.Clone(in.Tags), maps.Clone(in.Metadata), in.Zone),
	}
	if in.Ttl != nil {
		if err := in.Ttl.CheckValid(); err != nil {
			return nil, invalidf("ttl: %v", err)
		}
		out.TTL = in.Ttl.AsDuration()
		if out.TTL == 0 {
			return nil, invalidf("ttl %s is out of range %s-%s", out.TTL, MinTTL, MaxTTL)
		}
		if err := store.CheckTTL(out.TTL); err != nil {
			return nil, invalid(err)
		}
	}
	if in.Check != nil {
		check, err := validateCheck(in.Check)
		if err != nil {
			return nil, err
		}
		out.SetCheck(check)
	}
	if in.DeregisterCriticalAfter != nil {
		d := in.DeregisterCriticalAfter.AsDuration()
		if err := in.DeregisterCriticalAfter.CheckValid(); err != nil {
			return nil, invalidf("deregister_critical_after must be 0-%s", MaxCriticalAfter)
		}
		if err := store.CheckDeregisterCriticalAfter(d, out.TTL, out.Check()); err != nil {
			return nil, invalid(err)
		}
		out.SetDeregisterCriticalAfter(d)
	}
	return out, nil
}

func validateCheck(c *rosterv1.HealthCheck) (*store.Check, error) {
	out := &store.Check{GRPCService: c.GrpcService}
	switch t := c.Target.(type) {
	case *rosterv1.HealthCheck_Http:
		out.HTTP = t.Http
	case *rosterv1.HealthCheck_Tcp:
		out.TCP = t.Tcp
	case *rosterv1.HealthCheck_Grpc:
		out.GRPC = t.Grpc
	}
	out.Interval = 10 * time.Second
	if c.Interval != nil {
		out.Interval = c.Interval.AsDuration()
	}
	out.Timeout = min(5*time.Second, out.Interval)
	if c.Timeout != nil {
		out.Timeout = c.Timeout.AsDuration()
	}
	out.FailuresBeforeCritical = max(1, c.FailuresBeforeCritical)
	out.SuccessesBeforePassing = max(1, c.SuccessesBeforePassing)
	if err := store.CheckCheck(out); err != nil {
		return nil, invalid(err)
	}
	return out, nil
}

// rejectUnknownFields fails a request carrying fields this server does not
// know, anywhere in it: a newer client's field silently dropped could change
// what a write means.
func rejectUnknownFields(m protoreflect.Message) error {
	if len(m.GetUnknown()) > 0 {
		return invalidf("request has fields this server does not know (in %s)", m.Descriptor().FullName())
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = rejectUnknownFields(l.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = rejectUnknownFields(mv.Message())
				return err == nil
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			err = rejectUnknownFields(v.Message())
		}
		return err == nil
	})
	return err
}

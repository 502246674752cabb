package rpc

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// Limits on what a registration may carry. Every API (gRPC, and the HTTP,
// Consul-compatible and DNS front ends through it) validates through this
// file. The metadata limits are Consul's (64 pairs, 128-byte keys, 512-byte
// values), so a registration Consul accepts fits here too.
const (
	MaxIDLen         = 128
	MaxAddressLen    = 253
	MaxTags          = 64
	MaxTagLen        = 128
	MaxMetadataKeys  = 64
	MaxMetadataKey   = 128
	MaxMetadataValue = 512
	MaxMetadataBytes = 16 << 10
	// MaxReasonLen bounds a maintenance or health report reason.
	MaxReasonLen     = 1024
	MaxWeight        = 10000
	DefaultWeight    = 100
	MinTTL           = time.Second
	MaxTTL           = 24 * time.Hour
	MinCheckInterval = time.Second
	MaxCheckInterval = 24 * time.Hour
	MaxThreshold     = 100
	MaxCriticalAfter = 30 * 24 * time.Hour
	MaxRequestIDLen  = 128
)

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	idChars  = regexp.MustCompile(`^[A-Za-z0-9._:@-]+$`)
	metaKey  = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	hostname = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)
)

func validateNamespace(ns string) (string, error) {
	if ns == "" {
		return store.DefaultNamespace, nil
	}
	if !dnsLabel.MatchString(ns) {
		return "", invalidf("namespace %q must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)", ns)
	}
	return ns, nil
}

func validateService(svc string) error {
	if svc == "" {
		return invalidf("service name is required")
	}
	if !dnsLabel.MatchString(svc) {
		return invalidf("service %q must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)", svc)
	}
	return nil
}

func validateID(id string) error {
	if id == "" {
		return invalidf("instance id is required")
	}
	if len(id) > MaxIDLen || !idChars.MatchString(id) {
		return invalidf("instance id %q must be 1-%d characters of A-Z a-z 0-9 . _ : @ -", truncate(id), MaxIDLen)
	}
	return nil
}

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

func validateHostPort(what, hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return invalidf("%s %q must be HOST:PORT", what, truncate(hp))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return invalidf("%s %q: port must be 1-65535", what, truncate(hp))
	}
	return validateHost(what, host)
}

func validateHost(what, host string) error {
	if host == "" || len(host) > MaxAddressLen {
		return invalidf("%s host must be 1-%d characters", what, MaxAddressLen)
	}
	if net.ParseIP(host) == nil && !hostname.MatchString(host) {
		return invalidf("%s %q is neither an IP address nor a host name", what, truncate(host))
	}
	return nil
}

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
	if in.Port < 1 || in.Port > 65535 {
		return nil, invalidf("port %d is out of range 1-65535", in.Port)
	}
	if len(in.Tags) > MaxTags {
		return nil, invalidf("%d tags; the limit is %d", len(in.Tags), MaxTags)
	}
	for _, t := range in.Tags {
		if t == "" || len(t) > MaxTagLen {
			return nil, invalidf("tag %q must be 1-%d bytes", truncate(t), MaxTagLen)
		}
	}
	if len(in.Metadata) > MaxMetadataKeys {
		return nil, invalidf("%d metadata keys; the limit is %d", len(in.Metadata), MaxMetadataKeys)
	}
	total := 0
	for key, v := range in.Metadata {
		if len(key) > MaxMetadataKey || !metaKey.MatchString(key) {
			return nil, invalidf("metadata key %q must be 1-%d characters of A-Z a-z 0-9 . _ / -", truncate(key), MaxMetadataKey)
		}
		if len(v) > MaxMetadataValue {
			return nil, invalidf("metadata value of %q is %d bytes; the limit is %d", key, len(v), MaxMetadataValue)
		}
		total += len(key) + len(v)
	}
	if total > MaxMetadataBytes {
		return nil, invalidf("metadata is %d bytes; the limit is %d", total, MaxMetadataBytes)
	}
	weight := in.Weight
	if weight == 0 {
		weight = DefaultWeight
	}
	if weight > MaxWeight {
		return nil, invalidf("weight %d is out of range 1-%d", weight, MaxWeight)
	}
	if in.Zone != "" && !dnsLabel.MatchString(in.Zone) {
		return nil, invalidf("zone %q must be a lowercase DNS label", truncate(in.Zone))
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
		if out.TTL < MinTTL || out.TTL > MaxTTL {
			return nil, invalidf("ttl %s is out of range %s-%s", out.TTL, MinTTL, MaxTTL)
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
		if err := in.DeregisterCriticalAfter.CheckValid(); err != nil || d < 0 || d > MaxCriticalAfter {
			return nil, invalidf("deregister_critical_after must be 0-%s", MaxCriticalAfter)
		}
		if d > 0 && out.TTL == 0 && out.Check() == nil {
			return nil, invalidf("deregister_critical_after needs a ttl or a check")
		}
		out.SetDeregisterCriticalAfter(d)
	}
	return out, nil
}

func validateCheck(c *rosterv1.HealthCheck) (*store.Check, error) {
	out := &store.Check{GRPCService: c.GrpcService}
	switch t := c.Target.(type) {
	case *rosterv1.HealthCheck_Http:
		u, err := url.Parse(t.Http)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, invalidf("http check %q must be an http:// or https:// URL", truncate(t.Http))
		}
		out.HTTP = t.Http
	case *rosterv1.HealthCheck_Tcp:
		if err := validateHostPort("tcp check", t.Tcp); err != nil {
			return nil, err
		}
		out.TCP = t.Tcp
	case *rosterv1.HealthCheck_Grpc:
		if err := validateHostPort("grpc check", t.Grpc); err != nil {
			return nil, err
		}
		out.GRPC = t.Grpc
	default:
		return nil, invalidf("a check needs one of http, tcp or grpc")
	}
	out.Interval = 10 * time.Second
	if c.Interval != nil {
		out.Interval = c.Interval.AsDuration()
	}
	if out.Interval < MinCheckInterval || out.Interval > MaxCheckInterval {
		return nil, invalidf("check interval %s is out of range %s-%s", out.Interval, MinCheckInterval, MaxCheckInterval)
	}
	out.Timeout = min(5*time.Second, out.Interval)
	if c.Timeout != nil {
		out.Timeout = c.Timeout.AsDuration()
	}
	if out.Timeout <= 0 || out.Timeout > out.Interval {
		return nil, invalidf("check timeout %s must be positive and at most the interval %s", out.Timeout, out.Interval)
	}
	out.FailuresBeforeCritical = max(1, c.FailuresBeforeCritical)
	out.SuccessesBeforePassing = max(1, c.SuccessesBeforePassing)
	if out.FailuresBeforeCritical > MaxThreshold || out.SuccessesBeforePassing > MaxThreshold {
		return nil, invalidf("check thresholds must be 1-%d", MaxThreshold)
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

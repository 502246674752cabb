package store

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"time"
)

// Limits on what an instance may hold. Every API checks a registration
// against them (rpc validates through this file), and a restored backup's
// instances are checked the same way. The metadata limits are Consul's (64
// pairs, 128-byte keys, 512-byte values), so a registration Consul accepts
// fits here too.
const (
	MaxIDLen         = 128
	MaxAddressLen    = 253
	MaxTags          = 64
	MaxTagLen        = 128
	MaxMetadataKeys  = 64
	MaxMetadataKey   = 128
	MaxMetadataValue = 512
	MaxMetadataBytes = 16 << 10
	MaxWeight        = 10000
	MinTTL           = time.Second
	MaxTTL           = 24 * time.Hour
	MinCheckInterval = time.Second
	MaxCheckInterval = 24 * time.Hour
	MaxThreshold     = 100
	MaxCriticalAfter = 30 * 24 * time.Hour
)

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	idChars  = regexp.MustCompile(`^[A-Za-z0-9._:@-]+$`)
	metaKey  = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	hostname = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)
)

// CheckNamespace says what is wrong with a namespace name, if anything.
func CheckNamespace(ns string) error {
	if !dnsLabel.MatchString(ns) {
		return fmt.Errorf("namespace %q must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)", truncate(ns))
	}
	return nil
}

// CheckService says what is wrong with a service name, if anything.
func CheckService(svc string) error {
	if svc == "" {
		return fmt.Errorf("service name is required")
	}
	if !dnsLabel.MatchString(svc) {
		return fmt.Errorf("service %q must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)", truncate(svc))
	}
	return nil
}

// CheckID says what is wrong with an instance id (or a node id), if
// anything; what names the kind of id.
func CheckID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%s is required", what)
	}
	if len(id) > MaxIDLen || !idChars.MatchString(id) {
		return fmt.Errorf("%s %q must be 1-%d characters of A-Z a-z 0-9 . _ : @ -", what, truncate(id), MaxIDLen)
	}
	return nil
}

// CheckHost says what is wrong with a host (an IP address or a host name).
func CheckHost(what, host string) error {
	if host == "" || len(host) > MaxAddressLen {
		return fmt.Errorf("%s host must be 1-%d characters", what, MaxAddressLen)
	}
	if net.ParseIP(host) == nil && !hostname.MatchString(host) {
		return fmt.Errorf("%s %q is neither an IP address nor a host name", what, truncate(host))
	}
	return nil
}

// CheckHostPort says what is wrong with a HOST:PORT address.
func CheckHostPort(what, hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("%s %q must be HOST:PORT", what, truncate(hp))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%s %q: port must be 1-65535", what, truncate(hp))
	}
	return CheckHost(what, host)
}

// CheckPort says what is wrong with a port number.
func CheckPort(port uint32) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("port %d is out of range 1-65535", port)
	}
	return nil
}

// CheckWeight says what is wrong with a weight.
func CheckWeight(weight uint32) error {
	if weight < 1 || weight > MaxWeight {
		return fmt.Errorf("weight %d is out of range 1-%d", weight, MaxWeight)
	}
	return nil
}

// CheckLabels says what is wrong with an instance's tags, metadata or zone.
func CheckLabels(tags []string, metadata map[string]string, zone string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("%d tags; the limit is %d", len(tags), MaxTags)
	}
	for _, t := range tags {
		if t == "" || len(t) > MaxTagLen {
			return fmt.Errorf("tag %q must be 1-%d bytes", truncate(t), MaxTagLen)
		}
	}
	if len(metadata) > MaxMetadataKeys {
		return fmt.Errorf("%d metadata keys; the limit is %d", len(metadata), MaxMetadataKeys)
	}
	total := 0
	for key, v := range metadata {
		if len(key) > MaxMetadataKey || !metaKey.MatchString(key) {
			return fmt.Errorf("metadata key %q must be 1-%d characters of A-Z a-z 0-9 . _ / -", truncate(key), MaxMetadataKey)
		}
		if len(v) > MaxMetadataValue {
			return fmt.Errorf("metadata value of %q is %d bytes; the limit is %d", key, len(v), MaxMetadataValue)
		}
		total += len(key) + len(v)
	}
	if total > MaxMetadataBytes {
		return fmt.Errorf("metadata is %d bytes; the limit is %d", total, MaxMetadataBytes)
	}
	if zone != "" && !dnsLabel.MatchString(zone) {
		return fmt.Errorf("zone %q must be a lowercase DNS label", truncate(zone))
	}
	return nil
}

// CheckTTL says what is wrong with a lease's TTL; 0 is no lease.
func CheckTTL(ttl time.Duration) error {
	if ttl != 0 && (ttl < MinTTL || ttl > MaxTTL) {
		return fmt.Errorf("ttl %s is out of range %s-%s", ttl, MinTTL, MaxTTL)
	}
	return nil
}

// CheckCheck says what is wrong with a health check, its defaults applied.
func CheckCheck(c *Check) error {
	targets := 0
	if c.HTTP != "" {
		targets++
		u, err := url.Parse(c.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("http check %q must be an http:// or https:// URL", truncate(c.HTTP))
		}
	}
	if c.TCP != "" {
		targets++
		if err := CheckHostPort("tcp check", c.TCP); err != nil {
			return err
		}
	}
	if c.GRPC != "" {
		targets++
		if err := CheckHostPort("grpc check", c.GRPC); err != nil {
			return err
		}
	}
	if targets != 1 {
		return fmt.Errorf("a check needs one of http, tcp or grpc")
	}
	if c.Interval < MinCheckInterval || c.Interval > MaxCheckInterval {
		return fmt.Errorf("check interval %s is out of range %s-%s", c.Interval, MinCheckInterval, MaxCheckInterval)
	}
	if c.Timeout <= 0 || c.Timeout > c.Interval {
		return fmt.Errorf("check timeout %s must be positive and at most the interval %s", c.Timeout, c.Interval)
	}
	if c.FailuresBeforeCritical < 1 || c.SuccessesBeforePassing < 1 ||
		c.FailuresBeforeCritical > MaxThreshold || c.SuccessesBeforePassing > MaxThreshold {
		return fmt.Errorf("check thresholds must be 1-%d", MaxThreshold)
	}
	return nil
}

// CheckDeregisterCriticalAfter says what is wrong with a deregistration
// delay for an instance with the given TTL and check.
func CheckDeregisterCriticalAfter(d, ttl time.Duration, check *Check) error {
	if d < 0 || d > MaxCriticalAfter {
		return fmt.Errorf("deregister_critical_after must be 0-%s", MaxCriticalAfter)
	}
	if d > 0 && ttl == 0 && check == nil {
		return fmt.Errorf("deregister_critical_after needs a ttl or a check")
	}
	return nil
}

// CheckInstance says what is wrong with an instance, by the rules every
// API applies to a registration (its defaults applied), if anything.
func CheckInstance(i *Instance) error {
	if err := CheckNamespace(i.Namespace); err != nil {
		return err
	}
	if err := CheckService(i.Service); err != nil {
		return err
	}
	if err := CheckID("instance id", i.ID); err != nil {
		return err
	}
	if err := CheckHost("address", i.Address); err != nil {
		return err
	}
	if err := CheckPort(uint32(i.Port)); err != nil {
		return err
	}
	if err := CheckLabels(i.Tags(), i.Metadata(), i.Zone()); err != nil {
		return err
	}
	if err := CheckWeight(uint32(i.Weight)); err != nil {
		return err
	}
	if err := CheckTTL(i.TTL); err != nil {
		return err
	}
	if c := i.Check(); c != nil {
		if err := CheckCheck(c); err != nil {
			return err
		}
	}
	return CheckDeregisterCriticalAfter(i.DeregisterCriticalAfter(), i.TTL, i.Check())
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

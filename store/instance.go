// Package store is Roster's in-memory registration state: go-memdb tables of
// instances, services and cluster members, stamped with Raft indexes as
// revisions, plus the retained history of change events that watches read.
//
// Every write happens in a WriteTxn at one Raft index; every read goes
// through a View, an MVCC snapshot that also yields its revision. Stored
// objects are immutable: writers clone before they change anything.
package store

import (
	"maps"
	"slices"
	"time"
)

// DefaultNamespace is the namespace of instances registered without one.
const DefaultNamespace = "default"

// Health is an instance's health. Its values equal roster.v1.HealthStatus.
type Health int8

// Health values.
const (
	HealthUnspecified Health = 0
	HealthPassing     Health = 1
	HealthWarning     Health = 2
	HealthCritical    Health = 3
)

// HealthOf returns the health with wire value v (a roster.v1.HealthStatus),
// HealthUnspecified for a value that is none.
func HealthOf(v int32) Health {
	if v < int32(HealthUnspecified) || v > int32(HealthCritical) {
		return HealthUnspecified
	}
	return Health(v)
}

// String returns the lowercase name of h.
func (h Health) String() string {
	switch h {
	case HealthPassing:
		return "passing"
	case HealthWarning:
		return "warning"
	case HealthCritical:
		return "critical"
	default:
		return "unspecified"
	}
}

// Key identifies an instance.
type Key struct {
	Namespace string
	Service   string
	ID        string
}

// String returns namespace/service/id.
func (k Key) String() string { return k.Namespace + "/" + k.Service + "/" + k.ID }

// Check is an active health check definition.
type Check struct {
	HTTP                   string
	TCP                    string
	GRPC                   string
	GRPCService            string
	Interval               time.Duration
	Timeout                time.Duration
	FailuresBeforeCritical uint32
	SuccessesBeforePassing uint32
}

// Instance is one registered endpoint. Once stored it is never modified.
// A million of them may be held at once, so its fields are ordered and
// sized so that none is padded (a port fits 16 bits, a health 8), what
// instances of one service mostly hold alike (tags, metadata, zone) sits
// behind one pointer that stored instances share, and the fields few
// instances set (an active check, a deregistration delay, a maintenance
// reason, a hold mark) live behind another, read and set through methods:
// 128 bytes an instance instead of 192.
type Instance struct {
	Namespace string
	Service   string
	ID        string
	Address   string
	Port      uint16
	Status    Health
	Enabled   bool
	Weight    uint16 // 0-MaxWeight, checked by every API
	// reason is the status reason when it is one of the common ones
	// (statusReasons), else reasonOther with the text in rare. Read it
	// with StatusReason, set it with SetStatusReason.
	reason reasonCode
	// keyed says the store made the namespace, service and id point into
	// one array that is also the instance's index key (keyNames); the
	// index reads the key back from them instead of building it again.
	keyed bool

	// Labels are the instance's tags, metadata and zone; nil when it has
	// none. Read them with Tags(), Metadata() and Zone(). They are shared
	// by stored instances and never changed: replace them, never modify.
	Labels *Labels

	TTL time.Duration

	StatusChangedAt int64 // unix nanoseconds, stamped by the leader

	CreateRevision       uint64
	ModRevision          uint64
	RegistrationRevision uint64

	// rare holds the fields few instances set; nil when none is. Shared
	// between copies (modified) and never changed: a setter replaces it.
	rare *rareFields
}

// Labels are what an instance says about itself beyond where it is: its
// tags, its metadata and its zone. The instances of one service mostly
// hold equal ones, and stored instances share them (see sharer).
type Labels struct {
	Tags     []string
	Metadata map[string]string
	Zone     string
}

// NewLabels returns labels holding tags, metadata and zone, or nil when all
// three are empty. Empty tags and metadata are held as nil.
func NewLabels(tags []string, metadata map[string]string, zone string) *Labels {
	if len(tags) == 0 {
		tags = nil
	}
	if len(metadata) == 0 {
		metadata = nil
	}
	if tags == nil && metadata == nil && zone == "" {
		return nil
	}
	return &Labels{Tags: tags, Metadata: metadata, Zone: zone}
}

// Tags returns the instance's tags, nil when it has none. They are shared
// by copies of the instance: do not change them.
func (i *Instance) Tags() []string {
	if i.Labels == nil {
		return nil
	}
	return i.Labels.Tags
}

// Metadata returns the instance's metadata, nil when it has none. It is
// shared by copies of the instance: do not change it.
func (i *Instance) Metadata() map[string]string {
	if i.Labels == nil {
		return nil
	}
	return i.Labels.Metadata
}

// Zone returns the instance's zone, "" when it has none.
func (i *Instance) Zone() string {
	if i.Labels == nil {
		return ""
	}
	return i.Labels.Zone
}

// rareFields are an instance's seldom set fields.
type rareFields struct {
	check                   *Check
	deregisterCriticalAfter time.Duration
	maintenanceReason       string
	// statusReason is the status reason when it is none of the common
	// ones (reason is reasonOther).
	statusReason string
	// heldSince is when the leader began holding this lease's expiry by
	// self-preservation (unix nanoseconds, stamped by the leader); 0 when
	// it is not held.
	heldSince int64
}

// Status reasons that most instances show, held in a byte of the record
// instead of a string: every instance says one of them for most of its
// life, and a string header is 16 bytes.
const (
	// ReasonRegistered is the status reason of a new registration.
	ReasonRegistered = "registered"
	// ReasonLeaseExpired is the status reason of an instance whose TTL
	// lease expired.
	ReasonLeaseExpired = "ttl expired"
	// ReasonHeartbeatResumed is the status reason of an instance whose
	// heartbeats came back after its lease expired.
	ReasonHeartbeatResumed = "heartbeat resumed"
)

// reasonCode is an instance's status reason as a number: 0 none, the
// index in statusReasons plus one, or reasonOther.
type reasonCode uint8

const reasonOther reasonCode = 255

var statusReasons = [...]string{ReasonRegistered, ReasonLeaseExpired, ReasonHeartbeatResumed}

// StatusReason returns why the instance has its status ("registered",
// "ttl expired", a check's output...).
func (i *Instance) StatusReason() string {
	switch {
	case i.reason == 0:
		return ""
	case i.reason == reasonOther:
		if i.rare == nil {
			return ""
		}
		return i.rare.statusReason
	default:
		return statusReasons[i.reason-1]
	}
}

// SetStatusReason sets the status reason. A common one costs the record
// nothing; another is held with the seldom set fields.
func (i *Instance) SetStatusReason(reason string) {
	code := reasonOther
	switch reason {
	case "":
		code = 0
	default:
		for n, r := range statusReasons {
			if r == reason {
				code = reasonCode(n + 1)
			}
		}
	}
	i.reason = code
	if code == reasonOther {
		i.setRare(func(r *rareFields) { r.statusReason = reason })
	} else if i.rare != nil && i.rare.statusReason != "" {
		i.setRare(func(r *rareFields) { r.statusReason = "" })
	}
}

// Check returns the instance's active health check, nil when it has none.
// The check is shared by copies of the instance: do not change it.
func (i *Instance) Check() *Check {
	if i.rare == nil {
		return nil
	}
	return i.rare.check
}

// DeregisterCriticalAfter returns how long the instance may stay critical
// before it is removed; 0: never.
func (i *Instance) DeregisterCriticalAfter() time.Duration {
	if i.rare == nil {
		return 0
	}
	return i.rare.deregisterCriticalAfter
}

// MaintenanceReason returns why the instance is drained, "" when it is not
// or no reason was given.
func (i *Instance) MaintenanceReason() string {
	if i.rare == nil {
		return ""
	}
	return i.rare.maintenanceReason
}

// HeldSince returns when the leader began holding this lease's expiry by
// self-preservation (unix nanoseconds); 0 when it is not held.
func (i *Instance) HeldSince() int64 {
	if i.rare == nil {
		return 0
	}
	return i.rare.heldSince
}

// SetCheck sets the active health check. Like every setter, it is for an
// instance not yet stored.
func (i *Instance) SetCheck(c *Check) { i.setRare(func(r *rareFields) { r.check = c }) }

// SetDeregisterCriticalAfter sets how long the instance may stay critical.
func (i *Instance) SetDeregisterCriticalAfter(d time.Duration) {
	i.setRare(func(r *rareFields) { r.deregisterCriticalAfter = d })
}

// SetMaintenanceReason sets why the instance is drained.
func (i *Instance) SetMaintenanceReason(reason string) {
	i.setRare(func(r *rareFields) { r.maintenanceReason = reason })
}

// SetHeldSince sets the hold mark (unix nanoseconds; 0 clears it).
func (i *Instance) SetHeldSince(ns int64) { i.setRare(func(r *rareFields) { r.heldSince = ns }) }

// setRare changes a copy of the rare fields, never the shared ones, and
// keeps nil when none is set.
func (i *Instance) setRare(change func(*rareFields)) {
	var r rareFields
	if i.rare != nil {
		r = *i.rare
	}
	change(&r)
	if r == (rareFields{}) {
		i.rare = nil
		return
	}
	if i.rare != nil && r == *i.rare {
		return
	}
	i.rare = &r
}

// Key returns the instance's key.
func (i *Instance) Key() Key { return Key{i.Namespace, i.Service, i.ID} }

// Healthy reports whether the instance should receive traffic: passing and
// not drained. A warning instance (an HTTP check answering 429, say) stays
// listed but is left out of healthy results, as Consul's passing filter does.
func (i *Instance) Healthy() bool {
	return i.Enabled && i.Status == HealthPassing
}

// Clone returns a deep copy that the caller may change.
func (i *Instance) Clone() *Instance {
	c := *i
	if i.Labels != nil {
		c.Labels = &Labels{Tags: slices.Clone(i.Labels.Tags), Metadata: maps.Clone(i.Labels.Metadata), Zone: i.Labels.Zone}
	}
	if i.rare != nil {
		r := *i.rare
		if r.check != nil {
			ck := *r.check
			r.check = &ck
		}
		c.rare = &r
	}
	return &c
}

// modified returns a copy of a stored instance for a writer to change its
// health, drain or hold state and revisions. It shares the labels and the
// seldom set fields with i: they are never modified once stored (the
// setters replace the seldom set fields, never change them).
func (i *Instance) modified() *Instance {
	c := *i
	return &c
}

// sameRegistration reports whether a and b describe the same registration:
// everything a client sets, ignoring health, drain state and revisions.
func sameRegistration(a, b *Instance) bool {
	return a.Namespace == b.Namespace && a.Service == b.Service && a.ID == b.ID &&
		a.Address == b.Address && a.Port == b.Port && sameLabels(a, b) && a.Weight == b.Weight &&
		a.TTL == b.TTL && sameCheck(a.Check(), b.Check()) &&
		a.DeregisterCriticalAfter() == b.DeregisterCriticalAfter()
}

// sameLabels reports whether a and b hold equal tags, metadata and zone.
func sameLabels(a, b *Instance) bool { return a.Labels.equal(b.Labels) }

// equal reports whether l and o hold equal tags, metadata and zone; no
// labels equal empty ones.
func (l *Labels) equal(o *Labels) bool {
	if l == o {
		return true
	}
	var a, b Labels
	if l != nil {
		a = *l
	}
	if o != nil {
		b = *o
	}
	return a.Zone == b.Zone && slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Metadata, b.Metadata)
}

func sameCheck(a, b *Check) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// Member is a node's entry in the replicated member table, so that any node
// can find any other node's API address.
type Member struct {
	NodeID   string
	RaftAddr string
	APIAddr  string
	// JoinedToVote: joined as a server that votes, so autopilot promotes it
	// while it is a non-voter; a non-voter without it is a read replica.
	JoinedToVote bool
}

// ServiceSummary counts the instances of one service.
type ServiceSummary struct {
	Namespace string
	Service   string
	Instances int
	// Passing counts the healthy instances (passing and enabled).
	Passing int
	// Warning and Critical count the instances with that status.
	Warning  int
	Critical int
	// Drained counts the instances in maintenance.
	Drained int
	// Tags is the sorted union of the instances' tags, with WithTags.
	Tags []string
	// IDs are the instances' ids in order, with WithInstanceIDs.
	IDs []string
}

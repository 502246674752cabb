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
type Health int32

// Health values.
const (
	HealthUnspecified Health = 0
	HealthPassing     Health = 1
	HealthWarning     Health = 2
	HealthCritical    Health = 3
)

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
// Its fields are ordered so that none is padded: a million of them are
// held at once.
type Instance struct {
	Namespace string
	Service   string
	ID        string
	Address   string
	Port      uint32
	Weight    uint32
	Tags      []string
	Metadata  map[string]string
	Zone      string

	TTL                     time.Duration
	Check                   *Check
	DeregisterCriticalAfter time.Duration

	Status            Health
	Enabled           bool
	StatusReason      string
	StatusChangedAt   int64 // unix nanoseconds, stamped by the leader
	MaintenanceReason string
	// HeldSince is when the leader began holding this lease's expiry by
	// self-preservation (unix nanoseconds, stamped by the leader); 0 when
	// it is not held.
	HeldSince int64

	CreateRevision       uint64
	ModRevision          uint64
	RegistrationRevision uint64
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
	c.Tags = slices.Clone(i.Tags)
	c.Metadata = maps.Clone(i.Metadata)
	if i.Check != nil {
		ck := *i.Check
		c.Check = &ck
	}
	return &c
}

// modified returns a copy of a stored instance for a writer to change its
// health, drain or hold state and revisions. It shares the tags, metadata
// and check with i: they are never modified once stored.
func (i *Instance) modified() *Instance {
	c := *i
	return &c
}

// sameRegistration reports whether a and b describe the same registration:
// everything a client sets, ignoring health, drain state and revisions.
func sameRegistration(a, b *Instance) bool {
	return a.Namespace == b.Namespace && a.Service == b.Service && a.ID == b.ID &&
		a.Address == b.Address && a.Port == b.Port && slices.Equal(a.Tags, b.Tags) &&
		maps.Equal(a.Metadata, b.Metadata) && a.Weight == b.Weight && a.Zone == b.Zone &&
		a.TTL == b.TTL && sameCheck(a.Check, b.Check) &&
		a.DeregisterCriticalAfter == b.DeregisterCriticalAfter
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
}

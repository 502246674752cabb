package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"

	"github.com/roster-registry/roster/fsm"
	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

// Lease and self-preservation defaults. They live here only: Config falls
// back to them and rosterd's flags show them as their defaults.
const (
	// DefaultLeaseTick is the lease timers' granularity.
	DefaultLeaseTick = 100 * time.Millisecond
	// DefaultSelfPreservationThreshold: more than half of a group's leases
	// expiring within the window trips self-preservation.
	DefaultSelfPreservationThreshold = 0.5
	// DefaultSelfPreservationWindow is the window "at once" means.
	DefaultSelfPreservationWindow = 10 * time.Second
	// DefaultSelfPreservationMinLeases: a group (all leases, or one
	// service's) of fewer leases never trips. Losing 2 of 3, or 4 of 9,
	// instances is far more often real crashes than a network cut, and
	// holding their expiry would route traffic to the dead.
	DefaultSelfPreservationMinLeases = 10
	// DefaultSelfPreservationMaxHold bounds a hold: long enough to ride out
	// a network incident that clients retry through (a switch or link
	// failover, a flapping zone), short enough that instances that are
	// truly gone stop receiving traffic within the time an operator is
	// paged and acts.
	DefaultSelfPreservationMaxHold = 15 * time.Minute

	// MinSelfPreservationMaxHold and MaxSelfPreservationMaxHold bound the
	// maximum hold an operator may set.
	MinSelfPreservationMaxHold = time.Second
	MaxSelfPreservationMaxHold = 24 * time.Hour
)

// ErrInvalidSelfPreservation: a self-preservation setting out of range.
var ErrInvalidSelfPreservation = errors.New("invalid self-preservation setting")

// SelfPreservationSettings are the self-preservation parameters in force:
// the operator's replicated settings over this node's configuration.
type SelfPreservationSettings struct {
	// Threshold is the share of a group's leases that may not expire
	// within Window; 0 means self-preservation is off.
	Threshold float64
	// Window is the window "at once" means.
	Window time.Duration
	// MinLeases: a group of fewer leases never trips.
	MinLeases int
	// MaxHold bounds how long one lease's expiry is held.
	MaxHold time.Duration
	// ServiceMinLeases overrides MinLeases for single services, keyed by
	// namespace/service.
	ServiceMinLeases map[string]int
}

// minLeases is the minimum group size of one service.
func (s SelfPreservationSettings) minLeases(sk serviceKey) int {
	if n, ok := s.ServiceMinLeases[sk.String()]; ok {
		return n
	}
	return s.MinLeases
}

// selfPreservationDefaults is what this node's configuration says.
func (c *Config) selfPreservationDefaults() SelfPreservationSettings {
	s := SelfPreservationSettings{
		Threshold: DefaultSelfPreservationThreshold,
		Window:    c.SelfPreservationWindow,
		MinLeases: c.SelfPreservationMinLeases,
		MaxHold:   c.SelfPreservationMaxHold,
	}
	if c.SelfPreservationThreshold != nil {
		s.Threshold = *c.SelfPreservationThreshold
	}
	return s
}

// overlay returns the defaults with the replicated settings over them.
func overlay(defaults SelfPreservationSettings, r store.SelfPreservationSettings) SelfPreservationSettings {
	s := defaults
	if r.Threshold != nil {
		s.Threshold = *r.Threshold
	}
	if r.MinLeases != nil {
		s.MinLeases = int(*r.MinLeases)
	}
	if r.MaxHold != nil {
		s.MaxHold = *r.MaxHold
	}
	s.ServiceMinLeases = maps.Clone(defaults.ServiceMinLeases)
	for svc, n := range r.ServiceMinLeases {
		if s.ServiceMinLeases == nil {
			s.ServiceMinLeases = map[string]int{}
		}
		s.ServiceMinLeases[svc] = int(n)
	}
	return s
}

// SelfPreservationChange changes the replicated settings. Fields left nil
// are kept; Reset first drops every setting, so each leader uses its own
// configuration again.
type SelfPreservationChange struct {
	Reset     bool
	Threshold *float64
	MinLeases *int
	MaxHold   *time.Duration
	// ServiceMinLeases sets per-service minimums keyed by
	// namespace/service; 0 removes a service's own minimum.
	ServiceMinLeases map[string]int
}

// IsZero reports whether the change changes nothing.
func (c SelfPreservationChange) IsZero() bool {
	return !c.Reset && c.Threshold == nil && c.MinLeases == nil && c.MaxHold == nil && len(c.ServiceMinLeases) == 0
}

// Validate checks the ranges: threshold 0 (off) to 1, minimums at least 1
// (0 only to remove a service's own), maximum hold 1s to 24h.
func (c SelfPreservationChange) Validate() error {
	if c.Threshold != nil {
		if err := checkThreshold(*c.Threshold); err != nil {
			return err
		}
	}
	if c.MinLeases != nil && (*c.MinLeases < 1 || *c.MinLeases > math.MaxUint32) {
		return fmt.Errorf("%w: min leases %d must be at least 1", ErrInvalidSelfPreservation, *c.MinLeases)
	}
	if c.MaxHold != nil {
		if err := checkMaxHold(*c.MaxHold); err != nil {
			return err
		}
	}
	for svc, n := range c.ServiceMinLeases {
		ns, name, ok := strings.Cut(svc, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("%w: service %q must be namespace/service", ErrInvalidSelfPreservation, svc)
		}
		if n < 0 || n > math.MaxUint32 {
			return fmt.Errorf("%w: min leases %d of %s must be at least 1 (0 removes it)", ErrInvalidSelfPreservation, n, svc)
		}
	}
	return nil
}

func checkThreshold(v float64) error {
	if math.IsNaN(v) || v < 0 || v > 1 {
		return fmt.Errorf("%w: threshold %v must be between 0 (off) and 1", ErrInvalidSelfPreservation, v)
	}
	return nil
}

func checkMaxHold(d time.Duration) error {
	if d < MinSelfPreservationMaxHold || d > MaxSelfPreservationMaxHold {
		return fmt.Errorf("%w: max hold %s must be between %s and %s", ErrInvalidSelfPreservation, d, MinSelfPreservationMaxHold, MaxSelfPreservationMaxHold)
	}
	return nil
}

// SelfPreservationSettings returns the settings in force, read from this
// node's own state: the same on every node that has applied the same index.
func (n *Node) SelfPreservationSettings() SelfPreservationSettings {
	return overlay(n.cfg.selfPreservationDefaults(), n.store.View().SelfPreservation())
}

// SetSelfPreservation commits a change of the self-preservation settings
// through Raft, so every later leader uses it, and returns the settings
// then in force. The leader's lease table picks the change up at its next
// tick.
func (n *Node) SetSelfPreservation(ctx context.Context, c SelfPreservationChange) (SelfPreservationSettings, error) {
	if err := c.Validate(); err != nil {
		return SelfPreservationSettings{}, err
	}
	set := &raftcmdv1.SelfPreservationSettings{Threshold: c.Threshold}
	if c.MinLeases != nil {
		v := uint32(*c.MinLeases)
		set.MinLeases = &v
	}
	if c.MaxHold != nil {
		v := int64(*c.MaxHold)
		set.MaxHoldNs = &v
	}
	for svc, v := range c.ServiceMinLeases {
		if set.ServiceMinLeases == nil {
			set.ServiceMinLeases = map[string]uint32{}
		}
		set.ServiceMinLeases[svc] = uint32(v)
	}
	_, err := n.propose(ctx, fsm.SelfPreservationType, &raftcmdv1.SelfPreservation{Change: &raftcmdv1.SelfPreservation_Settings{
		Settings: &raftcmdv1.SelfPreservationChange{Reset_: c.Reset, Set: set}}})
	if err != nil {
		return SelfPreservationSettings{}, err
	}
	n.logger.Info("self-preservation settings changed", "reset", c.Reset, "settings", fmt.Sprintf("%+v", n.SelfPreservationSettings()))
	return n.SelfPreservationSettings(), nil
}

// holdMark proposes a self-preservation hold mark (proposer).
func (n *Node) holdMark(ctx context.Context, k store.Key, regRev uint64, since time.Time, reason string) (uint64, error) {
	var ns int64
	if !since.IsZero() {
		ns = since.UnixNano()
	}
	return n.propose(ctx, fsm.SelfPreservationType, &raftcmdv1.SelfPreservation{Change: &raftcmdv1.SelfPreservation_Hold{
		Hold: &raftcmdv1.HoldMark{Namespace: k.Namespace, Service: k.Service, Id: k.ID, RegistrationRevision: regRev,
			HeldSinceUnixNs: ns, Reason: reason}}})
}

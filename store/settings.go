package store

import (
	"fmt"
	"maps"
	"time"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// SelfPreservationSettings are the operator's self-preservation settings,
// replicated so that every leader uses them. A nil field (an absent service)
// means the leader's own configuration applies. Once stored they are never
// modified.
type SelfPreservationSettings struct {
	// Threshold is the share of leases that may not expire within the
	// window; 0 turns self-preservation off.
	Threshold *float64
	// MinLeases: a group of fewer leases never trips.
	MinLeases *uint32
	// MaxHold bounds how long one lease's expiry is held.
	MaxHold *time.Duration
	// ServiceMinLeases overrides MinLeases for single services, keyed by
	// namespace/service.
	ServiceMinLeases map[string]uint32
}

// IsZero reports whether nothing is set.
func (s SelfPreservationSettings) IsZero() bool {
	return s.Threshold == nil && s.MinLeases == nil && s.MaxHold == nil && len(s.ServiceMinLeases) == 0
}

// clone returns a deep copy.
func (s SelfPreservationSettings) clone() SelfPreservationSettings {
	c := SelfPreservationSettings{ServiceMinLeases: maps.Clone(s.ServiceMinLeases)}
	if s.Threshold != nil {
		v := *s.Threshold
		c.Threshold = &v
	}
	if s.MinLeases != nil {
		v := *s.MinLeases
		c.MinLeases = &v
	}
	if s.MaxHold != nil {
		v := *s.MaxHold
		c.MaxHold = &v
	}
	return c
}

func (s SelfPreservationSettings) equal(o SelfPreservationSettings) bool {
	eqF := func(a, b *float64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
	eqU := func(a, b *uint32) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
	eqD := func(a, b *time.Duration) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
	return eqF(s.Threshold, o.Threshold) && eqU(s.MinLeases, o.MinLeases) && eqD(s.MaxHold, o.MaxHold) &&
		maps.Equal(s.ServiceMinLeases, o.ServiceMinLeases)
}

// SelfPreservationSettingsToRecord converts settings to their stored form.
func SelfPreservationSettingsToRecord(s SelfPreservationSettings) *raftcmdv1.SelfPreservationSettings {
	r := &raftcmdv1.SelfPreservationSettings{Threshold: s.Threshold, MinLeases: s.MinLeases,
		ServiceMinLeases: maps.Clone(s.ServiceMinLeases)}
	if s.MaxHold != nil {
		ns := int64(*s.MaxHold)
		r.MaxHoldNs = &ns
	}
	return r
}

// SelfPreservationSettingsFromRecord converts stored settings.
func SelfPreservationSettingsFromRecord(r *raftcmdv1.SelfPreservationSettings) SelfPreservationSettings {
	s := SelfPreservationSettings{Threshold: r.Threshold, MinLeases: r.MinLeases}
	if r.MaxHoldNs != nil {
		d := time.Duration(*r.MaxHoldNs)
		s.MaxHold = &d
	}
	if len(r.GetServiceMinLeases()) > 0 {
		s.ServiceMinLeases = maps.Clone(r.GetServiceMinLeases())
	}
	return s.clone()
}

// settingsRow holds the replicated settings in the settings table.
type settingsRow struct {
	Key              string
	SelfPreservation SelfPreservationSettings
}

const settingsKey = "self-preservation"

// SelfPreservation returns the replicated self-preservation settings; the
// zero value when none were ever set. The caller must not modify them.
func (v *View) SelfPreservation() SelfPreservationSettings {
	raw, err := v.txn.First(tableSettings, indexID, settingsKey)
	if err != nil || raw == nil {
		return SelfPreservationSettings{}
	}
	return raw.(*settingsRow).SelfPreservation
}

// ChangeSelfPreservation changes the replicated settings: reset clears them
// first, then every field set in set replaces the stored one, and a
// ServiceMinLeases entry of 0 removes that service's override. Like members,
// settings are not registry data: they change no revision and reach no
// watcher.
func (w *WriteTxn) ChangeSelfPreservation(reset bool, set SelfPreservationSettings) error {
	var cur SelfPreservationSettings
	raw, err := w.txn.First(tableSettings, indexID, settingsKey)
	if err != nil {
		return fmt.Errorf("get settings: %w", err)
	}
	if raw != nil && !reset {
		cur = raw.(*settingsRow).SelfPreservation
	}
	next := cur.clone()
	set = set.clone()
	if set.Threshold != nil {
		next.Threshold = set.Threshold
	}
	if set.MinLeases != nil {
		next.MinLeases = set.MinLeases
	}
	if set.MaxHold != nil {
		next.MaxHold = set.MaxHold
	}
	for svc, n := range set.ServiceMinLeases {
		if n == 0 {
			delete(next.ServiceMinLeases, svc)
			continue
		}
		if next.ServiceMinLeases == nil {
			next.ServiceMinLeases = map[string]uint32{}
		}
		next.ServiceMinLeases[svc] = n
	}
	if len(next.ServiceMinLeases) == 0 {
		next.ServiceMinLeases = nil
	}
	var prev SelfPreservationSettings
	if raw != nil {
		prev = raw.(*settingsRow).SelfPreservation
	}
	if raw != nil && next.equal(prev) || raw == nil && next.IsZero() {
		return nil
	}
	if next.IsZero() {
		if err := w.txn.Delete(tableSettings, raw); err != nil {
			return fmt.Errorf("clear settings: %w", err)
		}
	} else if err := w.txn.Insert(tableSettings, &settingsRow{Key: settingsKey, SelfPreservation: next}); err != nil {
		return fmt.Errorf("set settings: %w", err)
	}
	return nil
}

// SetHeld marks (since > 0) or unmarks (since 0) registration regRev of an
// instance as held by self-preservation, showing reason as its status
// reason. The status itself never changes, and a critical instance is left
// alone: holding its expiry keeps nothing healthy, and its reason (a failed
// check, say) says more.
func (w *WriteTxn) SetHeld(k Key, regRev uint64, since int64, reason string) (uint64, error) {
	prev, err := w.guarded(k, regRev)
	if err != nil {
		return 0, err
	}
	if prev.Status == HealthCritical || (since == 0 && prev.HeldSince() == 0) ||
		(prev.HeldSince() == since && prev.StatusReason() == reason) {
		return prev.ModRevision, nil
	}
	next := prev.modified()
	next.SetHeldSince(since)
	next.SetStatusReason(reason)
	next.ModRevision = w.index
	if err := w.put(prev, next); err != nil {
		return 0, err
	}
	return w.index, nil
}

// SelfPreservation restores the replicated settings.
func (r *Restorer) SelfPreservation(s SelfPreservationSettings) error {
	if s.IsZero() {
		return nil
	}
	if err := r.txn.Insert(tableSettings, &settingsRow{Key: settingsKey, SelfPreservation: s.clone()}); err != nil {
		return fmt.Errorf("restore settings: %w", err)
	}
	return nil
}

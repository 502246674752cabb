package fsm

import (
	"bytes"
	"io"
	"testing"
	"time"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

func spSettings(t testing.TB, reset bool, set *raftcmdv1.SelfPreservationSettings) []byte {
	return mustEncode(t, SelfPreservationType, &raftcmdv1.SelfPreservation{Change: &raftcmdv1.SelfPreservation_Settings{
		Settings: &raftcmdv1.SelfPreservationChange{Reset_: reset, Set: set}}})
}

func holdMark(t testing.TB, id string, regRev uint64, since int64, reason string) []byte {
	return mustEncode(t, SelfPreservationType, &raftcmdv1.SelfPreservation{Change: &raftcmdv1.SelfPreservation_Hold{
		Hold: &raftcmdv1.HoldMark{Namespace: "default", Service: "web", Id: id, RegistrationRevision: regRev, HeldSinceUnixNs: since, Reason: reason}}})
}

func ttlRegCmd(t testing.TB, id string) []byte {
	return mustEncode(t, RegisterType, &raftcmdv1.Register{
		Instance:  &raftcmdv1.Instance{Namespace: "default", Service: "web", Id: id, Address: "10.1.1.1", Port: 80, Weight: 100, TtlNs: int64(time.Second)},
		NowUnixNs: 1000,
	})
}

func ptr[T any](v T) *T { return &v }

// TestSelfPreservationCommands: settings merge as documented (fields set
// replace, a service minimum of 0 removes it, reset clears first) without
// changing the registry revision; hold marks change only the status
// reason, are guarded by the registration, and leave critical instances
// alone; a re-registration drops the mark.
func TestSelfPreservationCommands(t *testing.T) {
	f := newFSM()
	k := store.Key{Namespace: "default", Service: "web", ID: "a"}
	apply(f, 1, ttlRegCmd(t, "a"))
	apply(f, 2, spSettings(t, false, &raftcmdv1.SelfPreservationSettings{Threshold: ptr(0.0), ServiceMinLeases: map[string]uint32{"default/web": 4, "default/api": 7}}))
	apply(f, 3, spSettings(t, false, &raftcmdv1.SelfPreservationSettings{MinLeases: ptr(uint32(12)), MaxHoldNs: ptr(int64(time.Minute)), ServiceMinLeases: map[string]uint32{"default/api": 0}}))
	sp := f.Store().View().SelfPreservation()
	if sp.Threshold == nil || *sp.Threshold != 0 || sp.MinLeases == nil || *sp.MinLeases != 12 || sp.MaxHold == nil || *sp.MaxHold != time.Minute ||
		len(sp.ServiceMinLeases) != 1 || sp.ServiceMinLeases["default/web"] != 4 {
		t.Fatalf("settings after two changes: %+v", sp)
	}
	if rev := f.Store().Revision(); rev != 1 {
		t.Fatalf("settings changed the registry revision to %d", rev)
	}

	res := apply(f, 4, holdMark(t, "a", 1, 5000, "held")).(Result)
	if res.Err != nil || res.Revision != 4 {
		t.Fatalf("hold mark: %+v", res)
	}
	i, _ := f.Store().View().Instance(nil, k)
	if i.HeldSince() != 5000 || i.StatusReason() != "held" || i.Status != store.HealthPassing || i.StatusChangedAt != 1000 {
		t.Fatalf("held instance %+v", i)
	}
	if res := apply(f, 5, holdMark(t, "a", 99, 5000, "held")).(Result); res.Err == nil {
		t.Fatal("a hold mark for another registration applied")
	}
	apply(f, 6, holdMark(t, "a", 1, 0, "heartbeat resumed"))
	if i, _ := f.Store().View().Instance(nil, k); i.HeldSince() != 0 || i.StatusReason() != "heartbeat resumed" {
		t.Fatalf("released instance %+v", i)
	}
	apply(f, 7, holdMark(t, "a", 1, 6000, "held"))
	apply(f, 8, ttlRegCmd(t, "a"))
	if i, _ := f.Store().View().Instance(nil, k); i.HeldSince() != 0 || i.StatusReason() != "registered" {
		t.Fatalf("re-registered instance keeps the hold: %+v", i)
	}
	apply(f, 9, mustEncode(t, SetHealthType, &raftcmdv1.SetHealth{Namespace: "default", Service: "web", Id: "a", RegistrationRevision: 8, Status: int32(store.HealthCritical), Reason: "ttl expired", NowUnixNs: 9000}))
	if res := apply(f, 10, holdMark(t, "a", 8, 7000, "held")).(Result); res.Err != nil || res.Revision != 9 {
		t.Fatalf("hold mark on a critical instance: %+v", res)
	}

	apply(f, 11, spSettings(t, true, &raftcmdv1.SelfPreservationSettings{MinLeases: ptr(uint32(5))}))
	sp = f.Store().View().SelfPreservation()
	if sp.Threshold != nil || sp.MaxHold != nil || sp.MinLeases == nil || *sp.MinLeases != 5 || sp.ServiceMinLeases != nil {
		t.Fatalf("settings after reset: %+v", sp)
	}
	apply(f, 12, spSettings(t, true, nil))
	if sp := f.Store().View().SelfPreservation(); !sp.IsZero() {
		t.Fatalf("settings after a bare reset: %+v", sp)
	}
}

// TestSnapshotKeepsSelfPreservation: the settings (snapshot record 6) and
// hold marks survive a snapshot round trip, and take part in the state hash.
func TestSnapshotKeepsSelfPreservation(t *testing.T) {
	f := newFSM()
	apply(f, 1, ttlRegCmd(t, "a"))
	apply(f, 2, ttlRegCmd(t, "b"))
	bare := dump(t, f)
	apply(f, 3, spSettings(t, false, &raftcmdv1.SelfPreservationSettings{Threshold: ptr(0.25), MinLeases: ptr(uint32(3)),
		MaxHoldNs: ptr(int64(time.Hour)), ServiceMinLeases: map[string]uint32{"default/web": 2}}))
	if dump(t, f) == bare {
		t.Fatal("the state hash ignores the settings")
	}
	apply(f, 4, holdMark(t, "a", 1, 4242, "held since then"))

	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
		t.Fatal(err)
	}
	if a, b := dump(t, g), dump(t, f); a != b {
		t.Fatalf("restored state differs:\n got %s\nwant %s", a, b)
	}
	sp := g.Store().View().SelfPreservation()
	if sp.Threshold == nil || *sp.Threshold != 0.25 || sp.MinLeases == nil || *sp.MinLeases != 3 ||
		sp.MaxHold == nil || *sp.MaxHold != time.Hour || sp.ServiceMinLeases["default/web"] != 2 {
		t.Fatalf("restored settings %+v", sp)
	}
	i, _ := g.Store().View().Instance(nil, store.Key{Namespace: "default", Service: "web", ID: "a"})
	if i.HeldSince() != 4242 || i.StatusReason() != "held since then" {
		t.Fatalf("restored held instance %+v", i)
	}
	// A snapshot without settings restores none.
	h := newFSM()
	apply(h, 1, ttlRegCmd(t, "a"))
	k := newFSM()
	if err := k.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h)))); err != nil {
		t.Fatal(err)
	}
	if sp := k.Store().View().SelfPreservation(); !sp.IsZero() {
		t.Fatalf("settings from nowhere: %+v", sp)
	}
}

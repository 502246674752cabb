package cluster

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/roster-registry/roster/fsm"
	"github.com/roster-registry/roster/store"
)

// restoreBackup restores backup into the harness's store as
// Node.RestoreBackup does (above every revision used before), and re-syncs
// the lease table as the leader's followInstances does when it finds the
// history reset.
func (h *leaseHarness) restoreBackup(backup *bytes.Buffer) {
	h.t.Helper()
	var prepared bytes.Buffer
	const index = 1 << 20
	if _, err := fsm.PrepareRestore(backup, &prepared, func(uint64, uint64) uint64 { return index }, fsm.Kept{}); err != nil {
		h.t.Fatal(err)
	}
	if err := fsm.New(h.store, nil).Restore(io.NopCloser(&prepared)); err != nil {
		h.t.Fatal(err)
	}
	h.prop.mu.Lock()
	h.prop.index = index
	h.prop.mu.Unlock()
	if _, _, _, err := h.store.History().Since(h.followed, 1); !errors.Is(err, store.ErrCompacted) {
		h.t.Fatalf("the restore left the history in place: %v", err)
	}
	v := h.store.View()
	h.tbl.sync(v, v.Revision())
	h.tbl.caughtUp(v.Revision())
	h.followed = v.Revision()
}

func (h *leaseHarness) backup() *bytes.Buffer {
	h.t.Helper()
	var b bytes.Buffer
	if err := fsm.WriteSnapshot(&b, h.store.View()); err != nil {
		h.t.Fatal(err)
	}
	return &b
}

// TestLeaseOfARestoredOlderRegistration: a backup taken before an instance
// registered again is restored; the restored registration gets a lease of
// its own and expires once its process stops heartbeating. The live lease
// of the newer registration used to be kept, reaped as stale at its
// deadline, and the restored instance stayed passing for ever while its
// heartbeats answered NotFound.
func TestLeaseOfARestoredOlderRegistration(t *testing.T) {
	const ttl = 2 * time.Second
	h := newLeaseHarness(t, nil)
	h.register("web", "a", ttl, 0)
	backup := h.backup()
	h.register("web", "a", ttl, 0) // a newer registration, with its own lease
	h.keepAlive("web/a")
	h.until(3 * time.Second)

	h.restoreBackup(backup)
	if err := h.heartbeat("web", "a"); err != nil {
		t.Fatalf("a heartbeat of the restored registration: %v", err)
	}
	delete(h.alive, "web/a") // its process stops
	h.until(30 * time.Second)
	if got := h.state("web", "a"); got != "gone" {
		t.Fatalf("27 s after its last heartbeat (TTL %s) web/a is %s, want gone", ttl, got)
	}
}

// TestLeaseOfARestoredExpiredRegistration: a backup holding an instance
// critical for its expired lease is restored while the same registration
// is alive and heartbeating again; its next heartbeat revives it. The live
// lease used to be kept as it was, not expired, so heartbeats renewed it
// and the instance stayed critical.
func TestLeaseOfARestoredExpiredRegistration(t *testing.T) {
	const ttl = 2 * time.Second
	h := newLeaseHarness(t, nil)
	h.register("web", "a", ttl, time.Hour)
	h.until(5 * time.Second) // no heartbeats: the lease expires
	if got := h.state("web", "a"); got != "critical" {
		t.Fatalf("web/a is %s after its TTL, want critical", got)
	}
	backup := h.backup()
	if err := h.heartbeat("web", "a"); err != nil {
		t.Fatal(err)
	}
	if got := h.state("web", "a"); got != "passing" {
		t.Fatalf("web/a is %s after a heartbeat, want passing", got)
	}
	h.keepAlive("web/a")
	h.until(8 * time.Second)

	h.restoreBackup(backup)
	if got := h.state("web", "a"); got != "critical" {
		t.Fatalf("restored web/a is %s, want critical as in the backup", got)
	}
	h.until(12 * time.Second) // it goes on heartbeating
	if got := h.state("web", "a"); got != "passing" {
		t.Fatalf("web/a is %s after heartbeats since the restore, want passing", got)
	}
}

// TestLeaseOfARestoredPassingRegistrationWhoseLeaseExpired: a backup holds
// an instance passing; its process stops and the lease expires; the backup
// is restored. The restored instance expires again a TTL (plus the leader
// lease timeout) after the restore. The expired lease used to be kept as
// it was, and the instance stayed passing with no heartbeat behind it
// until deregister_critical_after reaped it.
func TestLeaseOfARestoredPassingRegistrationWhoseLeaseExpired(t *testing.T) {
	const ttl = 2 * time.Second
	h := newLeaseHarness(t, nil)
	h.register("web", "a", ttl, time.Hour)
	h.keepAlive("web/a")
	h.until(3 * time.Second)
	backup := h.backup()
	delete(h.alive, "web/a") // its process stops
	h.until(10 * time.Second)
	if got := h.state("web", "a"); got != "critical" {
		t.Fatalf("web/a is %s 7 s after its last heartbeat (TTL %s), want critical", got, ttl)
	}

	h.restoreBackup(backup)
	if got := h.state("web", "a"); got != "passing" {
		t.Fatalf("restored web/a is %s, want passing as in the backup", got)
	}
	h.until(10*time.Second + ttl + h.cfg.leaderLeaseTimeout() + h.cfg.LeaseTick)
	if got := h.state("web", "a"); got != "critical" {
		t.Fatalf("web/a is %s a TTL after the restore with no heartbeat since t=3s, want critical", got)
	}
	// A heartbeat revives it as it would any expired lease.
	if err := h.heartbeat("web", "a"); err != nil {
		t.Fatal(err)
	}
	if got := h.state("web", "a"); got != "passing" {
		t.Fatalf("web/a is %s after a heartbeat, want passing", got)
	}
}

// TestLeaseResyncFromBeforeItsExpiryKeepsItExpired: a re-sync (the history
// compacted) with a view read before the lease's expiry committed, which
// still shows the instance passing, leaves the lease expired, so the next
// heartbeat revives the instance. Given a fresh lease, its heartbeats would
// renew it and the instance would stay critical.
func TestLeaseResyncFromBeforeItsExpiryKeepsItExpired(t *testing.T) {
	const ttl = 2 * time.Second
	h := newLeaseHarness(t, nil)
	h.register("web", "a", ttl, time.Hour)
	stale := h.store.View()
	h.until(5 * time.Second) // no heartbeats: the lease expires
	if got := h.state("web", "a"); got != "critical" {
		t.Fatalf("web/a is %s after its TTL, want critical", got)
	}
	h.tbl.sync(stale, stale.Revision())
	if err := h.heartbeat("web", "a"); err != nil {
		t.Fatal(err)
	}
	if got := h.state("web", "a"); got != "passing" {
		t.Fatalf("web/a is %s after a heartbeat, want passing", got)
	}
}

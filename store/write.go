package store

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// WriteTxn is one write transaction at one Raft index. Every change it makes
// carries that index as its revision; all of them become visible, and reach
// watchers as one revision, at Commit. Operations that fail change nothing,
// so a failed operation never leaves the transaction half-applied.
type WriteTxn struct {
	s      *Store
	txn    *memdb.Txn
	index  uint64
	events []*Event
	// sharedNew are the services the sharer began remembering in this
	// transaction, forgotten again if it aborts.
	sharedNew [][2]string
	// stored are the request results of the state the transaction began
	// from, in pruning order (its metaRow.Requests); requestsDropped of
	// them, at the front, are forgotten by this transaction; requestsAdded are
	// remembered by it, the first addedDropped of them forgotten again and
	// the rest in pruning order; requestsByID finds those rest by id (the
	// store's txnRequests, empty at Begin).
	stored          []*RequestResult
	requestsDropped int
	requestsAdded   []*RequestResult
	addedDropped    int
	requestsByID    requestIndex
	// extinct: a service lost its last instance in this transaction.
	extinct bool
	// done: committed or aborted, the store's writer lock released.
	done bool
}

// Begin starts a write at a Raft index. The FSM is the only writer; another
// Begin waits until this transaction is committed or aborted.
func (s *Store) Begin(index uint64) *WriteTxn {
	s.writeMu.Lock()
	return &WriteTxn{s: s, txn: s.db.Load().Txn(true), index: index, stored: s.meta.Load().Requests, requestsByID: s.txnRequests}
}

// Abort drops the transaction; after Commit it does nothing.
func (w *WriteTxn) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.txn.Abort()
	w.requestsByID.clear()
	// A service first seen by this transaction may have no instance now.
	for _, k := range w.sharedNew {
		w.s.shared.forget(k[0], k[1])
	}
	w.s.writeMu.Unlock()
}

// Commit makes the changes visible together with the transaction's index as
// the store's applied index, and hands their events to the history as one
// revision. A transaction that changed nothing moves only the applied index.
func (w *WriteTxn) Commit() error {
	if w.done {
		return errors.New("commit: transaction already ended")
	}
	meta := *w.s.meta.Load()
	meta.Applied = w.index
	if len(w.events) > 0 {
		meta.Revision = w.index
	}
	if w.extinct {
		meta.Extinct = w.index
	}
	meta.Requests = w.commitRequests()
	w.s.publish(nil, w.txn.Commit, &meta)
	if len(w.events) > 0 {
		w.s.history.append(w.index, w.events)
	}
	// After publish: a reader waiting in awaitPublished holds the channel
	// this closes.
	w.s.notifyApplied()
	w.done = true
	w.s.writeMu.Unlock()
	return nil
}

func (w *WriteTxn) instance(k Key) (*Instance, error) {
	return w.lookup(k, k)
}

// instanceOf returns the stored instance with i's key, or nil.
func (w *WriteTxn) instanceOf(i *Instance) (*Instance, error) {
	return w.lookup(i, i.Key())
}

// lookup finds an instance by arg, a Key or an *Instance, whose key is k.
func (w *WriteTxn) lookup(arg any, k Key) (*Instance, error) {
	return instanceAt(w.txn, arg, k)
}

// put stores next (already stamped, its ModRevision the transaction's
// index) and records the event. Replacing an instance leaves its service
// row alone: the service's revision is read as the latest of the row's and
// its instances' (see serviceRevision), so only a new instance, which
// changes the count, rewrites the row.
func (w *WriteTxn) put(prev, next *Instance) error {
	if err := w.txn.Insert(tableInstances, next); err != nil {
		return fmt.Errorf("insert instance %s: %w", next.Key(), err)
	}
	if prev == nil {
		if err := w.touchService(next.Namespace, next.Service, 1); err != nil {
			return err
		}
	}
	w.addEvent(Event{Instance: next, Prev: prev})
	return nil
}

// firstEvent is a transaction's first event and the list it starts, made
// in one allocation: most transactions change one instance.
type firstEvent struct {
	event Event
	list  [1]*Event
}

// addEvent records an event of the transaction.
func (w *WriteTxn) addEvent(e Event) {
	if w.events == nil {
		f := &firstEvent{event: e}
		f.list[0] = &f.event
		w.events = f.list[:1:1]
		return
	}
	next := new(Event)
	*next = e
	w.events = append(w.events, next)
}

func (w *WriteTxn) remove(prev *Instance) error {
	if err := w.txn.Delete(tableInstances, prev); err != nil {
		return fmt.Errorf("delete instance %s: %w", prev.Key(), err)
	}
	if err := w.touchService(prev.Namespace, prev.Service, -1); err != nil {
		return err
	}
	w.addEvent(Event{Prev: prev})
	return nil
}

// touchService changes a service's instance count by delta and stamps the
// row with the transaction's index; a service left without instances loses
// its row.
func (w *WriteTxn) touchService(namespace, service string, delta int) error {
	raw, err := w.txn.First(tableServices, indexID, namespace, service)
	if err != nil {
		return fmt.Errorf("get service %s/%s: %w", namespace, service, err)
	}
	row := &serviceRow{Namespace: namespace, Service: service}
	if raw != nil {
		row.Count = raw.(*serviceRow).Count
	}
	row.Count += delta
	row.ModRevision = w.index
	if row.Count <= 0 {
		if raw != nil {
			if err := w.txn.Delete(tableServices, raw); err != nil {
				return fmt.Errorf("delete service %s/%s: %w", namespace, service, err)
			}
			w.extinct = true
		}
		w.s.shared.forget(namespace, service)
		return nil
	}
	if err := w.txn.Insert(tableServices, row); err != nil {
		return fmt.Errorf("update service %s/%s: %w", namespace, service, err)
	}
	return nil
}

// Register creates or replaces an instance from a registration, stamping its
// revisions and initial health, and returns the instance's mod revision.
//
// Health and drain state are server-owned: a new TTL instance starts passing
// (its client just spoke to us), a new checked instance starts critical until
// its first check passes, and a re-registration with an unchanged health
// definition keeps the current health. A TTL registration always starts a new
// lease, so an expiry meant for the previous one can never remove it. An
// identical re-registration without a TTL changes nothing and returns the
// existing revision.
func (w *WriteTxn) Register(reg *Instance, now int64) (uint64, error) {
	return w.register(reg, now, false)
}

// register is Register; owned says reg is the caller's to hand over (see
// RegisterOwnedWithin), so it is stamped and stored without a copy.
func (w *WriteTxn) register(reg *Instance, now int64, owned bool) (uint64, error) {
	prev, err := w.instanceOf(reg)
	if err != nil {
		return 0, err
	}
	next := reg
	if !owned {
		next = reg.Clone()
	}
	if w.s.shared.share(next) {
		w.sharedNew = append(w.sharedNew, [2]string{next.Namespace, next.Service})
	}
	next.ModRevision = w.index
	next.CreateRevision = w.index
	next.RegistrationRevision = w.index
	next.Enabled = true
	// A replaced instance stays drained, with its reason.
	drained := ""
	if prev != nil {
		drained = prev.MaintenanceReason()
	}
	next.SetMaintenanceReason(drained)
	next.Status, next.StatusChangedAt = initialHealth(next), now
	next.SetStatusReason(ReasonRegistered)
	if prev != nil {
		next.CreateRevision = prev.CreateRevision
		next.Enabled = prev.Enabled
		sameHealth := prev.TTL == next.TTL && sameCheck(prev.Check(), next.Check())
		if sameHealth && next.TTL == 0 {
			// An identical registration is a no-op (checked first: a
			// reason other than the common ones would cost the copy an
			// allocation only to be dropped, and agents re-register often).
			if sameRegistration(prev, next) {
				return prev.ModRevision, nil
			}
			next.RegistrationRevision = prev.RegistrationRevision
			next.Status, next.StatusChangedAt = prev.Status, prev.StatusChangedAt
			next.SetStatusReason(prev.StatusReason())
		}
		// A new registration starts a new lease, so a hold of the old one
		// does not carry over, nor does the reason that says so.
		if next.Status == prev.Status && prev.HeldSince() == 0 {
			next.StatusChangedAt = prev.StatusChangedAt
			next.SetStatusReason(prev.StatusReason())
		}
	}
	if err := w.put(prev, next); err != nil {
		return 0, err
	}
	return w.index, nil
}

func initialHealth(i *Instance) Health {
	if i.Check() != nil && i.TTL == 0 {
		return HealthCritical
	}
	return HealthPassing
}

// Deregister removes an instance; ErrNotFound if it is not registered.
func (w *WriteTxn) Deregister(k Key) (uint64, error) {
	prev, err := w.instance(k)
	if err != nil {
		return 0, err
	}
	if prev == nil {
		return 0, fmt.Errorf("deregister %s: %w", k, ErrNotFound)
	}
	if err := w.remove(prev); err != nil {
		return 0, err
	}
	return w.index, nil
}

// guarded returns the instance if it still has registration revision regRev.
func (w *WriteTxn) guarded(k Key, regRev uint64) (*Instance, error) {
	prev, err := w.instance(k)
	if err != nil {
		return nil, err
	}
	if prev == nil {
		return nil, fmt.Errorf("%s: %w", k, ErrNotFound)
	}
	if prev.RegistrationRevision != regRev {
		return nil, fmt.Errorf("%s has registration %d, command is for %d: %w",
			k, prev.RegistrationRevision, regRev, ErrStaleRegistration)
	}
	return prev, nil
}

// SetHealth records a health transition of registration regRev. It changes
// nothing when the status is already h, and returns ErrStaleRegistration when
// the instance was re-registered since.
func (w *WriteTxn) SetHealth(k Key, regRev uint64, h Health, reason string, now int64) (uint64, error) {
	prev, err := w.guarded(k, regRev)
	if err != nil {
		return 0, err
	}
	if prev.Status == h {
		return prev.ModRevision, nil
	}
	next := prev.modified()
	next.Status, next.StatusChangedAt = h, now
	next.SetStatusReason(reason)
	// A status change ends any self-preservation hold mark: the reason it
	// showed is replaced.
	next.SetHeldSince(0)
	next.ModRevision = w.index
	if err := w.put(prev, next); err != nil {
		return 0, err
	}
	return w.index, nil
}

// Reap removes registration regRev of an instance (its lease expired, or it
// stayed critical too long). A re-registered instance is never reaped.
func (w *WriteTxn) Reap(k Key, regRev uint64) (uint64, error) {
	prev, err := w.guarded(k, regRev)
	if err != nil {
		return 0, err
	}
	if err := w.remove(prev); err != nil {
		return 0, err
	}
	return w.index, nil
}

// SetMaintenance drains (enabled=false) or re-enables an instance.
func (w *WriteTxn) SetMaintenance(k Key, enabled bool, reason string) (uint64, error) {
	prev, err := w.instance(k)
	if err != nil {
		return 0, err
	}
	if prev == nil {
		return 0, fmt.Errorf("maintenance %s: %w", k, ErrNotFound)
	}
	if enabled {
		reason = ""
	}
	if prev.Enabled == enabled && prev.MaintenanceReason() == reason {
		return prev.ModRevision, nil
	}
	next := prev.modified()
	next.Enabled = enabled
	next.SetMaintenanceReason(reason)
	next.ModRevision = w.index
	if err := w.put(prev, next); err != nil {
		return 0, err
	}
	return w.index, nil
}

// UpsertMember records a node's addresses. Members are not registry data:
// they do not change the registry revision or reach watchers.
func (w *WriteTxn) UpsertMember(m *Member) error {
	raw, err := w.txn.First(tableMembers, indexID, m.NodeID)
	if err != nil {
		return fmt.Errorf("get member %s: %w", m.NodeID, err)
	}
	if raw != nil && *raw.(*Member) == *m {
		return nil
	}
	c := *m
	if err := w.txn.Insert(tableMembers, &c); err != nil {
		return fmt.Errorf("upsert member %s: %w", m.NodeID, err)
	}
	return nil
}

// RemoveMember forgets a node; removing an unknown node is a no-op.
func (w *WriteTxn) RemoveMember(nodeID string) error {
	raw, err := w.txn.First(tableMembers, indexID, nodeID)
	if err != nil {
		return fmt.Errorf("get member %s: %w", nodeID, err)
	}
	if raw == nil {
		return nil
	}
	if err := w.txn.Delete(tableMembers, raw); err != nil {
		return fmt.Errorf("remove member %s: %w", nodeID, err)
	}
	return nil
}

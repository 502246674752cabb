package store

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Sentinel errors returned by store writes and reads.
var (
	// ErrNotFound: the instance is not registered.
	ErrNotFound = errors.New("instance not found")
	// ErrStaleRegistration: a command about an older registration of an
	// instance that has since been re-registered or removed; it changes nothing.
	ErrStaleRegistration = errors.New("instance was re-registered since")
	// ErrRequestReused: a request id the store remembers came back with a
	// different request; it changes nothing.
	ErrRequestReused = errors.New("request id already used by a different request")
)

// Options bound the retained watch history and the remembered request
// results.
type Options struct {
	// HistoryEvents is how many change events are kept for watch resumes.
	HistoryEvents int
	// HistoryBytes bounds the estimated memory those events hold.
	HistoryBytes int
	// RequestResults is how many request results are remembered. Pruning
	// happens inside Apply, so every node of a cluster must use the same
	// value, or their states diverge.
	RequestResults int
	// RequestResultAge is how long, by the leader's stamps, a request result
	// is remembered. The same on every node, like RequestResults.
	RequestResultAge time.Duration
}

// DefaultOptions keeps 100,000 events or 64 MiB, whichever is reached
// first, and remembers the results of the last 100,000 requests of the last
// 10 minutes.
func DefaultOptions() Options {
	return Options{HistoryEvents: 100_000, HistoryBytes: 64 << 20,
		RequestResults: 100_000, RequestResultAge: 10 * time.Minute}
}

// Store is the registry state of one node. Writes come only from the FSM, one
// at a time; reads may come from any goroutine.
type Store struct {
	db atomic.Pointer[memdb.MemDB]
	// meta is the revision, applied index and extinct revision of the
	// state in db. It lives beside the database, not in a table of it (a
	// row rewritten by every write costs that write as much as the rest of
	// it), so a reader takes the two together by seq: odd while a commit or
	// restore publishes a new pair, moved again when both are in place.
	meta atomic.Pointer[metaRow]
	seq  atomic.Uint64
	// writeMu admits one writer at a time, from Begin to the end of Commit
	// or Abort, and Restore: meta is only written under it.
	writeMu sync.Mutex
	// published, when set (by tests), runs while a commit is publishing: its
	// database is in place, its meta not yet.
	published func()
	history   *History
	// requests bounds the remembered request results. In pruning order
	// they are the published state's metaRow.Requests; requestIDs finds
	// them by id (see requests.go). Only writers touch requestIDs, under
	// writeMu (WriteTxn.Commit and Restore replace it before releasing that
	// lock). txnRequests is the writer's map of its own transaction's
	// additions, reused from one transaction to the next.
	requests    requestBounds
	requestIDs  requestIndex
	txnRequests requestIndex
	// shared is what stored instances of each service share (see sharer);
	// only writers touch it, under writeMu.
	shared *sharer

	// abandonMu guards abandonCh, closed when Restore replaces the database
	// so that blocked readers re-run against the new one.
	abandonMu sync.Mutex
	abandonCh chan struct{}

	// appliedMu guards appliedCh, closed after every commit and restore so
	// that readers waiting for an applied index look again.
	appliedMu sync.Mutex
	appliedCh chan struct{}
}

// New returns an empty store.
func New(opts Options) *Store {
	s := &Store{shared: newSharer(), history: newHistory(opts), requests: newRequestBounds(opts), abandonCh: make(chan struct{}), appliedCh: make(chan struct{}),
		requestIDs: newRequestIndex(0), txnRequests: newRequestIndex(0)}
	s.db.Store(newDB())
	s.meta.Store(&metaRow{})
	return s
}

func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is a constant; an error here is a programming error.
		panic(fmt.Sprintf("store: invalid schema: %v", err))
	}
	return db
}

// History returns the retained change history that watches read.
func (s *Store) History() *History { return s.history }

// AbandonCh is closed when the store's contents are replaced wholesale by a
// snapshot restore; a blocked reader should then read again.
func (s *Store) AbandonCh() <-chan struct{} {
	s.abandonMu.Lock()
	defer s.abandonMu.Unlock()
	return s.abandonCh
}

// Applied returns the applied index of the current state and a channel
// closed when it next moves. The channel is taken before the index, so a
// caller that waits on it after finding the index too low misses no change.
func (s *Store) Applied() (uint64, <-chan struct{}) {
	s.appliedMu.Lock()
	ch := s.appliedCh
	s.appliedMu.Unlock()
	return s.View().Applied(), ch
}

func (s *Store) notifyApplied() {
	s.appliedMu.Lock()
	close(s.appliedCh)
	s.appliedCh = make(chan struct{})
	s.appliedMu.Unlock()
}

// View returns a consistent read-only snapshot of the store. It stays valid
// and unchanged however long it is held.
func (s *Store) View() *View {
	for {
		if v := s.tryView(); v != nil {
			return v
		}
		s.awaitPublished()
	}
}

// tryView returns a view whose database and meta belong together, or nil
// when a commit or restore was publishing a new pair meanwhile.
func (s *Store) tryView() *View {
	seq := s.seq.Load()
	if seq%2 == 1 {
		return nil
	}
	meta := s.meta.Load()
	txn := s.db.Load().Txn(false)
	if s.seq.Load() != seq {
		return nil
	}
	return &View{txn: txn, meta: *meta}
}

// awaitPublished returns once the commit or restore publishing now, if
// any, is done. A reader woken by a watch channel that commit closed gets
// here, and sees the commit's state once it returns, as it would have
// from the database alone.
func (s *Store) awaitPublished() {
	seq := s.seq.Load()
	if seq%2 == 0 {
		return
	}
	s.appliedMu.Lock()
	ch := s.appliedCh
	s.appliedMu.Unlock()
	// appliedCh is replaced only after seq is even again, so while seq is
	// unchanged, ch is the channel this commit closes.
	if s.seq.Load() == seq {
		<-ch
	}
}

// publish makes db and meta the store's state together. The caller holds
// writeMu.
func (s *Store) publish(db *memdb.MemDB, commit func(), meta *metaRow) {
	s.seq.Add(1)
	if db != nil {
		s.db.Store(db)
	}
	if commit != nil {
		commit()
	}
	if s.published != nil {
		s.published()
	}
	s.meta.Store(meta)
	s.seq.Add(1)
}

// Revision returns the revision of the latest committed change.
func (s *Store) Revision() uint64 { return s.View().Revision() }

// Restore replaces the whole state with what fill inserts, atomically: on an
// error the old state is untouched. Readers holding a View keep their
// snapshot; blocked readers are woken through AbandonCh; watchers learn
// through the history that everything up to the restored revision is gone.
func (s *Store) Restore(fill func(r *Restorer) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	db := newDB()
	r := &Restorer{txn: db.Txn(true), services: map[[2]string]*serviceRow{}, shared: newSharer()}
	defer r.txn.Abort()
	if err := fill(r); err != nil {
		return err
	}
	if err := r.finish(); err != nil {
		return err
	}
	order, byID, err := r.requestOrder()
	if err != nil {
		return err
	}
	r.txn.Commit()

	s.shared = r.shared
	s.publish(db, nil, &metaRow{Revision: r.revision, Applied: r.applied, Extinct: r.extinct, Requests: order})
	s.requestIDs = byID
	s.history.reset(r.revision)
	s.abandonMu.Lock()
	close(s.abandonCh)
	s.abandonCh = make(chan struct{})
	s.abandonMu.Unlock()
	s.notifyApplied()
	return nil
}

// Restorer fills a fresh store during Restore.
type Restorer struct {
	txn      *memdb.Txn
	revision uint64
	applied  uint64
	extinct  uint64
	services map[[2]string]*serviceRow
	// serviceRevs may arrive before or after the service's instances.
	serviceRevs map[[2]string]uint64
	requests    []*RequestResult
	shared      *sharer
}

// SetRevision sets the registry revision of the restored state.
func (r *Restorer) SetRevision(rev uint64) { r.revision = rev }

// SetExtinct sets the last revision at which a service lost its last
// instance (see View.Extinct).
func (r *Restorer) SetExtinct(rev uint64) { r.extinct = rev }

// SetApplied sets the applied index of the restored state.
func (r *Restorer) SetApplied(index uint64) { r.applied = index }

// Instance inserts one instance. inst becomes the store's: the caller must
// not use or change it afterwards (its parts may be replaced with equal ones
// that other instances hold).
func (r *Restorer) Instance(inst *Instance) error {
	if inst.Namespace == "" || inst.Service == "" || inst.ID == "" {
		return fmt.Errorf("restore: instance with empty key %q", inst.Key())
	}
	r.shared.share(inst)
	if err := r.txn.Insert(tableInstances, inst); err != nil {
		return fmt.Errorf("restore instance %s: %w", inst.Key(), err)
	}
	k := [2]string{inst.Namespace, inst.Service}
	row := r.services[k]
	if row == nil {
		row = &serviceRow{Namespace: inst.Namespace, Service: inst.Service}
		r.services[k] = row
	}
	row.Count++
	row.ModRevision = max(row.ModRevision, inst.ModRevision)
	return nil
}

// ServiceRevision records the last revision that changed a service, which may
// be later than any of its instances' (a deletion).
func (r *Restorer) ServiceRevision(namespace, service string, rev uint64) {
	if r.serviceRevs == nil {
		r.serviceRevs = map[[2]string]uint64{}
	}
	k := [2]string{namespace, service}
	r.serviceRevs[k] = max(r.serviceRevs[k], rev)
}

// Request inserts one remembered request result.
func (r *Restorer) Request(res *RequestResult) error {
	if res.hasEmptyID() {
		return errors.New("restore: request result without an id")
	}
	r.requests = append(r.requests, res)
	return nil
}

// Member inserts one member.
func (r *Restorer) Member(m *Member) error {
	if err := r.txn.Insert(tableMembers, m); err != nil {
		return fmt.Errorf("restore member %s: %w", m.NodeID, err)
	}
	return nil
}

func (r *Restorer) finish() error {
	for k, row := range r.services {
		// A service with no instances is not kept; its deletions are
		// covered by the registry revision.
		row.ModRevision = max(row.ModRevision, r.serviceRevs[k])
		if err := r.txn.Insert(tableServices, row); err != nil {
			return fmt.Errorf("restore service %s/%s: %w", row.Namespace, row.Service, err)
		}
	}
	return nil
}

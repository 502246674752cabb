package store

import (
	"errors"
	"sort"
	"sync"
)

// EventType says what a change did to an instance.
type EventType uint8

// Event types.
const (
	EventPut    EventType = 1
	EventDelete EventType = 2
)

// Event is one change to one instance at one revision. Events are shared by
// every reader of the history and never modified.
// An event is 16 bytes: the history keeps up to 100,000 of them by
// default, so its key is read from the instances it holds, not kept again,
// its type is whether it holds a new state (Type), and its revision is the
// Revision that groups it (every event of a transaction has the
// transaction's), not kept in each event again.
type Event struct {
	// Instance is the new state after a put; nil after a delete.
	Instance *Instance
	// Prev is the state before the change; nil when the key was new. A
	// delete always has it.
	Prev *Instance
}

// Type returns EventPut for an event with a new state, EventDelete for one
// without.
func (e *Event) Type() EventType {
	if e.Instance != nil {
		return EventPut
	}
	return EventDelete
}

// Key returns the key of the instance the event changed.
func (e *Event) Key() Key {
	if e.Instance != nil {
		return e.Instance.Key()
	}
	return e.Prev.Key()
}

// Revision groups the events of one revision; they are never split.
type Revision struct {
	Revision uint64
	Events   []*Event
}

// ErrCompacted: the events after the requested revision are no longer retained.
var ErrCompacted = errors.New("revision compacted")

// History is the bounded, in-memory log of recent change events, shared by
// every watcher on this node. Watchers pull from it at their own pace, so a
// slow watcher costs no memory beyond the history's bound.
type History struct {
	maxEvents int
	maxBytes  int

	mu   sync.RWMutex
	revs []Revision
	// ends[i] is the number of events appended since the start up to and
	// including revs[i], so the events after any retained revision are
	// counted without a walk.
	ends      []uint64
	appended  uint64
	events    int
	bytes     int
	compacted uint64 // every change at or below this revision is gone
	restored  uint64 // the revision of the last reset (snapshot restore)
	head      uint64 // the latest revision appended
	notify    chan struct{}
}

func newHistory(opts Options) *History {
	if opts.HistoryEvents <= 0 {
		opts.HistoryEvents = DefaultOptions().HistoryEvents
	}
	if opts.HistoryBytes <= 0 {
		opts.HistoryBytes = DefaultOptions().HistoryBytes
	}
	return &History{maxEvents: opts.HistoryEvents, maxBytes: opts.HistoryBytes, notify: make(chan struct{})}
}

// eventSize estimates the memory one event keeps alive in the history.
func eventSize(e *Event) int {
	n := 160
	for _, inst := range []*Instance{e.Instance, e.Prev} {
		if inst == nil {
			continue
		}
		n += 200 + len(inst.Address) + len(inst.Zone()) + len(inst.ID) + len(inst.Service)
		for _, t := range inst.Tags() {
			n += len(t) + 16
		}
		for k, v := range inst.Metadata() {
			n += len(k) + len(v) + 32
		}
	}
	return n
}

func (h *History) append(rev uint64, evs []*Event) {
	size := 0
	for _, e := range evs {
		size += eventSize(e)
	}
	h.mu.Lock()
	h.revs = append(h.revs, Revision{Revision: rev, Events: evs})
	h.appended += uint64(len(evs))
	h.ends = append(h.ends, h.appended)
	h.events += len(evs)
	h.bytes += size
	h.head = rev
	h.trim()
	close(h.notify)
	h.notify = make(chan struct{})
	h.mu.Unlock()
}

// trim drops the oldest revisions until the history is within its bounds,
// always keeping the newest revision.
func (h *History) trim() {
	drop := 0
	for drop < len(h.revs)-1 && (h.events > h.maxEvents || h.bytes > h.maxBytes) {
		r := h.revs[drop]
		h.events -= len(r.Events)
		for _, e := range r.Events {
			h.bytes -= eventSize(e)
		}
		h.compacted = r.Revision
		drop++
	}
	if drop == 0 {
		return
	}
	clear(h.revs[:drop])
	h.revs = h.revs[drop:]
	h.ends = h.ends[drop:]
	// Let go of the dropped prefix's backing array once it dominates.
	if cap(h.revs) > 2*len(h.revs)+64 {
		h.revs = append(make([]Revision, 0, len(h.revs)*2), h.revs...)
		h.ends = append(make([]uint64, 0, len(h.ends)*2), h.ends...)
	}
}

// reset forgets everything up to rev: the state was replaced by a snapshot.
func (h *History) reset(rev uint64) {
	h.mu.Lock()
	clear(h.revs)
	h.revs, h.ends = nil, nil
	h.events, h.bytes = 0, 0
	h.compacted = rev
	h.restored = rev
	h.head = rev
	close(h.notify)
	h.notify = make(chan struct{})
	h.mu.Unlock()
}

// Since returns up to max whole revisions after rev (at least one when any
// exists, however many events it has), the head revision, and a channel that
// is closed when more arrive. ErrCompacted means the changes right after rev
// are gone: read the current state instead.
func (h *History) Since(rev uint64, max int) ([]Revision, uint64, <-chan struct{}, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if rev < h.compacted {
		return nil, h.head, h.notify, ErrCompacted
	}
	i := sort.Search(len(h.revs), func(i int) bool { return h.revs[i].Revision > rev })
	j := i
	n := 0
	for j < len(h.revs) && (j == i || n+len(h.revs[j].Events) <= max) {
		n += len(h.revs[j].Events)
		j++
	}
	return h.revs[i:j:j], h.head, h.notify, nil
}

// Bounds returns the compacted revision (changes at or below it are gone)
// and the head revision.
func (h *History) Bounds() (compacted, head uint64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.compacted, h.head
}

// Head returns the head revision and a channel closed when a newer one
// arrives (or a restore resets the history).
func (h *History) Head() (uint64, <-chan struct{}) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.head, h.notify
}

// Behind returns how many retained events come after rev (how far a reader
// at rev lags the head) and a channel closed when more arrive.
// ErrCompacted means the changes right after rev are gone.
func (h *History) Behind(rev uint64) (int, <-chan struct{}, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if rev < h.compacted {
		return 0, h.notify, ErrCompacted
	}
	i := sort.Search(len(h.revs), func(i int) bool { return h.revs[i].Revision > rev })
	if i == len(h.revs) {
		return 0, h.notify, nil
	}
	before := h.ends[i] - uint64(len(h.revs[i].Events))
	return int(h.appended - before), h.notify, nil
}

// LastRestore returns the revision of the last snapshot restore, or 0: a
// reader below it lost its place to the restore, not to trimming.
func (h *History) LastRestore() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.restored
}

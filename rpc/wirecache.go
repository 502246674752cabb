package rpc

import (
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/roster-registry/roster/store"
)

// wireCache memoizes the wire encodings of history events, so that an
// event is encoded once however many watchers send it. An entry lives
// exactly as long as its event: it is keyed by a weak pointer, and removed
// when the event is collected, i.e. once the shared history has dropped it
// and no watcher holds it any more. The cache is therefore bounded by the
// history, as the events are, and store knows nothing about the wire.
type wireCache struct {
	m    sync.Map // weak.Pointer[store.Event] -> *eventWire
	size atomic.Int64
}

// eventWire is one event's encodings, each made once: with prev_instance
// (full), and without it for watchers that set omit_prev_instance (bare,
// made when one first asks).
type eventWire struct {
	full wireForms
	bare atomic.Pointer[wireForms]
}

// wireForms are the two ways a watcher may see one event.
type wireForms struct {
	// plain is the event as it happened.
	plain     []byte
	plainOnce sync.Once
	// asDelete is the event as a healthy-only watcher sees an instance
	// leaving the healthy set: a DELETE.
	asDelete     []byte
	asDeleteOnce sync.Once
}

// forms returns the encodings with prev_instance, or without it.
func (w *eventWire) forms(omitPrev bool) *wireForms {
	if !omitPrev {
		return &w.full
	}
	if f := w.bare.Load(); f != nil {
		return f
	}
	w.bare.CompareAndSwap(nil, &wireForms{})
	return w.bare.Load()
}

// entry returns e's encodings, creating an empty entry the first time.
func (c *wireCache) entry(e *store.Event) *eventWire {
	k := weak.Make(e)
	if v, ok := c.m.Load(k); ok {
		return v.(*eventWire)
	}
	v, loaded := c.m.LoadOrStore(k, &eventWire{})
	if !loaded {
		c.size.Add(1)
		runtime.AddCleanup(e, c.drop, k)
	}
	return v.(*eventWire)
}

func (c *wireCache) drop(k weak.Pointer[store.Event]) {
	if _, ok := c.m.LoadAndDelete(k); ok {
		c.size.Add(-1)
	}
}

// plainWire returns the plain encoding, made by enc the first time.
func (w *wireForms) plainWire(enc func() []byte) []byte {
	w.plainOnce.Do(func() { w.plain = enc() })
	return w.plain
}

// deleteWire returns the DELETE encoding, made by enc the first time.
func (w *wireForms) deleteWire(enc func() []byte) []byte {
	w.asDeleteOnce.Do(func() { w.asDelete = enc() })
	return w.asDelete
}

// Package gctune gives the Go garbage collector a floor of headroom.
//
// With Go's default (GOGC=100) the heap may grow to twice what is live
// before the next collection. A registry node's live heap is small next to
// the rate at which a write path allocates (tens of megabytes live, hundreds
// allocated per second under load), so with the default it collects many
// times a second and the collector takes a large share of the CPU. The cost
// of a collection grows with the live heap and their number with the
// allocation rate divided by the headroom, so the headroom is the lever.
//
// A Tuner sets GOGC after every collection so that the next one comes when
// the heap has grown by max(live heap, Headroom): a small heap gets Headroom
// to grow into (and few collections), a heap larger than Headroom gets Go's
// default, so the extra memory is bounded by Headroom however large the
// registry grows. A GOMEMLIMIT still applies on top.
package gctune

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// DefaultPercent is Go's GOGC default: the percentage the tuner never goes
// below.
const DefaultPercent = 100

// MinLive is the smallest live heap Percent assumes: Go's own minimum heap
// goal at GOGC=100. Before the first collection the runtime reports a live
// heap of 0, and a percentage computed from that would put the first
// collection off until memory runs out.
const MinLive = 4 << 20

// Percent returns the GOGC percentage that lets a heap with live bytes
// grow by max(live, headroom) before its next collection: 100 (Go's
// default) when live is at least headroom, more below it. A live heap
// under MinLive counts as MinLive, so the percentage is at most
// headroom/MinLive×100.
func Percent(live, headroom uint64) int {
	live = max(live, MinLive)
	if headroom <= live {
		return DefaultPercent
	}
	p := headroom / live * 100
	if r := headroom % live; r != 0 {
		p += r * 100 / live
	}
	const maxPercent = math.MaxInt32 / 2
	if p > maxPercent {
		return maxPercent
	}
	return max(int(p), DefaultPercent)
}

// Tuner adjusts GOGC after every collection. Start one per process.
type Tuner struct {
	headroom uint64
	prev     int
	last     atomic.Int64
	sample   []metrics.Sample
	// mu orders adjust and Stop; stopped is set by Stop.
	mu      sync.Mutex
	stopped atomic.Bool
}

// sentinel is garbage whose cleanup runs once per collection. It holds a
// pointer so it is never packed into a tiny-allocator block, whose cleanups
// may be delayed arbitrarily.
type sentinel struct {
	t   *Tuner
	pad [16]byte
}

// Start begins tuning for headroom bytes and returns the tuner; Stop
// restores the GOGC in force before. It sets GOGC once at once from the
// current live heap (the heap of a process that just started).
func Start(headroom uint64) *Tuner {
	t := &Tuner{
		headroom: headroom,
		sample:   []metrics.Sample{{Name: "/gc/heap/live:bytes"}},
	}
	// SetGCPercent is the one way to read GOGC that tells "off" (-1)
	// apart; setting it back at once leaves it as it was.
	t.prev = debug.SetGCPercent(DefaultPercent)
	debug.SetGCPercent(t.prev)
	t.adjust()
	t.arm()
	return t
}

// arm allocates a sentinel whose cleanup runs after the next collection
// finds it unreachable: it adjusts GOGC and arms the next one.
func (t *Tuner) arm() {
	s := &sentinel{t: t}
	runtime.AddCleanup(s, func(t *Tuner) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	}, t)
}

// adjust reads the live heap of the last collection and sets GOGC from it.
func (t *Tuner) adjust() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() {
		return
	}
	metrics.Read(t.sample)
	var live uint64
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	p := Percent(live, t.headroom)
	if int64(p) != t.last.Load() {
		debug.SetGCPercent(p)
		t.last.Store(int64(p))
	}
}

// Current returns the GOGC percentage the tuner last set.
func (t *Tuner) Current() int { return int(t.last.Load()) }

// Stop ends tuning and restores the GOGC in force when the tuner started.
func (t *Tuner) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(t.prev)
}

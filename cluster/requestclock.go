package cluster

import (
	"sync"
	"time"
)

// requestClock stamps the Request entries this node proposes while it
// leads. The stamp (Request.now_unix_ns) is read by the state machine for
// one thing only: to age the remembered request results (fsm applyRequest
// prunes those stamped more than RequestResultAge before it, and keeps the
// stamp as the result's Time). User-visible times travel in the wrapped
// commands' own now_unix_ns, stamped from the wall clock.
//
// So the stamp must not follow the leader's wall clock: a new leader whose
// clock ran more than RequestResultAge ahead of its predecessor's would
// forget, with its first request, every result remembered before the
// failover, and a retry across it would be applied a second time. Instead,
// once a leader is ready (its barrier applied every earlier entry), it takes
// as base the largest stamp among the results the state remembers, or its
// wall clock when it remembers none, and stamps base plus the monotonic time
// elapsed since. Stamps then move with real time within a term and never
// jump by the skew between two leaders' clocks; an election gap only makes
// results live that much longer, which is safe. Apply is unchanged, so
// nodes of older versions still apply the same entries alike.
type requestClock struct {
	clock clock

	mu sync.Mutex
	// running is true from the start of a term's readiness to its end.
	running bool
	// base is the term's first stamp, taken when the clock read at.
	base int64
	at   time.Time
	// last is the last stamp handed out: stamps never go down in a term,
	// even if the clock (a test's) does.
	last int64
	// changed is closed, and replaced, when the clock starts or stops.
	changed chan struct{}
}

func newRequestClock(clk clock) *requestClock {
	return &requestClock{clock: clk, changed: make(chan struct{})}
}

// start begins a term's stamps at latest, the largest stamp the state
// remembers (ok false when it remembers none: the wall clock then).
func (c *requestClock) start(latest int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.clock.Now()
	c.base = latest
	if !ok {
		c.base = c.at.UnixNano()
	}
	c.last, c.running = c.base, true
	close(c.changed)
	c.changed = make(chan struct{})
}

// stop ends the term's stamps. It wakes the writes waiting for the clock
// even when it never started (the term ended before its barrier went
// through): they find the node no longer leads and say nothing was applied,
// rather than wait out their contexts.
func (c *requestClock) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = false
	close(c.changed)
	c.changed = make(chan struct{})
}

// stamp returns the stamp for a request proposed now. While the clock is
// not running (the node does not lead, or its barrier is not through yet)
// it returns false and a channel closed when that changes.
func (c *requestClock) stamp() (int64, bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return 0, false, c.changed
	}
	// time.Time.Sub uses the monotonic readings the clock's times carry.
	c.last = max(c.last, c.base+int64(c.clock.Now().Sub(c.at)))
	return c.last, true, nil
}

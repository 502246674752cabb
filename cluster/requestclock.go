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
// failover, and a retry across it would be applied a second time. Instead
// the stamps of successive leaders form one chain, measured with monotonic
// clocks only. Every node notes in memory the largest stamp its state
// machine has applied (or restored) and when, by its own clock (applied).
// Once a leader is ready (its barrier applied every earlier entry), it takes
// as base that stamp plus the time elapsed since it applied it (never less
// than the largest stamp the state remembers), or its wall clock when the
// state remembers none, and stamps base plus the monotonic time elapsed
// since. A stamp is made before its entry is proposed, so before any node
// applies or restores it: the base is never ahead of what the leader that
// made it would stamp now, so results never age faster than real time, and
// stamps never jump by the skew between two leaders' clocks. What a
// failover loses is the delay with which the new leader applied the newest
// stamp: replication, or, on a node that restarted since, the time from
// that stamp to its restart (the snapshot and log it restores count as
// applied then); the time the whole cluster was down is lost too, and
// losses are never won back. The chain used to go on from the newest stamp
// itself and lost every idle gap before a failover. Apply is unchanged, so
// nodes of older versions still apply the same entries alike; a leader of
// an older version stamps its wall clock, which keeps results only while
// the chain stays within 10 minutes of real time (cluster/DESIGN.md).
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
	// newest is the largest stamp this node's state machine has applied
	// or restored, seen says there is one, and newestAt is when, by this
	// node's clock: in memory only, not replicated.
	newest   int64
	newestAt time.Time
	seen     bool
	// changed is closed, and replaced, when the clock starts or stops.
	changed chan struct{}
}

func newRequestClock(clk clock) *requestClock {
	return &requestClock{clock: clk, changed: make(chan struct{})}
}

// applied records that this node's state machine has just applied an entry
// carrying stamp, or restored a state whose largest stamp it is. Only a
// stamp larger than every earlier one counts.
func (c *requestClock) applied(stamp int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen && stamp <= c.newest {
		return
	}
	c.newest, c.newestAt, c.seen = stamp, c.clock.Now(), true
}

// start begins a term's stamps. latest is the largest stamp the state
// remembers (ok false when it remembers none: the wall clock then); the
// base goes on from the newest stamp this node applied by the time since it
// did, and never below latest.
func (c *requestClock) start(latest int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.clock.Now()
	switch {
	case !ok:
		c.base = c.at.UnixNano()
	case c.seen:
		c.base = max(latest, c.newest+int64(c.at.Sub(c.newestAt)))
	default:
		c.base = latest
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

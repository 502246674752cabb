package client

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/status"
)

// clock is the time source of the client's own timers: the discovery
// cache's (idle eviction, the hold of an empty update, the wait for the
// cluster before a persisted list is served, a list's age and staleness),
// the registrar's pause between attempts at registering a lost instance
// again, and the keepalive session's renewals and stall check. A client
// uses the real one; tests drive a fake one, so the timers are tested
// without waiting for them. (The pauses between a call's attempts and
// between a watch's streams stay on the real clock.)
type clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed, unless
	// the returned timer is stopped first.
	AfterFunc(d time.Duration, f func()) clockTimer
}

// clockTimer is the part of time.Timer the client uses.
type clockTimer interface {
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) clockTimer { return time.AfterFunc(d, f) }

// clk returns the client's clock: the real one unless a test has set one
// (options.discovery.clock).
func (c *Client) clk() clock {
	if c.opts.discovery.clock != nil {
		return c.opts.discovery.clock
	}
	return realClock{}
}

// after returns a channel closed once d has passed on clk (at once when d
// is not positive) and a func that stops the timer.
func after(clk clock, d time.Duration) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	if d <= 0 {
		close(ch)
		return ch, func() {}
	}
	t := clk.AfterFunc(d, func() { close(ch) })
	return ch, func() { t.Stop() }
}

// sleepOn waits d on clk, or until ctx ends or the client is closed.
func (c *Client) sleepOn(ctx context.Context, clk clock, d time.Duration) error {
	done, stop := after(clk, d)
	defer stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-c.closed:
		return ErrClosed
	}
}

// clockTicker sends the time on C every d on a clock until Stop. As
// time.Ticker, it drops ticks for a slow reader.
type clockTicker struct {
	C   <-chan time.Time
	c   chan time.Time
	clk clock
	d   time.Duration

	mu      sync.Mutex
	timer   clockTimer
	stopped bool
}

func newClockTicker(clk clock, d time.Duration) *clockTicker {
	t := &clockTicker{c: make(chan time.Time, 1), clk: clk, d: d}
	t.C = t.c
	t.mu.Lock()
	t.timer = clk.AfterFunc(d, t.tick)
	t.mu.Unlock()
	return t
}

func (t *clockTicker) tick() {
	select {
	case t.c <- t.clk.Now():
	default:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.timer = t.clk.AfterFunc(t.d, t.tick)
	}
}

// Stop turns the ticker off.
func (t *clockTicker) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	t.timer.Stop()
}

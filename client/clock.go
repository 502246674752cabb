package client

import "time"

// clock is the time source of the discovery cache's timers: idle eviction
// and the hold of an empty update (WithEmptyListGrace). A client uses the
// real one; tests drive a fake one, so the timers are tested without
// waiting for them.
type clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed, unless
	// the returned timer is stopped first.
	AfterFunc(d time.Duration, f func()) clockTimer
}

// clockTimer is the part of time.Timer the cache uses.
type clockTimer interface {
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) clockTimer { return time.AfterFunc(d, f) }

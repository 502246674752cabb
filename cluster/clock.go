package cluster

import (
	"context"
	"time"

	"github.com/roster-registry/roster/store"
)

// clock is the time source of the leader's lease and check duties. The node
// uses the real one; tests drive a fake one, so expiry, failover grace and
// self-preservation are tested in milliseconds rather than in TTLs.
type clock interface {
	Now() time.Time
	NewTicker(d time.Duration) clockTicker
	NewTimer(d time.Duration) clockTimer
}

// clockTicker is the part of time.Ticker the duties use.
type clockTicker interface {
	C() <-chan time.Time
	Stop()
}

// clockTimer is the part of time.Timer the duties use.
type clockTimer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTicker(d time.Duration) clockTicker { return realTicker{time.NewTicker(d)} }

func (realClock) NewTimer(d time.Duration) clockTimer { return realTimer{time.NewTimer(d)} }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

// proposer commits what the lease table and the check runner decide. It is
// all they may write: an expiry (a health change to critical, or a reap), a
// revival (a health change to passing), a check's transition, and a
// self-preservation hold mark. The node proposes through Raft; tests apply
// to a store directly.
type proposer interface {
	SetHealth(ctx context.Context, k store.Key, regRev uint64, h store.Health, reason string) (uint64, error)
	Reap(ctx context.Context, k store.Key, regRev uint64, reason string) (uint64, error)
	// holdMark marks registration regRev held since since, or no longer
	// held when since is zero, with reason as its status reason.
	holdMark(ctx context.Context, k store.Key, regRev uint64, since time.Time, reason string) (uint64, error)
}

package rpc

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Reasons of ResourceExhausted errors from limits.
const (
	// ReasonRateLimited: the client sent more calls than its rate limit
	// allows; retry after a pause. Nothing was done.
	ReasonRateLimited = "RATE_LIMITED"
	// ReasonInstanceLimit: a registration would exceed the instances per
	// service or per namespace. Nothing was stored.
	ReasonInstanceLimit = "INSTANCE_LIMIT"
	// ReasonWatcherLimit: the connection has as many watch streams open as
	// it may.
	ReasonWatcherLimit = "WATCHER_LIMIT"
)

// limitError is a call refused by a limit: ResourceExhausted with reason.
type limitError struct {
	msg    string
	reason string
	// retryAfter is how long until the bucket holds the tokens the call
	// asked for (0: not a rate limit); it reaches the client as RetryInfo
	// and an HTTP client as Retry-After.
	retryAfter time.Duration
}

func (e *limitError) Error() string { return e.msg }

func itoa(n int) string { return strconv.Itoa(n) }

// rateLimiter keeps two token buckets per client: one for writes, one for
// everything else. A refused call costs a map lookup and no Raft work, so a
// flooding client cannot slow the leader's heartbeats or other clients.
type rateLimiter struct {
	write, read bucketConfig
	now         func() time.Time

	mu      sync.Mutex
	clients map[string]*clientBuckets
	calls   int
}

type bucketConfig struct {
	rate  rate.Limit
	burst int
}

type clientBuckets struct {
	write, read *rate.Limiter
	last        time.Time
}

// sweepEvery is how many calls pass between sweeps of idle clients.
const sweepEvery = 4096

func bucket(r float64, burst int) bucketConfig {
	if r <= 0 {
		return bucketConfig{rate: rate.Inf}
	}
	if burst <= 0 {
		burst = max(1, int(r))
	}
	return bucketConfig{rate: rate.Limit(r), burst: burst}
}

// newRateLimiter returns nil when l sets no rate at all.
func newRateLimiter(l Limits) *rateLimiter {
	if l.Rate <= 0 && l.ReadRate <= 0 {
		return nil
	}
	return &rateLimiter{
		write: bucket(l.Rate, l.Burst), read: bucket(l.ReadRate, l.ReadBurst),
		now: time.Now, clients: map[string]*clientBuckets{},
	}
}

func (b bucketConfig) limiter() *rate.Limiter { return rate.NewLimiter(b.rate, b.burst) }

// idle is how long a bucket takes to refill: a client quiet for longer is
// forgotten, as a fresh bucket is the same as its own.
func (b bucketConfig) idle() time.Duration {
	if b.rate == rate.Inf {
		return 0
	}
	return time.Duration(float64(b.burst) / float64(b.rate) * float64(time.Second))
}

// allow takes a token from client's write or read bucket, or returns a
// limitError saying why not.
func (r *rateLimiter) allow(client string, write bool) error {
	return r.allowN(client, write, 1)
}

// allowN takes n tokens, or the whole burst when n is more, so that a
// batch larger than the burst still passes a full bucket.
func (r *rateLimiter) allowN(client string, write bool, n int) error {
	now := r.now()
	r.mu.Lock()
	c := r.clients[client]
	if c == nil {
		c = &clientBuckets{write: r.write.limiter(), read: r.read.limiter()}
		r.clients[client] = c
	}
	c.last = now
	if r.calls++; r.calls >= sweepEvery {
		r.calls = 0
		r.sweep(now)
	}
	r.mu.Unlock()
	b, cfg, what := c.read, r.read, "reads and heartbeats"
	if write {
		b, cfg, what = c.write, r.write, "writes"
	}
	need := min(n, cfg.burst)
	if b.AllowN(now, need) {
		return nil
	}
	return &limitError{
		msg: fmt.Sprintf("rate limit: client %s sent more than %g %s per second (burst %d); slow down and retry",
			client, float64(cfg.rate), what, cfg.burst),
		reason:     ReasonRateLimited,
		retryAfter: refillTime(float64(need)-b.TokensAt(now), cfg.rate),
	}
}

// refillTime is how long a bucket filling at r takes to gain missing
// tokens: at least a millisecond, so a refused call always says to wait,
// and at most a day (a rate set absurdly low would overflow a Duration).
func refillTime(missing float64, r rate.Limit) time.Duration {
	secs := missing / float64(r)
	if secs >= (24 * time.Hour).Seconds() {
		return 24 * time.Hour
	}
	return max(time.Duration(secs*float64(time.Second)), time.Millisecond)
}

// sweep forgets clients idle long enough for their buckets to be full.
func (r *rateLimiter) sweep(now time.Time) {
	idle := max(r.write.idle(), r.read.idle(), time.Minute)
	for k, c := range r.clients {
		if now.Sub(c.last) > idle {
			delete(r.clients, k)
		}
	}
}

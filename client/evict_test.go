package client

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/testdiscovery"
)

// fakeClock is a clock that moves only when a test advances it. A timer's
// function runs in Advance, on the test's goroutine, once its time is
// reached.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	f  func()
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) clockTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	n := len(t.c.timers)
	t.c.timers = slices.DeleteFunc(t.c.timers, func(o *fakeTimer) bool { return o == t })
	return len(t.c.timers) < n
}

// Advance moves the clock by d and runs the timers that came due, in the
// order they are due (a timer armed by one of them runs too when due).
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var due *fakeTimer
		for _, t := range c.timers {
			if !t.at.After(c.now) && (due == nil || t.at.Before(due.at)) {
				due = t
			}
		}
		if due == nil {
			c.mu.Unlock()
			return
		}
		c.timers = slices.DeleteFunc(c.timers, func(o *fakeTimer) bool { return o == due })
		c.mu.Unlock()
		due.f()
	}
}

// pending returns when the armed timers are due.
func (c *fakeClock) pending() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, t := range c.timers {
		out = append(out, t.at)
	}
	return out
}

const testIdle = time.Minute

// evictionSetup starts a fake server holding one instance of web and a
// client whose discovery cache runs on a fake clock, evicting after idle.
func evictionSetup(t *testing.T, idle time.Duration) (*fakeServer, *Client, *fakeClock) {
	t.Helper()
	st := newFakeState()
	st.appendRevisions(1, 1)
	f := startFake(t, st)
	clk := newFakeClock()
	c, err := New(context.Background(), []string{f.addr}, WithConnectTimeout(time.Second), WithRetryBackoff(time.Millisecond),
		WithCacheIdleTimeout(idle), func(o *options) { o.discovery.clock = clk })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return f, c, clk
}

// cached returns the cache entry of web in the default namespace, nil when
// there is none.
func cached(c *Client) *serviceCache {
	c.discovery.mu.Lock()
	defer c.discovery.mu.Unlock()
	return c.discovery.services[serviceKey{DefaultNamespace, "web"}]
}

func lookupWeb(t *testing.T, c *Client) {
	t.Helper()
	if err := tryLookupWeb(t, c); err != nil {
		t.Fatal(err)
	}
}

func tryLookupWeb(t *testing.T, c *Client) error {
	insts, err := c.Instances(testContext(t), "web", IncludeUnhealthy())
	if err != nil || len(insts) != 1 {
		return fmt.Errorf("lookup: %d instances, %v; want 1", len(insts), err)
	}
	return nil
}

// waitEvicted waits until e's watch has ended, here and on the server.
func waitEvicted(t *testing.T, f *fakeServer, e *serviceCache) {
	t.Helper()
	select {
	case <-e.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the evicted service's watch did not end")
	}
	testdiscovery.Eventually(t, "the server to see the watch end", 15*time.Second, func() bool {
		return f.openWatches() == 0
	})
}

// TestCacheEvictsIdleServices: a service that no subscription holds and no
// lookup has asked for during the idle timeout is dropped, its watch ended;
// the next lookup starts it again.
func TestCacheEvictsIdleServices(t *testing.T) {
	f, c, clk := evictionSetup(t, testIdle)

	lookupWeb(t, c)
	first := cached(c)
	clk.Advance(testIdle - time.Second)
	lookupWeb(t, c) // a lookup starts the idle period again
	clk.Advance(testIdle - time.Second)
	if cached(c) != first || f.openWatches() != 1 {
		t.Fatalf("service evicted %s after a lookup; the idle timeout is %s", testIdle-time.Second, testIdle)
	}
	clk.Advance(time.Second)
	if cached(c) != nil {
		t.Fatalf("service still cached after %s idle", testIdle)
	}
	waitEvicted(t, f, first)

	// A subscription holds the service for as long as it is open.
	sub, err := c.Subscribe("web")
	if err != nil {
		t.Fatal(err)
	}
	held := cached(c)
	if held == nil || held == first {
		t.Fatal("Subscribe after an eviction did not start the service again")
	}
	select {
	case <-sub.Changed():
	case <-time.After(15 * time.Second):
		t.Fatal("no list for the subscription")
	}
	clk.Advance(10 * testIdle)
	if cached(c) != held {
		t.Fatal("service evicted while a subscription holds it")
	}
	sub.Close()
	sub.Close() // a second Close releases nothing more
	clk.Advance(testIdle - time.Second)
	if cached(c) != held {
		t.Fatalf("service evicted %s after its subscription closed", testIdle-time.Second)
	}
	clk.Advance(time.Second)
	if cached(c) != nil {
		t.Fatal("service still cached after its subscription closed and the idle timeout passed")
	}
	waitEvicted(t, f, held)

	// A lookup starts it again, as the first one did.
	watches := f.count("Watch")
	lookupWeb(t, c)
	if cached(c) == nil || f.count("Watch") == watches {
		t.Fatal("a lookup after an eviction did not start the service's watch again")
	}
}

// TestCacheIdleTimeoutZeroKeepsServices: zero keeps every service for the
// life of the client.
func TestCacheIdleTimeoutZeroKeepsServices(t *testing.T) {
	_, c, clk := evictionSetup(t, 0)
	lookupWeb(t, c)
	clk.Advance(100 * testIdle)
	if cached(c) == nil {
		t.Fatal("service evicted with an idle timeout of zero")
	}
}

// TestCacheEvictionRacingAUseKeepsTheService forces the interleaving where
// a lookup or a Subscribe comes in after the idle timer has fired and
// before the eviction: the service must stay, with its watch, and not be
// handed out closed.
func TestCacheEvictionRacingAUseKeepsTheService(t *testing.T) {
	for _, use := range []string{"lookup", "subscribe"} {
		t.Run(use, func(t *testing.T) {
			f, c, clk := evictionSetup(t, testIdle)
			lookupWeb(t, c)
			e := cached(c)
			var sub *Subscription
			beforeExpire = func(fired *serviceCache) {
				beforeExpire = nil
				if fired != e {
					t.Errorf("timer of another service fired")
				}
				if use == "lookup" {
					lookupWeb(t, c)
					return
				}
				var err error
				if sub, err = c.Subscribe("web"); err != nil {
					t.Errorf("subscribe: %v", err)
				}
			}
			t.Cleanup(func() { beforeExpire = nil })
			clk.Advance(testIdle)
			if cached(c) != e {
				t.Fatal("service evicted though used after its idle timer fired")
			}
			select {
			case <-e.done:
				t.Fatal("the service's watch ended though it was used after its idle timer fired")
			default:
			}
			if sub != nil {
				if sub.e != e || sub.Err() != nil {
					t.Fatalf("subscription to a service being evicted: entry %p (cached %p), error %v", sub.e, e, sub.Err())
				}
				sub.Close()
			}
			// Idle from the racing use on, it goes in time.
			clk.Advance(testIdle)
			if cached(c) != nil {
				t.Fatal("service still cached a full idle timeout after its last use")
			}
			waitEvicted(t, f, e)
		})
	}
}

// TestCacheEvictionNeverHandsOutAClosedService: lookups and subscriptions
// racing evictions always get a live service.
func TestCacheEvictionNeverHandsOutAClosedService(t *testing.T) {
	f, c, clk := evictionSetup(t, testIdle)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		// Two workers a service: one's use races the other's eviction too.
		svc := fmt.Sprintf("web-%d", i%2)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				insts, err := c.Instances(testContext(t), svc, IncludeUnhealthy())
				if err != nil || len(insts) != 1 {
					t.Errorf("lookup: %d instances, %v; want 1", len(insts), err)
					return
				}
				sub, err := c.Subscribe(svc)
				if err != nil {
					t.Errorf("subscribe: %v", err)
					return
				}
				select {
				case <-sub.e.done:
					t.Error("Subscribe handed out an evicted service")
				default:
				}
				sub.Close()
				runtime.Gosched()
			}
		})
	}
	// Evictions until 20 watches have been started again.
	deadline := time.Now().Add(15 * time.Second)
	for f.count("Watch") < 22 && time.Now().Before(deadline) {
		clk.Advance(2 * testIdle)
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	if n := f.count("Watch"); n < 22 {
		t.Fatalf("%d watches started in 15s: too few evictions raced the lookups", n)
	}
}

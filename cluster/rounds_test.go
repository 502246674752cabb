package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRoundsNeverReuseARoundInFlight: callers that arrive while a round is
// running must not get its answer (it may predate their call); they all
// share the one round that starts after it.
func TestRoundsNeverReuseARoundInFlight(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Uint64
	r := NewRounds(func(context.Context) (uint64, error) {
		n := calls.Add(1)
		if n == 1 {
			<-release
		}
		return n, nil
	})
	ctx := context.Background()
	first := make(chan uint64, 1)
	go func() {
		v, _ := r.Do(ctx)
		first <- v
	}()
	poll(t, "the first round to start", func() bool { return calls.Load() == 1 })

	const late = 50
	results := make(chan uint64, late)
	var wg sync.WaitGroup
	for range late {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _ := r.Do(ctx)
			results <- v
		}()
	}
	poll(t, "every late caller to wait", func() bool { return r.Waiting() == late })
	close(release)
	wg.Wait()
	close(results)
	if v := <-first; v != 1 {
		t.Fatalf("first caller got round %d, want 1", v)
	}
	for v := range results {
		if v != 2 {
			t.Fatalf("a caller that arrived during round 1 got round %d's answer, want round 2", v)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d rounds ran for %d callers, want 2", n, late+1)
	}
}

func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

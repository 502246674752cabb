package httpapi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
)

// TestConsulNarrowWaitsShareOneRelist: blocking catalog/services queries
// of tokens that may read only some services share one relisting loop per
// token and namespace, not one each; a new service in the shared list ends
// every wait on it, and the loop ends with its last waiter.
func TestConsulNarrowWaitsShareOneRelist(t *testing.T) {
	defer func(old time.Duration) { consulRelistInterval = old }(consulRelistInterval)
	consulRelistInterval = 5 * time.Millisecond
	// Nothing the tokens may read yet, so the waits have no watches: only
	// the relists can end them.
	reg := &countingRegistry{rev: 10, services: map[string][]string{}}
	c := &consulAPI{h: &Handler{registry: reg}, indexes: map[string]*idIndex{}, scans: map[string]*idScan{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tokens := map[string]int{"a": 4, "b": 2}
	done := make(chan error, 6)
	for tok, n := range tokens {
		tctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		for range n {
			go func() { done <- c.waitReadable(tctx, "default", queryOptions{index: 5, wait: time.Minute}) }()
		}
	}
	// loops returns, for each relisting loop, its token and waiters.
	loops := func() []string {
		c.relists.mu.Lock()
		defer c.relists.mu.Unlock()
		var out []string
		for k, r := range c.relists.m {
			out = append(out, fmt.Sprintf("%s: %d", strings.TrimPrefix(k.auth, "Bearer "), r.waiters))
		}
		slices.Sort(out)
		return out
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		deadline := time.After(20 * time.Second)
		for !cond() {
			select {
			case <-tick.C:
			case <-deadline:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	poll("every wait joined a relist", func() bool {
		c.relists.mu.Lock()
		defer c.relists.mu.Unlock()
		n := 0
		for _, r := range c.relists.m {
			n += r.waiters
		}
		return n == 6
	})
	if got, want := loops(), []string{"a: 4", "b: 2"}; !slices.Equal(got, want) {
		t.Fatalf("relisting loops (token: waiters) %v, want one per token %v", got, want)
	}
	poll("a few relists", func() bool {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return reg.lists >= 6+4
	})

	reg.mu.Lock()
	reg.services["web"] = []string{"web-1"}
	reg.rev++
	reg.mu.Unlock()
	for range 6 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("wait ended with %v", err)
			}
		case <-ctx.Done():
			t.Fatal("a wait did not end when the shared list changed")
		}
	}
	poll("the loops to end with their waiters", func() bool { return len(loops()) == 0 })
}

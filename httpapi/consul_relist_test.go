package httpapi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
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
	waitsEndCleanly(t, ctx, done, 6)
	poll("the loops to end with their waiters", func() bool { return len(loops()) == 0 })
}

// relistRegistry is a countingRegistry whose lists can fail, and which
// notes the client address and the token each list was made with.
type relistRegistry struct {
	countingRegistry
	fail   error    // under mu: what lists fail with, nil for none
	failed int      // under mu: lists that failed
	calls  []string // under mu: "client-addr|authorization" of each list
}

func (r *relistRegistry) ListServices(ctx context.Context, req *rosterv1.ListServicesRequest, opts ...grpc.CallOption) (*rosterv1.ListServicesResponse, error) {
	md, _ := metadata.FromOutgoingContext(ctx)
	r.mu.Lock()
	r.calls = append(r.calls, strings.Join(md.Get(rpc.ClientAddrKey), ",")+"|"+strings.Join(md.Get("authorization"), ","))
	if err := r.fail; err != nil {
		r.failed++
		r.mu.Unlock()
		return nil, err
	}
	r.mu.Unlock()
	return r.countingRegistry.ListServices(ctx, req, opts...)
}

// pollFor fails the test when cond does not hold within 20s.
func pollFor(t *testing.T, what string, cond func() bool) {
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

// narrowWaits starts a blocking waitReadable for each client address,
// all with one token, and waits until every one has joined the relist.
func narrowWaits(t *testing.T, c *consulAPI, ctx context.Context, token string, clients ...string) <-chan error {
	t.Helper()
	done := make(chan error, len(clients))
	for _, addr := range clients {
		wctx := rpc.WithClientAddr(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), addr)
		go func() { done <- c.waitReadable(wctx, "default", queryOptions{index: 5, wait: time.Minute}) }()
	}
	pollFor(t, "every wait joined the relist", func() bool {
		c.relists.mu.Lock()
		defer c.relists.mu.Unlock()
		n := 0
		for _, r := range c.relists.m {
			n += r.waiters
		}
		return n == len(clients)
	})
	return done
}

// TestConsulSharedRelistOutlastsAFailedList: a list of the shared loop
// that fails for a reason other than the token (a rate refusal, a node
// briefly unavailable) fails none of the waits sharing it: they go on
// with the last list, and the next good list that differs ends them.
func TestConsulSharedRelistOutlastsAFailedList(t *testing.T) {
	for _, failure := range []error{
		status.Error(codes.ResourceExhausted, "rate limit"),
		status.Error(codes.Unavailable, "no leader"),
	} {
		t.Run(status.Code(failure).String(), func(t *testing.T) {
			reg, c, ctx := relistFixture(t)
			done := narrowWaits(t, c, ctx, "a", "192.0.2.1:1000", "192.0.2.2:1000")

			reg.mu.Lock()
			reg.fail = failure
			reg.mu.Unlock()
			pollFor(t, "a few failed relists", func() bool {
				select {
				case err := <-done:
					t.Fatalf("a wait ended with the shared loop's failed list: %v", err)
				default:
				}
				reg.mu.Lock()
				defer reg.mu.Unlock()
				return reg.failed >= 3
			})
			reg.mu.Lock()
			reg.fail = nil
			reg.services["web"] = []string{"web-1"}
			reg.rev++
			reg.mu.Unlock()
			waitsEndCleanly(t, ctx, done, 2)
		})
	}
}

// TestConsulSharedRelistEndsWaitsOnATokenError: a list the token is
// refused (revoked, no longer allowed) ends every wait sharing the loop
// with that error; no later tick would mend it.
func TestConsulSharedRelistEndsWaitsOnATokenError(t *testing.T) {
	reg, c, ctx := relistFixture(t)
	done := narrowWaits(t, c, ctx, "a", "192.0.2.1:1000", "192.0.2.2:1000")
	reg.mu.Lock()
	reg.fail = status.Error(codes.PermissionDenied, "token revoked")
	reg.mu.Unlock()
	for range 2 {
		select {
		case err := <-done:
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("wait ended with %v, want PermissionDenied", err)
			}
		case <-ctx.Done():
			t.Fatal("a wait went on after its token was refused")
		}
	}
}

// TestConsulSharedRelistChargesNoWaiter: the shared loop's lists carry the
// waiters' token but no client address, so no one waiter's host (the
// first, perhaps gone long since) pays for them all, nor can its rate
// refusals fail the others. Each waiter's own first list carries its own
// address, as before.
func TestConsulSharedRelistChargesNoWaiter(t *testing.T) {
	reg, c, ctx := relistFixture(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clients := []string{"192.0.2.1:1000", "192.0.2.2:1000"}
	done := narrowWaits(t, c, ctx, "a", clients...)
	pollFor(t, "a few relists", func() bool {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return len(reg.calls) >= len(clients)+3
	})
	cancel()
	for range clients {
		<-done
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	byAddr := map[string]int{}
	for _, call := range reg.calls {
		addr, auth, _ := strings.Cut(call, "|")
		if auth != "Bearer a" {
			t.Errorf("a list made with authorization %q, want the waiters' token", auth)
		}
		byAddr[addr]++
	}
	for _, addr := range clients {
		if byAddr[addr] != 1 {
			t.Errorf("%d lists charged to %s, want 1 (its own first list)", byAddr[addr], addr)
		}
	}
	if byAddr[""] < 3 {
		t.Errorf("%d lists without a client address, want the loop's (at least 3)", byAddr[""])
	}
}

// relistFixture is a Consul API over a relistRegistry with nothing in it,
// relisting every 5 ms (restored when t ends), and a context for its waits
// that ends when t does or after 30 s.
func relistFixture(t *testing.T) (*relistRegistry, *consulAPI, context.Context) {
	t.Helper()
	old := consulRelistInterval
	consulRelistInterval = 5 * time.Millisecond
	t.Cleanup(func() { consulRelistInterval = old })
	reg := &relistRegistry{countingRegistry: countingRegistry{rev: 10, services: map[string][]string{}}}
	c := &consulAPI{h: &Handler{registry: reg}, indexes: map[string]*idIndex{}, scans: map[string]*idScan{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return reg, c, ctx
}

// waitsEndCleanly fails unless n waits end on done without an error (the
// shared list changed) before ctx does.
func waitsEndCleanly(t *testing.T, ctx context.Context, done <-chan error, n int) {
	t.Helper()
	for range n {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("a wait ended with %v; want it to end cleanly when the shared list changed (not with a failed list)", err)
			}
		case <-ctx.Done():
			t.Fatal("a wait did not end when the shared list changed")
		}
	}
}

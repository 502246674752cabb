package httpapi

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// consulRelistInterval is how often the blocking catalog/services queries
// of a token that may read only some of a namespace list it again, to see
// a service it may read appear (waitReadable).
var consulRelistInterval = time.Second

// relists shares the relisting of the blocking catalog/services queries
// that wait with one token on one namespace: one ListServices every
// consulRelistInterval for all of them, not one each, so that many
// watchers sharing a token (or one client sending the same query many
// times at once) cost one walk of the namespace a second. Sharing trusts
// no one: they hold the same token, so each would read the same list.
type relists struct {
	mu sync.Mutex
	m  map[relistKey]*relist
}

// relistKey is a namespace and the caller's token, as the authorization
// metadata of its calls.
type relistKey struct{ namespace, auth string }

// relist is one shared relisting loop and the latest list it took, or the
// token error that failed the latest. It runs while it has waiters.
type relist struct {
	key     relistKey
	waiters int // under relists.mu
	stop    context.CancelFunc

	mu   sync.Mutex
	last *rosterv1.ListServicesResponse
	err  error
	// next is closed, and replaced, when a list (or a token error) is in.
	next chan struct{}
}

// join adds a waiter on namespace ns with ctx's token to its relist,
// starting one when it is the first; list takes the namespace's list with
// the context it is given. Every join is paired with a leave.
func (rs *relists) join(ctx context.Context, ns string, list func(context.Context) (*rosterv1.ListServicesResponse, error)) *relist {
	md, _ := metadata.FromOutgoingContext(ctx)
	k := relistKey{namespace: ns, auth: strings.Join(md.Get("authorization"), "\n")}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.m[k]; r != nil {
		r.waiters++
		return r
	}
	// The loop outlives the request that started it, so it does not run on
	// that request's context, only with its metadata: the token, which
	// decides what it may list. Not the client address: the loop serves
	// every waiter of the token, from any host, for as long as any waits,
	// so charging its lists to the first waiter's host would let that
	// host's empty bucket fail them all. Without an address its lists are
	// the front end's own, which no client's rate counts (rpc's
	// clientIdentity); each waiter still pays for its own first list and
	// watches, and the loop adds one list per consulRelistInterval per
	// token and namespace waited on.
	lmd := md.Copy()
	delete(lmd, rpc.ClientAddrKey)
	lctx, stop := context.WithCancel(metadata.NewOutgoingContext(context.Background(), lmd))
	r := &relist{key: k, waiters: 1, stop: stop, next: make(chan struct{})}
	if rs.m == nil {
		rs.m = map[relistKey]*relist{}
	}
	rs.m[k] = r
	go r.run(lctx, list)
	return r
}

// leave removes a waiter; the last one stops the loop.
func (rs *relists) leave(r *relist) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.waiters--
	if r.waiters == 0 {
		delete(rs.m, r.key)
		r.stop()
	}
}

func (r *relist) run(ctx context.Context, list func(context.Context) (*rosterv1.ListServicesResponse, error)) {
	tick := time.NewTicker(consulRelistInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		resp, err := list(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil && !tokenRefused(err) {
			// Not the waiters' failure (a rate refusal, a node briefly
			// unavailable): they go on with the last list, and the next
			// tick tries again.
			continue
		}
		r.mu.Lock()
		r.last, r.err = resp, err
		close(r.next)
		r.next = make(chan struct{})
		r.mu.Unlock()
	}
}

// tokenRefused reports whether a list failed for its token (revoked,
// unknown or no longer allowed to list), which no later tick mends: the
// one failure every waiter of the token shares.
func tokenRefused(err error) bool {
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// changed returns a channel closed once the next list is in.
func (r *relist) changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// latest returns the latest list, or the token error that failed it.
func (r *relist) latest() (*rosterv1.ListServicesResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.err
}

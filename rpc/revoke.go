package rpc

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/grpc/codes"

	"github.com/roster-registry/roster/store"
)

// The token of a call that lasts (a Watch, WatchMany or KeepAlive stream,
// a blocking GetService) is resolved when it starts. Such a call ends
// once this node's state no longer holds that token: deleted, or replaced
// by a snapshot restore. Like an unknown token at the start, it ends with
// PermissionDenied and ACL_TOKEN_NOT_FOUND, saying why.
var (
	errStreamTokenGone = withReason(codes.PermissionDenied, errPermissionDenied.Error()+
		": ACL token not found: it was deleted (or replaced by a snapshot restore) while this stream was open", ReasonACLTokenNotFound)
	errWaitTokenGone = withReason(codes.PermissionDenied, errPermissionDenied.Error()+
		": ACL token not found: it was deleted (or replaced by a snapshot restore) while this blocking read waited", ReasonACLTokenNotFound)
)

// tokenCalls are the lasting calls served under a token on this node, for
// followTokens to end once their token is gone. A call costs a map entry
// while it lasts; what its stream sends costs nothing more.
type tokenCalls struct {
	mu    sync.Mutex
	calls map[*tokenCall]struct{}
	// hooks, set by tests only: beforeAdd runs as underToken is about to
	// add a call, passed after each look at the calls, with the applied
	// index of the state looked at.
	hooks atomic.Pointer[tokenHooks]
}

type tokenHooks struct {
	beforeAdd func()
	passed    func(applied uint64)
	// awaitLeader runs as a token lookup that missed on a leader not yet
	// through its barrier starts waiting for it (resolve).
	awaitLeader func()
}

// tokenCall is one lasting call and the token it was resolved with.
type tokenCall struct {
	sum    []byte
	token  *store.Token
	cancel context.CancelCauseFunc
	cause  error
}

// holds reports whether v still holds the token t, resolved from secret
// digest sum: the same token, with the same rules. A restore may bring back
// a token by the same secret as another one.
func holds(v *store.View, sum []byte, t *store.Token) bool {
	got := v.TokenBySecret(sum)
	return got != nil && (got == t || got.AccessorID == t.AccessorID && slices.Equal(got.Rules, t.Rules))
}

// underToken returns the context a lasting call made under c's token runs
// with: it ends, with cause, once this node's state no longer holds the
// token. end forgets the call; the caller runs it when the call ends. A
// call without a token has nothing to lose, and gets parent back. The
// token may have gone since it was resolved, and then the call is refused
// with cause.
func (s *Server) underToken(parent context.Context, c *caller, cause error) (ctx context.Context, end func(), err error) {
	if c.token == nil {
		return parent, func() {}, nil
	}
	ctx, cancel := context.WithCancelCause(parent)
	tc := &tokenCall{sum: c.sum, token: c.token, cancel: cancel, cause: cause}
	r := &s.tokenCalls
	if h := r.hooks.Load(); h != nil && h.beforeAdd != nil {
		h.beforeAdd()
	}
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[*tokenCall]struct{}{}
	}
	r.calls[tc] = struct{}{}
	r.mu.Unlock()
	end = func() {
		r.mu.Lock()
		delete(r.calls, tc)
		r.mu.Unlock()
		cancel(nil)
	}
	// A deletion applied between the resolve and the line above may have
	// been looked at by followTokens before this call was added: look
	// again, at a state taken after adding it. One applied later wakes
	// followTokens, which then finds the call.
	if !holds(s.node.Store().View(), c.sum, c.token) {
		end()
		return nil, nil, cause
	}
	return ctx, end, nil
}

// endGone ends the calls whose token v no longer holds.
func (r *tokenCalls) endGone(v *store.View) {
	r.mu.Lock()
	var gone []*tokenCall
	held := map[*store.Token]bool{}
	for tc := range r.calls {
		ok, known := held[tc.token]
		if !known {
			ok = holds(v, tc.sum, tc.token)
			held[tc.token] = ok
		}
		if !ok {
			gone = append(gone, tc)
			delete(r.calls, tc)
		}
	}
	r.mu.Unlock()
	for _, tc := range gone {
		tc.cancel(tc.cause)
	}
	if h := r.hooks.Load(); h != nil && h.passed != nil {
		h.passed(v.Applied())
	}
}

// followTokens ends the lasting calls whose token is gone, looking at
// them each time this node's token table changes or a restore replaces
// the state: not per call, not per event, not on a timer. Registry writes
// do not wake it (store.View.WatchTokens).
func (s *Server) followTokens() {
	st := s.node.Store()
	for {
		ws := memdb.NewWatchSet()
		// Taken before the view: a restore after the view closes it.
		ws.Add(st.AbandonCh())
		ws.Add(s.stop)
		v := st.View()
		if err := v.WatchTokens(ws); err != nil {
			// Only a schema without the token table fails here.
			s.logger.Error("cannot watch the acl tokens; streams outlive deleted tokens until a restore", "error", err)
		}
		s.tokenCalls.endGone(v)
		_ = ws.WatchCtx(context.Background())
		select {
		case <-s.stop:
			return
		default:
		}
	}
}

package rpc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/cluster"
)

// forwardedKey marks a call a follower relayed to the leader. A relayed call
// is never relayed again, so a stale view of the leader cannot loop.
const forwardedKey = "roster-forwarded"

// Keepalive of peer connections (and, with the same numbers, the SDK's): a
// ping after 10s without traffic (gRPC's floor), and a connection whose
// ping is not answered in 5s is closed, failing its calls, so a black-holed
// leader is noticed in seconds, not when TCP gives up. The server's
// enforcement policy (ServerOptions) permits pings this often.
var peerKeepalive = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}

// keepaliveMinTime is the shortest ping interval the server accepts; below
// gRPC's 10s client floor, so no well-behaved client is told to back off.
const keepaliveMinTime = 5 * time.Second

// errLeaderUnreachable: the connection to the leader did not become ready,
// so the request was never sent and nothing was applied.
var errLeaderUnreachable = errors.New("leader unreachable")

// conns keeps one client connection per peer API address.
type conns struct {
	dialOpts []grpc.DialOption

	mu    sync.Mutex
	byAdr map[string]*grpc.ClientConn
}

func (c *conns) get(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.byAdr[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, c.dialOpts...)
	if err != nil {
		return nil, err
	}
	c.byAdr[addr] = cc
	return cc, nil
}

func (c *conns) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cc := range c.byAdr {
		_ = cc.Close()
	}
	c.byAdr = map[string]*grpc.ClientConn{}
}

func isForwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// callKind says what sending a relayed call again may do.
type callKind int

const (
	// repeatable calls do nothing new when repeated (reads, heartbeats,
	// setting a value): they are retried after any failure.
	repeatable callKind = iota
	// deduplicated calls are Raft writes carrying a request id: the state
	// machine applies an id once and answers a repeat with the first
	// result, so they too are retried after any failure, with the same id.
	deduplicated
	// applyOnce calls change the cluster and carry no request id
	// (membership, leadership transfer): sent again after they may have
	// reached the leader, one could take effect twice. They are retried
	// only when provably not applied (the leader said so, or the request
	// was never sent) and otherwise fail as outcome unknown.
	applyOnce
)

// notApplied reports whether err proves the call was not applied, so trying
// again (here or at a new leader) cannot apply it twice, whatever its kind.
func notApplied(err error) bool {
	switch {
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrNoLeader),
		errors.Is(err, cluster.ErrLeaderNotReady), errors.Is(err, cluster.ErrEnqueueTimeout),
		errors.Is(err, errLeaderUnreachable):
		return true
	}
	switch Reason(err) {
	case ReasonNotLeader, ReasonNoLeader:
		return true
	}
	return false
}

// final reports whether err is the leader's answer to the call itself (bad
// input, a missing instance, a reused request id...), which a retry would
// only repeat.
func final(err error) bool {
	if _, ok := status.FromError(err); !ok {
		return !errors.Is(err, cluster.ErrOutcomeUnknown) && !errors.Is(err, cluster.ErrShutdown) &&
			!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted, codes.Unknown, codes.Internal:
		return false
	}
	return true
}

// verdict is what onLeader does after a failed attempt.
type verdict int

const (
	// retryNotApplied: nothing was applied; try again.
	retryNotApplied verdict = iota
	// retryMaybeApplied: the attempt may have been applied; try again,
	// which only a repeatable or deduplicated call may.
	retryMaybeApplied
	// stop: return the error.
	stop
)

// judge decides what follows a failed attempt of a call of kind, and the
// error to return when that is stop.
func judge(err error, kind callKind) (verdict, error) {
	switch {
	case notApplied(err):
		return retryNotApplied, err
	case final(err):
		return stop, err
	case kind != applyOnce:
		return retryMaybeApplied, err
	}
	if _, relayed := status.FromError(err); !relayed || Reason(err) != "" {
		// The leader's own verdict (outcome unknown, shutting down) or a
		// local one: as it is.
		return stop, err
	}
	return stop, fmt.Errorf("%w: the call to the leader failed after it was sent: %v", cluster.ErrOutcomeUnknown, err)
}

// onLeader runs a call on the leader: locally when this node leads,
// otherwise relayed to the leader's API address. The whole call, retries
// included, is bounded by the caller's deadline and the hold timeout; each
// relayed attempt has its own deadline (ForwardTimeout) within that, so a
// leader that stops answering cannot hold the call. Failures that prove
// nothing was applied are retried for every kind of call; failures that
// leave the outcome open are retried for repeatable and deduplicated calls
// (a retry of a deduplicated write returns its first result). A call whose
// outcome is still open when the time runs out fails as outcome unknown.
func onLeader[T any](ctx context.Context, s *Server, kind callKind,
	local func(ctx context.Context) (T, error),
	remote func(ctx context.Context, cc *grpc.ClientConn) (T, error),
) (T, error) {
	var zero T
	// The hold ends a little before the caller's deadline (answerBefore),
	// so the caller reads why the call could not be made (no leader, say)
	// rather than its own deadline error.
	early, cancelEarly := answerBefore(ctx)
	defer cancelEarly()
	hold, cancel := context.WithTimeout(early, s.opts.HoldTimeout)
	defer cancel()
	forwarded := isForwarded(ctx)
	backoff := 10 * time.Millisecond
	var last error
	maybeApplied := false
	for {
		var (
			out T
			err error
		)
		if s.node.IsLeader() {
			out, err = local(hold)
		} else if forwarded {
			// We were chosen as the leader but are not: let the origin retry.
			return zero, cluster.ErrNotLeader
		} else if id, addr := s.node.Leader(); id == "" || addr == "" {
			err = s.noLeader()
		} else {
			out, err = relay(hold, s, id, addr, remote)
		}
		if err == nil {
			return out, nil
		}
		v, err := judge(err, kind)
		switch v {
		case stop:
			return zero, err
		case retryMaybeApplied:
			maybeApplied = maybeApplied || kind == deduplicated
		}
		last = err
		// Full jitter, capped, so a herd of followers does not retry in step.
		wait := time.Duration(rand.Int64N(int64(backoff))) + time.Millisecond
		backoff = min(backoff*2, 500*time.Millisecond)
		if hold.Err() == nil && !s.isDraining() {
			t := time.NewTimer(wait)
			select {
			case <-hold.Done():
			case <-s.draining:
			case <-t.C:
			}
			t.Stop()
		}
		if hold.Err() == nil && !s.isDraining() {
			continue
		}
		switch {
		case s.isDraining() && hold.Err() == nil:
			// Shutting down: no more waiting for a leader, so a SIGTERM
			// is not held up by calls that cannot finish here; the client
			// retries on another node.
			if maybeApplied {
				return zero, fmt.Errorf("%w: this node is shutting down; last error: %v", cluster.ErrOutcomeUnknown, last)
			}
			return zero, fmt.Errorf("%w (this node is shutting down: not waiting for another attempt)", last)
		case maybeApplied && ctx.Err() != nil:
			return zero, fmt.Errorf("%w: %w", cluster.ErrOutcomeUnknown, ctx.Err())
		case maybeApplied:
			return zero, fmt.Errorf("%w: no answer before the caller's deadline or within the hold timeout %s; last error: %v", cluster.ErrOutcomeUnknown, s.opts.HoldTimeout, last)
		case ctx.Err() != nil:
			return zero, ctx.Err()
		}
		return zero, last
	}
}

// noLeader is why this node knows no leader: it was removed from the
// cluster (so only it is cut off), or there is none (an election, or the
// cluster lost its quorum).
func (s *Server) noLeader() error {
	if s.node.Removed() {
		return cluster.ErrRemoved
	}
	return cluster.ErrNoLeader
}

// relay makes one attempt of a call on the leader id at addr, with a
// deadline of its own. It waits for the connection first: when that does
// not become ready the request was never sent, which the error says.
func relay[T any](ctx context.Context, s *Server, id, addr string,
	remote func(ctx context.Context, cc *grpc.ClientConn) (T, error),
) (T, error) {
	var zero T
	ctx, cancel := context.WithTimeout(ctx, s.opts.ForwardTimeout)
	defer cancel()
	cc, err := s.peers.get(addr)
	if err != nil {
		return zero, fmt.Errorf("%w: %s at %s: %v", errLeaderUnreachable, id, addr, err)
	}
	if err := waitReady(ctx, cc); err != nil {
		return zero, fmt.Errorf("%w: %s at %s: %v", errLeaderUnreachable, id, addr, err)
	}
	sent := &relayedMethod{}
	out, err := remote(context.WithValue(metadata.AppendToOutgoingContext(withCallerToken(ctx), forwardedKey, s.node.ID()), relayedMethodKey{}, sent), cc)
	s.countForward(ctx, sent.name, err)
	return out, err
}

// relayedMethod records the method a relayed attempt called on the leader,
// for its metric label: the call that relays is not always one with that
// method (a read-index round shared by reads of any method runs on a
// context of its own, with none).
type relayedMethod struct{ name string }

type relayedMethodKey struct{}

// recordRelayedMethod is the peer connections' unary interceptor that
// fills in a relayedMethod.
func recordRelayedMethod(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if m, ok := ctx.Value(relayedMethodKey{}).(*relayedMethod); ok {
		m.name = method
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// waitReady waits until cc is ready to send, or says why it is not: a call
// made on a connection that is not ready fails (or waits) without sending.
func waitReady(ctx context.Context, cc *grpc.ClientConn) error {
	for {
		state := cc.GetState()
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure:
			cc.Connect()
			return errors.New("connection failed; reconnecting")
		case connectivity.Shutdown:
			return errors.New("connection closed")
		case connectivity.Idle:
			cc.Connect()
		}
		if !cc.WaitForStateChange(ctx, state) {
			return fmt.Errorf("not connected (%s): %w", state, ctx.Err())
		}
	}
}

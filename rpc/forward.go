package rpc

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/cluster"
)

// forwardedKey marks a call a follower relayed to the leader. A relayed call
// is never relayed again, so a stale view of the leader cannot loop.
const forwardedKey = "roster-forwarded"

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

// retryable reports whether err proves the call was not applied, so trying
// again (here or at a new leader) cannot apply it twice.
func retryable(err error) bool {
	switch {
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrNoLeader),
		errors.Is(err, cluster.ErrLeaderNotReady), errors.Is(err, cluster.ErrEnqueueTimeout):
		return true
	}
	switch Reason(err) {
	case ReasonNotLeader, ReasonNoLeader:
		return true
	}
	return false
}

// idempotent calls may also be retried after an error that leaves their
// outcome unknown: applying them twice is the same as once.
type idempotency bool

const (
	idempotentCall    idempotency = true
	nonIdempotentCall idempotency = false
)

// onLeader runs a call on the leader: locally when this node leads,
// otherwise relayed to the leader's API address. While there is no leader
// (or the call provably did not apply) it retries with jitter until the hold
// timeout; every other outcome is returned as it is.
func onLeader[T any](ctx context.Context, s *Server, idem idempotency,
	local func(ctx context.Context) (T, error),
	remote func(ctx context.Context, cc *grpc.ClientConn) (T, error),
) (T, error) {
	var zero T
	hold, cancel := context.WithTimeout(ctx, s.opts.HoldTimeout)
	defer cancel()
	forwarded := isForwarded(ctx)
	backoff := 10 * time.Millisecond
	var last error
	for {
		var (
			out T
			err error
		)
		if s.node.IsLeader() {
			out, err = local(ctx)
		} else if forwarded {
			// We were chosen as the leader but are not: let the origin retry.
			return zero, cluster.ErrNotLeader
		} else if id, addr := s.node.Leader(); id == "" || addr == "" {
			err = cluster.ErrNoLeader
		} else if cc, derr := s.peers.get(addr); derr != nil {
			err = derr
		} else {
			out, err = remote(metadata.AppendToOutgoingContext(ctx, forwardedKey, s.node.ID()), cc)
			if err != nil && !retryable(err) && idem == idempotentCall && status.Code(err) == codes.Unavailable {
				// The leader went away mid-call; an idempotent call may try again.
				err = cluster.ErrNoLeader
			}
		}
		if err == nil || !retryable(err) {
			return out, err
		}
		last = err
		// Full jitter, capped, so a herd of followers does not retry in step.
		wait := time.Duration(rand.Int64N(int64(backoff))) + time.Millisecond
		backoff = min(backoff*2, 500*time.Millisecond)
		select {
		case <-hold.Done():
			if ctx.Err() != nil {
				return zero, ctx.Err()
			}
			return zero, last
		case <-time.After(wait):
		}
	}
}

package rpc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
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

// callKind says whether a relayed call may be sent again after it may
// already have reached the leader.
type callKind bool

const (
	// repeatable calls do nothing new when repeated (reads, heartbeats,
	// setting a value): sending one again is harmless.
	repeatable callKind = true
	// applyOnce calls are Raft writes. Sent again after they may have been
	// applied, one could take effect twice, around another client's write,
	// which a reader can observe; so they are retried only when provably
	// not sent, and otherwise fail as outcome unknown.
	applyOnce callKind = false
)

// relayFailure classifies a relayed call's error. A transport failure (an
// Unavailable the leader did not explain) becomes ErrNoLeader, which is
// retried, when the request was never sent or repeating it is harmless; a
// write that may have reached the leader becomes ErrOutcomeUnknown.
func relayFailure(err error, kind callKind) error {
	if err == nil || status.Code(err) != codes.Unavailable || Reason(err) != "" {
		return err
	}
	msg := status.Convert(err).Message()
	if kind == repeatable || notSent(err) {
		return fmt.Errorf("%w: leader unreachable: %s", cluster.ErrNoLeader, msg)
	}
	return fmt.Errorf("%w: the connection to the leader failed during the call: %s", cluster.ErrOutcomeUnknown, msg)
}

// notSent reports whether a transport error says the connection was never
// established, so the request cannot have reached the server. gRPC reports
// those as "connection error: desc = ... Error while dialing ...".
func notSent(err error) bool {
	return strings.Contains(status.Convert(err).Message(), "connection error")
}

// onLeader runs a call on the leader: locally when this node leads,
// otherwise relayed to the leader's API address. While there is no leader
// (or the call provably did not apply) it retries with jitter until the hold
// timeout; every other outcome is returned as it is.
func onLeader[T any](ctx context.Context, s *Server, kind callKind,
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
			err = relayFailure(err, kind)
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

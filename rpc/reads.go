package rpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"

	"github.com/roster-registry/roster/cluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// readBarrier makes this node's state fresh enough for a read with opts:
// linearizable (the default) waits for the leader's read index; stale waits
// only for min_revision when one is given.
func (s *Server) readBarrier(ctx context.Context, opts *rosterv1.ReadOptions) error {
	ctx, cancel := s.withReadTimeout(ctx)
	defer cancel()
	want := opts.GetMinRevision()
	switch opts.GetConsistency() {
	case rosterv1.Consistency_CONSISTENCY_STALE:
	case rosterv1.Consistency_CONSISTENCY_UNSPECIFIED, rosterv1.Consistency_CONSISTENCY_LINEARIZABLE:
		if linearizableFromLocalState {
			break
		}
		idx, err := s.readIndex(ctx)
		if err != nil {
			return err
		}
		want = max(want, idx)
	default:
		return invalidf("unknown consistency %d", opts.GetConsistency())
	}
	if want == 0 {
		return nil
	}
	if err := s.node.WaitApplied(ctx, want); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("this node has applied index %d, not yet %d: %w", s.node.Applied(), want, err)
		}
		return err
	}
	return nil
}

// readIndex returns the index a linearizable read must wait for: the
// leader's, confirmed with a quorum. Concurrent reads share one round.
func (s *Server) readIndex(ctx context.Context) (uint64, error) {
	var (
		idx uint64
		err error
	)
	switch {
	case s.node.IsLeader():
		idx, err = s.node.ReadIndex(ctx)
	case isForwarded(ctx):
		return 0, cluster.ErrNotLeader
	default:
		idx, err = s.remoteReadIndex.Do(ctx)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The round outlives this read: say what kept it, when that is
		// that no leader is known (quorum lost, or an election).
		if id, _ := s.node.Leader(); id == "" {
			return 0, fmt.Errorf("%w (no read index before the deadline)", s.noLeader())
		}
	}
	return idx, err
}

// ReadIndexRounds returns how many read-index round trips this node has made
// to the leader on behalf of linearizable reads; concurrent reads share one.
func (s *Server) ReadIndexRounds() uint64 { return s.readRounds.Load() }

// leaderReadIndex asks the leader for its read index (one round of Rounds).
// onLeader bounds the round by the hold timeout; a deadline of the same
// length here would end first and hide the reason, such as no leader,
// behind a bare deadline error.
func (s *Server) leaderReadIndex(ctx context.Context) (uint64, error) {
	s.readRounds.Add(1)
	return onLeader(ctx, s, repeatable,
		func(ctx context.Context) (uint64, error) { return s.node.ReadIndex(ctx) },
		func(ctx context.Context, cc *grpc.ClientConn) (uint64, error) {
			resp, err := rosterv1.NewClusterClient(cc).ReadIndex(ctx, &rosterv1.ReadIndexRequest{})
			return resp.GetReadIndex(), err
		})
}

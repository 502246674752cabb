package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/roster-registry/roster/store"
)

// Relay asks the leader to record self's addresses in the member table
// (with JoinRequest.update_only). A follower cannot write the table itself,
// so the API layer, which can reach the leader, provides it.
type Relay func(ctx context.Context, self store.Member) error

// Announce intervals: retry soon while the member table is wrong, check
// rarely once it is right.
const (
	announceRetry = time.Second
	announceCheck = 10 * time.Second
)

// StartAnnouncing keeps this node's addresses in the replicated member
// table, so every node can find every other node's API address: while the
// table is missing or has old addresses for this node, the leader writes
// them itself and a follower asks the leader through relay. The loop ends
// when stop is called or the node shuts down; stop waits for it.
func (n *Node) StartAnnouncing(relay Relay) (stop func()) {
	select {
	case <-n.shutdownCh:
		return func() {}
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(done)
		n.announce(ctx, relay)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}

func (n *Node) announce(ctx context.Context, relay Relay) {
	self := store.Member{NodeID: n.cfg.NodeID, RaftAddr: n.RaftAddr(), APIAddr: n.cfg.APIAddr}
	for {
		wait := announceCheck
		// Addresses only: the leader keeps the record's replica mark.
		if m := n.store.View().Member(self.NodeID); m == nil || m.RaftAddr != self.RaftAddr || m.APIAddr != self.APIAddr {
			wait = announceRetry
			if err := n.announceOnce(ctx, relay, self); err != nil {
				n.logger.Debug("announcing addresses failed; will retry", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-n.shutdownCh:
			return
		case <-time.After(wait):
		}
	}
}

// announceOnce records self through the leader. A leader does nothing: its
// leader loop publishes its record when it takes over, and while it leads
// it does not fight a later change of that record (an operator's, say).
func (n *Node) announceOnce(ctx context.Context, relay Relay, self store.Member) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n.IsLeader() {
		return nil
	}
	return relay(ctx, self)
}

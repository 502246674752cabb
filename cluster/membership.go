package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/store"
)

// Member is a node of the cluster as the leader sees it.
type Member struct {
	NodeID   string
	RaftAddr string
	APIAddr  string
	Voter    bool
	Leader   bool
	// Healthy: the leader hears from it. Only the leader knows; elsewhere
	// a node known to the configuration is reported healthy when the
	// leader is known.
	Healthy bool
	// ReadReplica: joined as a non-voting read replica.
	ReadReplica bool
	// Autopilot is the leader's autopilot view of it (nil elsewhere, or
	// before autopilot's first update).
	Autopilot *AutopilotServer
}

// Join adds a node, or updates its addresses; joining again with the same
// id and addresses changes nothing. Only the leader may do it. With
// autopilot, a server that joins to vote enters as a non-voter and
// autopilot promotes it once it has been healthy for the stabilization
// time; a read replica (voter false) is never promoted.
func (n *Node) Join(ctx context.Context, id, raftAddr, apiAddr string, voter bool) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return mapRaftError(err)
	}
	staged := n.cfg.Autopilot != nil
	present := false
	for _, s := range cf.Configuration().Servers {
		sameID, sameAddr := s.ID == raft.ServerID(id), s.Address == raft.ServerAddress(raftAddr)
		isVoter := s.Suffrage == raft.Voter
		switch {
		case sameID && sameAddr && isVoter == voter:
			present = true
		case sameID && sameAddr && staged && voter && !isVoter:
			// Staged for promotion (or a replica that now joins to
			// vote): autopilot promotes it once it is stable.
			present = true
		case sameID || sameAddr:
			// A node that came back with a new address (or an address now
			// used by a new node): remove the old entry first.
			n.logger.Info("replacing member", "old_id", s.ID, "old_addr", s.Address, "id", id, "addr", raftAddr)
			if err := n.raft.RemoveServer(s.ID, 0, 10*time.Second).Error(); err != nil {
				return mapRaftError(err)
			}
		}
	}
	// Failures seen of an earlier server with this id are not this one's.
	n.forgetPeerFailures(raft.ServerID(id))
	// The record goes first: autopilot reads from it whether a non-voter
	// may be promoted, and one without a record is never promoted.
	if err := n.memberVoterIntent(ctx, id, raftAddr, apiAddr, !voter); err != nil {
		return err
	}
	if !present {
		var f raft.IndexFuture
		if voter && !staged {
			f = n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, 10*time.Second)
		} else {
			f = n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, 10*time.Second)
		}
		if err := f.Error(); err != nil {
			return fmt.Errorf("add %s: %w", id, mapRaftError(err))
		}
		n.logger.Info("added member", "id", id, "raft_addr", raftAddr, "voter", voter, "staged_for_promotion", voter && staged)
	}
	return nil
}

// Remove takes a node out of the cluster. Removing the leader itself makes
// it step down once the change commits.
func (n *Node) Remove(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return mapRaftError(err)
	}
	found, voter, voters := false, false, 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if s.ID == raft.ServerID(id) {
			found, voter = true, s.Suffrage == raft.Voter
		}
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownNode, id)
	}
	if voter && voters == 1 {
		// Raft would refuse it too, but only after the record is gone.
		return fmt.Errorf("%w: %q is the only voter", ErrLastVoter, id)
	}
	// Forget its record first: once the leader removes itself it can no
	// longer write.
	if err := n.removeMember(ctx, id); err != nil {
		return err
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		return mapRaftError(err)
	}
	n.forgetPeerFailures(raft.ServerID(id))
	n.logger.Info("removed member", "id", id)
	return nil
}

// forgetPeerFailures drops what the leader recorded of failing to reach
// id: reports still on their way from the replication of the server that
// had the id before, whose last contact is older than now, are ignored
// when they arrive. With an empty id it drops every record, as a new
// term begins (that term's replication reports failures afresh, with its
// start as the last contact; the previous term's has stopped).
func (n *Node) forgetPeerFailures(id raft.ServerID) {
	n.healthMu.Lock()
	defer n.healthMu.Unlock()
	if id == "" {
		clear(n.peerFailed)
		return
	}
	delete(n.peerFailed, id)
	n.peerForgotten[id] = time.Now()
}

// TransferLeadership hands leadership to id, or to a voter Raft picks when
// id is empty. It refuses, changing nothing, a target that is unknown, that
// does not vote, or that already leads, and an empty id when no other voter
// exists: Raft would force an election the target cannot win, or fail.
// Raft's own failures come back as ErrTransferInProgress,
// ErrTransferTimeout or ErrTransferFailed, saying who leads now.
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		// A leader handing over refuses this too.
		return n.transferError(err, id)
	}
	if id == "" {
		for _, s := range cf.Configuration().Servers {
			if s.ID != raft.ServerID(n.cfg.NodeID) && s.Suffrage == raft.Voter {
				return n.transferError(n.transfer(nil), "")
			}
		}
		return ErrNoOtherVoter
	}
	if id == n.cfg.NodeID {
		return fmt.Errorf("node %q is %w", id, ErrAlreadyLeader)
	}
	for _, s := range cf.Configuration().Servers {
		if s.ID != raft.ServerID(id) {
			continue
		}
		if s.Suffrage != raft.Voter {
			return fmt.Errorf("node %q is %w (a read replica, or a server not promoted yet), so it cannot lead", id, ErrNotVoter)
		}
		return n.transferError(n.transfer(&s), id)
	}
	return fmt.Errorf("%w: %q is not in the cluster", ErrUnknownNode, id)
}

// transfer runs Raft's leadership transfer to s, or to a voter Raft picks
// when s is nil, and returns Raft's answer: nil once this node has stepped
// down.
func (n *Node) transfer(s *raft.Server) error {
	if h := n.cfg.TestHooks.LeadershipTransfer; h != nil {
		target := ""
		if s != nil {
			target = string(s.ID)
		}
		return h(target)
	}
	if s == nil {
		return n.raft.LeadershipTransfer().Error()
	}
	return n.raft.LeadershipTransferToServer(s.ID, s.Address).Error()
}

// AwaitNewLeader waits until this node knows of a leader other than
// itself, as after it handed leadership away, and returns its id. When ctx
// ends first it fails with ErrNewLeaderUnknown, saying what this node does
// know: how long it waited, its term, and whether it leads again.
func (n *Node) AwaitNewLeader(ctx context.Context) (string, error) {
	start := time.Now()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if id, _ := n.Leader(); id != "" && id != n.cfg.NodeID {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", n.newLeaderUnknown(time.Since(start))
		case <-n.shutdownCh:
			return "", ErrShutdown
		case <-t.C:
		}
	}
}

// newLeaderUnknown is AwaitNewLeader's error after waiting for waited.
func (n *Node) newLeaderUnknown(waited time.Duration) error {
	now := "an election may still be under way"
	if n.IsLeader() {
		now = n.cfg.NodeID + " was elected again"
	}
	return fmt.Errorf("%w: %s stepped down and heard from no other leader within %s (term %d: %s)",
		ErrNewLeaderUnknown, n.cfg.NodeID, waited.Round(time.Millisecond), n.raft.CurrentTerm(), now)
}

// Members lists the Raft configuration joined with the member table.
func (n *Node) Members() ([]Member, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, mapRaftError(err)
	}
	_, leaderID := n.raft.LeaderWithID()
	leading := n.IsLeader()
	view := n.store.View()
	apState, apOK := n.AutopilotState()
	n.healthMu.Lock()
	defer n.healthMu.Unlock()
	var out []Member
	for _, s := range cf.Configuration().Servers {
		m := Member{
			NodeID:   string(s.ID),
			RaftAddr: string(s.Address),
			Voter:    s.Suffrage == raft.Voter,
			Leader:   s.ID == leaderID,
		}
		rec := view.Member(m.NodeID)
		if rec != nil {
			m.APIAddr = rec.APIAddr
		}
		// A non-voter that did not join to vote is a read replica.
		m.ReadReplica = !m.Voter && (rec == nil || !rec.JoinedToVote)
		if ap, ok := apState.Servers[m.NodeID]; ok && apOK {
			m.Autopilot = &ap
		}
		_, failing := n.peerFailed[s.ID]
		switch {
		case m.Autopilot != nil:
			m.Healthy = m.Autopilot.Healthy
		case m.NodeID == n.cfg.NodeID:
			m.Healthy = true
		case leading:
			m.Healthy = !failing
		default:
			m.Healthy = leaderID != ""
		}
		out = append(out, m)
	}
	return out, nil
}

// watchPeers tracks the followers the leader cannot reach, and the
// leaders this node sees.
func (n *Node) watchPeers(obs <-chan raft.Observation) {
	defer n.wg.Done()
	for {
		select {
		case o := <-obs:
			n.healthMu.Lock()
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if d.LastContact.After(n.peerForgotten[d.PeerID]) {
					n.peerFailed[d.PeerID] = d.LastContact
				}
			case raft.ResumedHeartbeatObservation:
				delete(n.peerFailed, d.PeerID)
			case raft.LeaderObservation:
				n.leaderLog.add(string(d.LeaderID), n.raft.CurrentTerm(), time.Now())
			}
			n.healthMu.Unlock()
			if o.Data == raft.Shutdown {
				n.noteRaftStopped()
			}
		case <-n.shutdownCh:
			return
		}
	}
}

// UpdateMember refreshes the addresses of a node that is already in the
// Raft configuration; it never adds one.
func (n *Node) UpdateMember(ctx context.Context, id, raftAddr, apiAddr string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return mapRaftError(err)
	}
	for _, s := range cf.Configuration().Servers {
		if s.ID == raft.ServerID(id) {
			want := store.Member{NodeID: id, RaftAddr: raftAddr, APIAddr: apiAddr}
			// Addresses only: whether it joined to vote stays as Join
			// recorded it (without a record, a non-voter is a replica).
			m := n.store.View().Member(id)
			if m != nil {
				want.JoinedToVote = m.JoinedToVote
			}
			if m != nil && *m == want {
				return nil
			}
			return n.upsertMember(ctx, want)
		}
	}
	return fmt.Errorf("%w: %q is not in the cluster", ErrUnknownNode, id)
}

// noteRaftStopped records that Raft has shut down. Unless Shutdown stopped
// it, Raft did so on its own: a leader whose removal it committed shuts
// down ("removed ourself"), and the node can serve nothing from then on.
func (n *Node) noteRaftStopped() {
	select {
	case <-n.shutdownCh:
		return
	default:
	}
	n.raftStoppedOnce.Do(func() {
		n.raftStopReason = errors.New("raft shut down on its own")
		if n.Removed() {
			n.raftStopReason = ErrRemoved
		}
		close(n.raftStopped)
	})
}

// RaftStopped is closed when Raft shuts down on its own rather than
// through Shutdown; RaftStopReason then says why. The process should exit,
// so that its supervisor restarts it (and it rejoins with --join).
func (n *Node) RaftStopped() <-chan struct{} { return n.raftStopped }

// RaftStopReason is why Raft shut down on its own: ErrRemoved when this
// node is no longer in its cluster configuration. Valid once RaftStopped
// is closed.
func (n *Node) RaftStopReason() error {
	select {
	case <-n.raftStopped:
		return n.raftStopReason
	default:
		return nil
	}
}

// Removed reports whether this node's latest Raft configuration, which it
// has from the leader, no longer lists it: it was removed from the cluster.
// A node removed while cut off does not know it, and a node that has no
// configuration yet (before it joins) is not removed.
func (n *Node) Removed() bool {
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return false
	}
	servers := cf.Configuration().Servers
	if len(servers) == 0 {
		return false
	}
	for _, s := range servers {
		if s.ID == raft.ServerID(n.cfg.NodeID) {
			return false
		}
	}
	return true
}

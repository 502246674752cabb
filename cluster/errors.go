package cluster

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/raft"
)

// Sentinel errors of cluster operations. Callers check them with errors.Is;
// rpc maps them to gRPC codes in one place.
var (
	// ErrNotLeader: this node is not the leader; nothing was applied, so the
	// call may be forwarded or retried.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: no leader is known right now (an election is under way).
	ErrNoLeader = errors.New("no leader")
	// ErrRemoved: this node was removed from the cluster, so it has no
	// leader; it is an ErrNoLeader (nothing was applied; another node can
	// take the call).
	ErrRemoved error = removedError{}
	// ErrLeaderNotReady: this node just won an election and has not yet
	// applied the previous leader's entries; nothing was applied.
	ErrLeaderNotReady = errors.New("leader not ready yet")
	// ErrOutcomeUnknown: leadership was lost after the command was handed to
	// Raft; it may or may not be committed.
	ErrOutcomeUnknown = errors.New("outcome unknown: the change may or may not have been committed")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("node is shutting down")
	// ErrEntryTooLarge: a command exceeds the maximum Raft entry size.
	ErrEntryTooLarge = errors.New("command too large")
	// ErrEnqueueTimeout: Raft did not take the command in time; nothing was applied.
	ErrEnqueueTimeout = errors.New("timed out handing the command to raft")
	// ErrUnknownNode: the node id is not a member of the cluster.
	ErrUnknownNode = errors.New("unknown node")
	// ErrNotVoter: the node named cannot take leadership, as it does not
	// vote (a read replica, or a server not promoted yet).
	ErrNotVoter = errors.New("not a voter")
	// ErrAlreadyLeader: leadership was to be handed to the node that
	// already holds it.
	ErrAlreadyLeader = errors.New("already the leader")
	// ErrNoOtherVoter: there is no other voter to hand leadership to.
	ErrNoOtherVoter = errors.New("no other voter to hand leadership to")
	// ErrLastVoter: the change would leave the cluster without a voter.
	ErrLastVoter = errors.New("the cluster needs at least one voter")
	// ErrTransferInProgress: a leadership transfer is already under way, so
	// this one was not started.
	ErrTransferInProgress = errors.New("leadership transfer in progress")
	// ErrTransferTimeout: Raft gave up on a leadership transfer after an
	// election timeout, as the target had not won an election by then. The
	// leader goes on leading unless the target's election deposes it later.
	ErrTransferTimeout = errors.New("leadership transfer timed out: the target did not win the election")
	// ErrTransferFailed: Raft could not hand leadership over: the target
	// could not be caught up or told to start an election.
	ErrTransferFailed = errors.New("leadership transfer failed")
	// ErrNewLeaderUnknown: this node handed leadership away and stepped
	// down, but had heard from no other leader when the wait for one ended.
	ErrNewLeaderUnknown = errors.New("leadership was handed over, but the new leader is not known yet")
	// ErrConfigurationPending: Raft refused a restore while a membership
	// change was still being committed; nothing was restored.
	ErrConfigurationPending = errors.New("a membership change is still being committed")
	// ErrRestoreRaced: so many entries were written while a backup was
	// checked that the index chosen for it was no longer safe; nothing was
	// restored, and the restore may be tried again.
	ErrRestoreRaced = errors.New("entries were written while the backup was checked")
)

// mapRaftError turns raft's errors into this package's sentinels, keeping
// the original text for logs. An error it does not know stays as it is.
func mapRaftError(err error) error {
	if mapped, ok := knownRaftError(err); ok {
		return mapped
	}
	return err
}

// knownRaftError is mapRaftError's table; ok is false for an error it does
// not know.
func knownRaftError(err error) (mapped error, ok bool) {
	switch {
	case err == nil:
		return nil, true
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// A leader handing over refuses writes and membership changes
		// without taking them: for them it is as good as not the leader.
		// A transfer refused so is told apart in transferError.
		return fmt.Errorf("%w (%v)", ErrNotLeader, err), true
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w (%v)", ErrOutcomeUnknown, err), true
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown, true
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrEnqueueTimeout, true
	}
	// Raft makes these with fmt.Errorf, so only their text tells them
	// apart. Roster checks each case before calling raft; these catch
	// what changed in between.
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "cannot transfer leadership to itself"):
		return fmt.Errorf("%w (%v)", ErrAlreadyLeader, err), true
	case strings.HasPrefix(msg, "cannot find peer"):
		return fmt.Errorf("%w (%v)", ErrNoOtherVoter, err), true
	case strings.HasPrefix(msg, "cannot find replication state"):
		return fmt.Errorf("%w (%v)", ErrUnknownNode, err), true
	case strings.HasPrefix(msg, "need at least one voter in configuration"):
		return ErrLastVoter, true
	case strings.HasPrefix(msg, "cannot restore snapshot now"):
		// A restore waits for the latest configuration to commit.
		return fmt.Errorf("%w; nothing was restored, try again once it is (%v)", ErrConfigurationPending, err), true
	}
	return err, false
}

// raftTransferTimeout is Raft's text for a leadership transfer it gave up
// on after an election timeout; it has no sentinel for it.
const raftTransferTimeout = "leadership transfer timeout"

// transferError names what a failed leadership transfer to target ("" when
// Raft picks it) means, and where leadership is now: Raft's own failures of
// a transfer carry no sentinel, only text, and say nothing of who leads.
func (n *Node) transferError(err error, target string) error {
	if target == "" {
		target = "picked by raft"
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Not retried as a write would be: once that transfer ends, this
		// one would move leadership a second time.
		return fmt.Errorf("%w: another transfer is under way and this one was not started; %s", ErrTransferInProgress, n.leadershipNow())
	case err.Error() == raftTransferTimeout:
		return fmt.Errorf("%w (target %s); %s", ErrTransferTimeout, target, n.leadershipNow())
	}
	if mapped, ok := knownRaftError(err); ok {
		return mapped
	}
	// Catching the target up failed ("replication failed"), or telling it
	// to start an election did ("failed to make TimeoutNow RPC ...").
	return fmt.Errorf("%w (target %s): %v; %s", ErrTransferFailed, target, err, n.leadershipNow())
}

// leadershipNow says, in an error message, who this node knows to lead.
func (n *Node) leadershipNow() string {
	if n.IsLeader() {
		return n.cfg.NodeID + " still leads"
	}
	if id, _ := n.Leader(); id != "" {
		return id + " leads"
	}
	return "no leader is known right now"
}

// removedError is ErrRemoved: its own text, yet an ErrNoLeader for callers
// that ask whether the call can go to another node.
type removedError struct{}

func (removedError) Error() string {
	return "this node was removed from the cluster; restart it with --join to rejoin"
}

func (removedError) Is(target error) bool { return target == ErrNoLeader }

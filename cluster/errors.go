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
	// ErrLeaderNotReady: this node just won an election and has not yet
	// applied the previous leader's entries; nothing was applied.
	ErrLeaderNotReady = errors.New("leader not ready yet")
	// ErrOutcomeUnknown: leadership was lost after the command was handed to
	// Raft; it may or may not be committed.
	ErrOutcomeUnknown = errors.New("outcome unknown: leadership lost during the write")
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
)

// mapRaftError turns raft's errors into this package's sentinels, keeping
// the original text for logs.
func mapRaftError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w (%v)", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w (%v)", ErrOutcomeUnknown, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrEnqueueTimeout
	}
	// Raft makes these with fmt.Errorf, so only their text tells them
	// apart. Roster checks each case before calling raft; these catch
	// what changed in between.
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "cannot transfer leadership to itself"):
		return fmt.Errorf("%w (%v)", ErrAlreadyLeader, err)
	case strings.HasPrefix(msg, "cannot find peer"):
		return fmt.Errorf("%w (%v)", ErrNoOtherVoter, err)
	case strings.HasPrefix(msg, "cannot find replication state"):
		return fmt.Errorf("%w (%v)", ErrUnknownNode, err)
	case strings.HasPrefix(msg, "need at least one voter in configuration"):
		return ErrLastVoter
	}
	return err
}

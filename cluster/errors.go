package cluster

import (
	"errors"
	"fmt"

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
	default:
		return err
	}
}

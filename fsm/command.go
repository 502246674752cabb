package fsm

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// CommandType is the first byte of every Raft log entry Roster writes.
// Types are only ever added. A type with SkippableFlag set may be ignored by
// a node that does not know it; any other unknown type stops the node.
type CommandType uint8

// Command types.
const (
	RegisterType       CommandType = 1
	DeregisterType     CommandType = 2
	SetHealthType      CommandType = 3
	ReapType           CommandType = 4
	SetMaintenanceType CommandType = 5
	UpsertMemberType   CommandType = 6
	RemoveMemberType   CommandType = 7
	BatchType          CommandType = 8
	// SelfPreservationType changes the replicated self-preservation
	// settings or marks a lease held (raftcmd.SelfPreservation).
	SelfPreservationType CommandType = 9

	// SkippableFlag marks a command that older nodes may safely ignore.
	SkippableFlag CommandType = 0x80
)

// ErrEmptyCommand: a log entry with no type byte.
var ErrEmptyCommand = errors.New("empty command")

// Encode returns [type][protobuf message].
func Encode(t CommandType, m proto.Message) ([]byte, error) {
	buf := make([]byte, 1, 1+proto.Size(m))
	buf[0] = byte(t)
	out, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", t, err)
	}
	return out, nil
}

// EncodeBatch joins encoded commands into one entry applied at one index.
func EncodeBatch(entries [][]byte) ([]byte, error) {
	for _, e := range entries {
		if len(e) > 0 && CommandType(e[0]) == BatchType {
			return nil, errors.New("encode batch: batches do not nest")
		}
	}
	return Encode(BatchType, &raftcmdv1.Batch{Entries: entries})
}

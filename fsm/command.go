package fsm

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// CommandType is the first byte of every Raft log entry Roster writes.
// Types are only ever added, never reused or changed in meaning.
//
// Types 1-127 are required: a node that does not know one stops
// (UnknownCommandError) rather than diverge from its peers. Types 128-255
// (SkippableFlag set) are skippable: a node that does not know one moves
// its applied index past it and changes nothing else. A new command may be
// skippable only if a node that ignores it still answers every read,
// watch and later command exactly as its peers do (a hint, a statistic, a
// setting only newer nodes act on); it is never wrapped in a Request.
// Everything else that is new is required, and a rolling upgrade must have
// every node on the new release before anything writes it.
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
	// RequestType wraps a client write with its request id (raftcmd
	// Request), so the state machine applies it at most once. It is not
	// skippable: a node that cannot deduplicate must stop, not diverge.
	RequestType CommandType = 10
	// ACLSetTokenType creates an ACL token, or bootstraps ACLs (raftcmd
	// ACLSetToken). Not skippable: a node that ignored it would authorize
	// differently from its peers.
	ACLSetTokenType CommandType = 11
	// ACLDeleteTokenType deletes an ACL token (raftcmd ACLDeleteToken).
	ACLDeleteTokenType CommandType = 12

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

// Requestable reports whether a client write of command type t may carry a
// request id: the registry writes whose every outcome a request result can
// remember. Any other type inside a Request entry is malformed. A skippable
// type is never one: a node that skips it would still remember the request,
// with another result than its peers.
func Requestable(t CommandType) bool {
	switch t {
	case RegisterType, DeregisterType, SetMaintenanceType:
		return true
	}
	return false
}

// EncodeRequest wraps command m of type t, sent by a client as request id,
// into a Request entry stamped with the leader's time now. The digest covers
// the command with its own time stamp (a now_unix_ns field) cleared, so a
// retry stamped later by another leader is still the same request.
func EncodeRequest(id string, now int64, t CommandType, m proto.Message) ([]byte, error) {
	if id == "" {
		return nil, errors.New("encode request: empty request id")
	}
	if !Requestable(t) {
		return nil, fmt.Errorf("encode request: command type %d cannot be wrapped", t)
	}
	inner, err := Encode(t, m)
	if err != nil {
		return nil, err
	}
	digest, err := requestDigest(t, m)
	if err != nil {
		return nil, err
	}
	return Encode(RequestType, &raftcmdv1.Request{RequestId: id, NowUnixNs: now, Digest: digest, Command: inner})
}

// RequestDigest returns the digest EncodeRequest puts into the Request
// entry of command m of type t: what a remembered result's Digest is, when
// it is the same request.
func RequestDigest(t CommandType, m proto.Message) ([]byte, error) {
	return requestDigest(t, m)
}

// leaderStamped are the fields a leader stamps into a command: its time and
// the limits it checked. A retry stamped by another leader is the same
// request.
var leaderStamped = []protoreflect.Name{"now_unix_ns", "limits"}

func isLeaderStamped(name protoreflect.Name) bool {
	for _, n := range leaderStamped {
		if n == name {
			return true
		}
	}
	return false
}

// requestDigest hashes what the client asked for: the command without what
// the leader stamped (leaderStamped), encoded deterministically. The
// command is copied shallowly, field by field, into a message that leaves
// the stamped fields out: the copy shares the instance and its maps with
// m instead of cloning them, and the bytes are those of a clone with the
// stamped fields cleared.
func requestDigest(t CommandType, m proto.Message) ([]byte, error) {
	src := m.ProtoReflect()
	c := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !isLeaderStamped(fd.Name()) {
			c.Set(fd, v)
		}
		return true
	})
	c.SetUnknown(src.GetUnknown())
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.Interface())
	if err != nil {
		return nil, fmt.Errorf("digest command %d: %w", t, err)
	}
	h := sha256.New()
	h.Write([]byte{byte(t)})
	h.Write(b)
	return h.Sum(nil), nil
}

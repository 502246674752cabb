package rpc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"google.golang.org/protobuf/proto"
	"hash"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/roster-registry/roster/backup"
	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/fsm"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// snapshotChunk is the size of the data pieces a snapshot travels in, well
// under every message size limit.
const snapshotChunk = 256 << 10

// SnapshotSave implements rosterv1.ClusterServer. It waits until this node's
// state reflects a linearizable read index, then streams one view of it:
// the same bytes Persist writes for Raft.
func (s *Server) SnapshotSave(_ *rosterv1.SnapshotSaveRequest, stream rosterv1.Cluster_SnapshotSaveServer) error {
	ctx := stream.Context()
	if err := s.readBarrier(ctx, &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE}); err != nil {
		return toStatus(err)
	}
	v := s.node.Store().View()
	first := &rosterv1.SnapshotSaveResponse{
		Revision: v.Revision(), AppliedIndex: v.Applied(),
		CreatedUnixNs: time.Now().UnixNano(), NodeId: s.node.ID(),
	}
	if err := stream.Send(first); err != nil {
		return err
	}
	cw := &chunkSender{send: stream.Send, sum: sha256.New(), buf: make([]byte, 0, snapshotChunk)}
	if err := fsm.WriteSnapshot(cw, v); err != nil {
		return toStatus(fmt.Errorf("snapshot: %w", err))
	}
	if err := cw.flush(); err != nil {
		return err
	}
	return stream.Send(&rosterv1.SnapshotSaveResponse{BodySha256: cw.sum.Sum(nil)})
}

// chunkSender sends what is written to it in data messages of
// snapshotChunk bytes.
type chunkSender struct {
	send func(*rosterv1.SnapshotSaveResponse) error
	sum  hash.Hash
	buf  []byte
}

func (c *chunkSender) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), snapshotChunk-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == snapshotChunk {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunkSender) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	c.sum.Write(c.buf)
	err := c.send(&rosterv1.SnapshotSaveResponse{Data: c.buf})
	c.buf = make([]byte, 0, snapshotChunk)
	return err
}

// SnapshotRestore implements rosterv1.ClusterServer. It receives the whole
// file into a scratch file and verifies its checksum before anything else;
// a follower then relays the verified file to the leader, which restores
// it through Raft (cluster.Node.RestoreBackup).
func (s *Server) SnapshotRestore(stream rosterv1.Cluster_SnapshotRestoreServer) error {
	ctx := stream.Context()
	f, err := os.CreateTemp(s.node.ScratchDir(), "upload-*.snap")
	if err != nil {
		return toStatus(fmt.Errorf("restore: scratch file: %w", err))
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	var size int64
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n, err := f.Write(m.Data)
		size += int64(n)
		if err != nil {
			return toStatus(fmt.Errorf("restore: scratch file: %w", err))
		}
	}
	info, err := backup.Verify(f, size)
	if err != nil {
		return toStatus(invalidf("%v; nothing was restored", err))
	}
	resp, err := s.restoreVerified(ctx, f, info)
	if err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(resp)
}

// restoreVerified restores a verified file here when this node leads, or
// relays it to the leader once. A relayed restore is not retried: the
// leader may have restored it already.
func (s *Server) restoreVerified(ctx context.Context, f *os.File, info backup.Info) (*rosterv1.SnapshotRestoreResponse, error) {
	if s.node.IsLeader() {
		r, err := s.node.RestoreBackup(ctx, backup.Body(f, info), s.node.ScratchDir())
		if errors.Is(err, cluster.ErrInvalidBackup) {
			return nil, invalidf("%v; nothing was restored", err)
		}
		if err != nil {
			return nil, err
		}
		return &rosterv1.SnapshotRestoreResponse{Revision: r.Index, AppliedIndex: r.Index,
			SourceRevision: r.SourceRevision, Instances: uint64(r.Instances),
			TokensReplaced: r.TokensReplaced, Tokens: proto.Uint64(uint64(r.Tokens))}, nil
	}
	if isForwarded(ctx) {
		return nil, cluster.ErrNotLeader
	}
	id, addr := s.node.Leader()
	if id == "" || addr == "" {
		return nil, cluster.ErrNoLeader
	}
	cc, err := s.peers.get(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s at %s: %v", errLeaderUnreachable, id, addr, err)
	}
	if err := waitReady(ctx, cc); err != nil {
		return nil, fmt.Errorf("%w: %s at %s: %v", errLeaderUnreachable, id, addr, err)
	}
	out := metadata.AppendToOutgoingContext(withCallerToken(ctx), forwardedKey, s.node.ID())
	up, err := rosterv1.NewClusterClient(cc).SnapshotRestore(out)
	if err != nil {
		return nil, err
	}
	if err := sendFile(up, io.NewSectionReader(f, 0, info.Size)); err != nil {
		return nil, err
	}
	return up.CloseAndRecv()
}

// sendFile sends r in data messages of snapshotChunk bytes.
func sendFile(up grpc.ClientStreamingClient[rosterv1.SnapshotRestoreRequest, rosterv1.SnapshotRestoreResponse], r io.Reader) error {
	buf := make([]byte, snapshotChunk)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if serr := up.Send(&rosterv1.SnapshotRestoreRequest{Data: buf[:n]}); serr != nil {
				if errors.Is(serr, io.EOF) {
					// The server ended the call; CloseAndRecv says why.
					return nil
				}
				return serr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/fsm"
	"github.com/roster-registry/roster/store"
)

// ErrInvalidBackup: a backup's snapshot body does not restore (cut short,
// a record that does not decode, an unknown format); nothing was changed.
var ErrInvalidBackup = errors.New("invalid backup")

// restoreIndexGap is how far past the Raft log's last index a restore
// lands. Raft places a user restore at max(last index, given index)+1, and
// the leader may append entries between the moment the index is chosen and
// the moment Raft takes the restore; the gap makes sure it still lands at
// exactly the index written into the restored state.
const restoreIndexGap = 1 << 20

// BackupRestore is the outcome of RestoreBackup.
type BackupRestore struct {
	// Index is the Raft index the restore landed at; it is also the
	// registry revision and applied index of the restored state.
	Index uint64
	// SourceRevision is the revision the backup was taken at.
	SourceRevision uint64
	Instances      int
	// TokensReplaced: the backup held ACL state of its own, which replaced
	// the cluster's tokens and bootstrap mark; else the cluster kept its
	// own.
	TokensReplaced bool
	// Tokens is how many ACL tokens the cluster holds after the restore.
	Tokens int
}

// RestoreBackup replaces the cluster's state with a backup's snapshot body
// (its checksum already verified). Only the leader does it.
//
// It goes through Raft's user restore (raft.Restore), as Consul's snapshot
// restore does: the leader installs the state as a snapshot at an index
// past its log, leaving a hole, so every follower — and every node that
// joins later — is sent the snapshot and converges on it. Why not log
// commands carrying the body: revisions are Raft indexes here, and a backup
// taken from an older cluster holds revisions above a fresh cluster's
// index; the restore must move the index past them, which only a snapshot
// can do.
//
// The restored state keeps the backup's instances with their revisions,
// self-preservation settings, ACL tokens and remembered request results,
// and the running cluster's own members. Its registry revision, applied
// index and every service's revision become the restore's index, above every
// revision used before, so revisions never go back and every watch is
// reset. The body is checked whole (restored into a scratch store) before
// Raft sees it: a body that does not restore changes nothing.
func (n *Node) RestoreBackup(ctx context.Context, body io.Reader, scratchDir string) (BackupRestore, error) {
	if !n.IsLeader() {
		return BackupRestore{}, ErrNotLeader
	}
	n.restoreMu.Lock()
	defer n.restoreMu.Unlock()
	cur := n.store.View()
	members, err := cur.Members(nil)
	if err != nil {
		return BackupRestore{}, err
	}
	keep := fsm.Kept{Members: members, ACLBootstrapped: cur.ACLBootstrapped()}
	if err := cur.Tokens(func(t *store.Token) bool { keep.Tokens = append(keep.Tokens, t); return true }); err != nil {
		return BackupRestore{}, err
	}
	tmp, err := os.CreateTemp(scratchDir, "restore-*.snap")
	if err != nil {
		return BackupRestore{}, fmt.Errorf("restore: scratch file: %w", err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	index := n.raft.LastIndex() + restoreIndexGap
	prep, err := fsm.PrepareRestore(body, tmp, func(srcRevision, srcApplied uint64) uint64 {
		index = max(index, srcRevision+restoreIndexGap, srcApplied+restoreIndexGap)
		return index
	}, keep)
	if err != nil {
		return BackupRestore{}, fmt.Errorf("%w: %w", ErrInvalidBackup, err)
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return BackupRestore{}, err
	}
	if err := ctx.Err(); err != nil {
		return BackupRestore{}, err
	}
	if err := fsm.CheckSnapshot(io.NewSectionReader(tmp, 0, size)); err != nil {
		return BackupRestore{}, fmt.Errorf("%w: %w", ErrInvalidBackup, err)
	}
	if !n.IsLeader() {
		return BackupRestore{}, ErrNotLeader
	}
	if last := n.raft.LastIndex(); last+restoreIndexGap/16 > index {
		return BackupRestore{}, fmt.Errorf("restore: %w (%d of them); nothing was restored, try again when writes are quieter", ErrRestoreRaced, last+restoreIndexGap-index)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: index - 1, Size: size}
	n.logger.Warn("restoring a backup: the whole registry state is replaced",
		"source_revision", prep.SourceRevision, "instances", prep.Instances, "index", index)
	restore := func() error { return n.raft.Restore(meta, io.NewSectionReader(tmp, 0, size), n.cfg.ApplyTimeout) }
	if h := n.cfg.TestHooks.RaftRestore; h != nil {
		err = h(restore)
	} else {
		err = restore()
	}
	got, _ := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
	if err != nil && got >= index {
		// Raft took the restore and then failed the entry it commits
		// after it (an enqueue timeout, a transfer, lost leadership):
		// whether the restore holds depends on whether that entry
		// commits. ErrEnqueueTimeout or ErrNotLeader would say nothing
		// was restored, and invite a second restore.
		return BackupRestore{}, fmt.Errorf("restore: %w: raft took the backup at index %d, then failed to commit past it (%v)", ErrOutcomeUnknown, index, err)
	}
	if err != nil {
		return BackupRestore{}, fmt.Errorf("restore: %w", mapRaftError(err))
	}
	if got != index {
		// Only possible if over restoreIndexGap entries were appended
		// while Raft took the restore; the state is still the same on
		// every node, but revisions up to got may have been used before.
		n.logger.Error("backup restored at another index than its state says", "state_index", index, "raft_index", got)
	}
	n.logger.Info("restored a backup", "index", index, "source_revision", prep.SourceRevision, "instances", prep.Instances,
		"kept_acl_tokens", prep.KeptACL, "replaced_acl_tokens", prep.ReplacedACL, "acl_tokens", prep.Tokens)
	return BackupRestore{Index: index, SourceRevision: prep.SourceRevision, Instances: prep.Instances,
		TokensReplaced: prep.ReplacedACL, Tokens: prep.Tokens}, nil
}

// ScratchDir is where this node keeps files while it restores a backup: its
// data dir, or the system's temporary directory for an in-memory node.
func (n *Node) ScratchDir() string {
	if n.cfg.InMemory {
		return ""
	}
	return n.cfg.DataDir
}

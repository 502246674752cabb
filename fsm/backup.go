package fsm

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"google.golang.org/protobuf/encoding/protodelim"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

// WriteSnapshot writes the snapshot stream of view v to w, byte for byte
// what Persist writes for Raft: the body of a backup file.
func WriteSnapshot(w io.Writer, v *store.View) error {
	return (&snapshot{view: v}).write(w)
}

// PreparedRestore describes a snapshot stream PrepareRestore wrote.
type PreparedRestore struct {
	// SourceRevision and SourceApplied are the backup's own.
	SourceRevision uint64
	SourceApplied  uint64
	// Instances is how many instances it restores.
	Instances int
	// KeptACL: the backup held no ACL state, so the running cluster's
	// tokens and bootstrap mark were kept.
	KeptACL bool
	// ReplacedACL: the backup held ACL state of its own (a token or a
	// bootstrap), which replaces the running cluster's.
	ReplacedACL bool
	// Tokens is how many ACL tokens the restored state holds: the
	// backup's when ReplacedACL, else the running cluster's.
	Tokens int
}

// Kept is what a restore keeps of the running cluster.
type Kept struct {
	// Members replace the backup's: they name the nodes running now.
	Members []*store.Member
	// Tokens and ACLBootstrapped are kept when the backup holds no ACL
	// state of its own (no token, never bootstrapped): a backup of a
	// cluster without ACLs, or of one not bootstrapped yet, must not
	// leave this cluster's ACLs unbootstrapped, for anyone to bootstrap.
	Tokens          []*store.Token
	ACLBootstrapped bool
}

// PrepareRestore reads a backup's snapshot body and writes to out the
// snapshot stream a running cluster restores: the same records, but
//   - at revision and applied index indexFor(backup revision, backup index),
//     which the caller makes the Raft
//     index of the restore, above every revision the cluster or the backup
//     has used, so revisions never go back and every watcher is reset;
//   - with every service, and the absent ones, changed at that revision
//     too: a service's revision (a blocking query's index) must move past
//     what clients were given before the restore, not back to the
//     backup's;
//   - with the cluster's own members instead of the backup's, since they
//     name the nodes that are running now (their addresses);
//   - with the cluster's own ACL tokens and bootstrap mark when the backup
//     holds none (Kept).
//
// A body that is cut short, holds a record that does not decode, or an
// instance or service name no API would accept (so nobody could read or
// remove it), or a port or weight out of range, is an error; out then
// holds garbage the caller must drop.
func PrepareRestore(body io.Reader, out io.Writer, indexFor func(srcRevision, srcApplied uint64) uint64, keep Kept) (PreparedRestore, error) {
	br := bufio.NewReaderSize(body, 256<<10)
	bw := bufio.NewWriterSize(out, 256<<10)
	opts := protodelim.UnmarshalOptions{MaxSize: maxRecordSize}
	var hdr raftcmdv1.SnapshotHeader
	if err := opts.UnmarshalFrom(br, &hdr); err != nil {
		return PreparedRestore{}, fmt.Errorf("read header: %w", err)
	}
	if hdr.Version != snapshotVersion {
		return PreparedRestore{}, fmt.Errorf("snapshot format version %d, this node reads %d", hdr.Version, snapshotVersion)
	}
	index := indexFor(hdr.Revision, hdr.AppliedIndex)
	if index <= hdr.Revision || index <= hdr.AppliedIndex {
		return PreparedRestore{}, fmt.Errorf("restore index %d is not above the backup's revision %d and index %d", index, hdr.Revision, hdr.AppliedIndex)
	}
	prep := PreparedRestore{SourceRevision: hdr.Revision, SourceApplied: hdr.AppliedIndex}
	extinct := index
	nh := &raftcmdv1.SnapshotHeader{Version: snapshotVersion, Revision: index, AppliedIndex: index, ExtinctRevision: &extinct}
	// stamped: the services with a revision record; unstamped: those with
	// instances but none yet, given one at the end.
	stamped := map[[2]string]bool{}
	unstamped := map[[2]string]bool{}
	// acl: the backup holds ACL state of its own.
	acl := false
	if _, err := protodelim.MarshalTo(bw, nh); err != nil {
		return prep, err
	}
	var read, wrote uint64
	for {
		var rec raftcmdv1.SnapshotRecord
		if err := opts.UnmarshalFrom(br, &rec); err != nil {
			if errors.Is(err, io.EOF) {
				return prep, fmt.Errorf("snapshot truncated after %d records", read)
			}
			return prep, fmt.Errorf("record %d: %w", read, err)
		}
		switch r := rec.Record.(type) {
		case *raftcmdv1.SnapshotRecord_Member:
			read++
			continue
		case *raftcmdv1.SnapshotRecord_End:
			if r.End.Records != read {
				return prep, fmt.Errorf("snapshot end says %d records, read %d", r.End.Records, read)
			}
			prep.ReplacedACL = acl
			if !acl {
				prep.KeptACL = len(keep.Tokens) > 0 || keep.ACLBootstrapped
				prep.Tokens = len(keep.Tokens)
				for _, t := range keep.Tokens {
					rec := &raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_AclToken{AclToken: store.TokenToRecord(t)}}
					if _, err := protodelim.MarshalTo(bw, rec); err != nil {
						return prep, err
					}
					wrote++
				}
				if keep.ACLBootstrapped {
					rec := &raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_AclState{AclState: &raftcmdv1.ACLState{Bootstrapped: true}}}
					if _, err := protodelim.MarshalTo(bw, rec); err != nil {
						return prep, err
					}
					wrote++
				}
			}
			for _, m := range keep.Members {
				rec := &raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_Member{
					Member: &raftcmdv1.Member{NodeId: m.NodeID, RaftAddr: m.RaftAddr, ApiAddr: m.APIAddr, JoinedToVote: m.JoinedToVote}}}
				if _, err := protodelim.MarshalTo(bw, rec); err != nil {
					return prep, err
				}
				wrote++
			}
			for _, k := range slices.SortedFunc(maps.Keys(unstamped), func(a, b [2]string) int {
				return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
			}) {
				rec := &raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_Service{
					Service: &raftcmdv1.ServiceRevision{Namespace: k[0], Service: k[1], ModRevision: index}}}
				if _, err := protodelim.MarshalTo(bw, rec); err != nil {
					return prep, err
				}
				wrote++
			}
			end := &raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_End{End: &raftcmdv1.SnapshotEnd{Records: wrote}}}
			if _, err := protodelim.MarshalTo(bw, end); err != nil {
				return prep, err
			}
			return prep, bw.Flush()
		case *raftcmdv1.SnapshotRecord_Instance:
			if err := checkInstanceRecord(r.Instance); err != nil {
				return prep, fmt.Errorf("record %d: instance %s/%s/%s: %w", read, r.Instance.GetNamespace(), r.Instance.GetService(), r.Instance.GetId(), err)
			}
			prep.Instances++
			if k := [2]string{r.Instance.GetNamespace(), r.Instance.GetService()}; !stamped[k] {
				unstamped[k] = true
			}
		case *raftcmdv1.SnapshotRecord_Service:
			if err := checkServiceName(r.Service.GetNamespace(), r.Service.GetService()); err != nil {
				return prep, fmt.Errorf("record %d: service %s/%s: %w", read, r.Service.GetNamespace(), r.Service.GetService(), err)
			}
			k := [2]string{r.Service.GetNamespace(), r.Service.GetService()}
			stamped[k] = true
			delete(unstamped, k)
			r.Service.ModRevision = index
		case *raftcmdv1.SnapshotRecord_AclToken:
			acl = true
			prep.Tokens++
		case *raftcmdv1.SnapshotRecord_AclState:
			acl = acl || r.AclState.GetBootstrapped()
		case nil:
			return prep, fmt.Errorf("record %d: empty record", read)
		}
		if _, err := protodelim.MarshalTo(bw, &rec); err != nil {
			return prep, err
		}
		read++
		wrote++
	}
}

// CheckSnapshot restores a snapshot stream into a scratch store and
// reports whether it restores whole, without touching any live state. It
// costs a second copy of the state in memory while it runs.
func CheckSnapshot(r io.Reader) error {
	_, err := restore(store.New(store.Options{HistoryEvents: 1, HistoryBytes: 1}), r)
	return err
}

// checkInstanceRecord applies to a backup's instance the rules of the names
// every API takes it by (namespace, service, id), and the ranges of its
// port and weight, which a restore narrows: an instance outside them could
// not be read or removed, or would come back changed. The rest (labels,
// TTL, check) is left as the backup holds it: limits that an older version
// was looser about must not make its backups unrestorable.
func checkInstanceRecord(r *raftcmdv1.Instance) error {
	if err := checkServiceName(r.GetNamespace(), r.GetService()); err != nil {
		return err
	}
	if err := store.CheckID("instance id", r.GetId()); err != nil {
		return err
	}
	if err := store.CheckPort(r.GetPort()); err != nil {
		return err
	}
	return store.CheckWeight(r.GetWeight())
}

func checkServiceName(ns, svc string) error {
	if err := store.CheckNamespace(ns); err != nil {
		return err
	}
	return store.CheckService(svc)
}

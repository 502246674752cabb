package fsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

// snapshotVersion is the format of the record stream; bump it only with a
// reader for the old one.
const snapshotVersion = 1

// snapshot is a point-in-time MVCC view of the store. It holds no lock:
// Persist may run while Apply goes on.
type snapshot struct {
	view *store.View
}

// Persist writes: header, then one length-delimited record per instance,
// service revision and member, remembered request result, and the
// self-preservation settings when set, ACL tokens and the bootstrap mark,
// then an end record with the count.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) write(sink io.Writer) error {
	w := bufio.NewWriterSize(sink, 256<<10)
	extinct := s.view.Extinct()
	hdr := &raftcmdv1.SnapshotHeader{Version: snapshotVersion, Revision: s.view.Revision(), AppliedIndex: s.view.Applied(), ExtinctRevision: &extinct}
	if _, err := protodelim.MarshalTo(w, hdr); err != nil {
		return err
	}
	var n uint64
	var werr error
	put := func(rec *raftcmdv1.SnapshotRecord) bool {
		if _, werr = protodelim.MarshalTo(w, rec); werr != nil {
			return false
		}
		n++
		return true
	}
	if err := s.view.Instances(func(i *store.Instance) bool {
		return put(&raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_Instance{Instance: store.InstanceToRecord(i)}})
	}); err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if err := s.view.ServiceRevisions(func(ns, svc string, rev uint64) {
		if werr == nil {
			put(&raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_Service{
				Service: &raftcmdv1.ServiceRevision{Namespace: ns, Service: svc, ModRevision: rev}}})
		}
	}); err != nil {
		return err
	}
	members, err := s.view.Members(nil)
	if err != nil {
		return err
	}
	for _, m := range members {
		put(&raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_Member{
			Member: &raftcmdv1.Member{NodeId: m.NodeID, RaftAddr: m.RaftAddr, ApiAddr: m.APIAddr, JoinedToVote: m.JoinedToVote}}})
	}
	if sp := s.view.SelfPreservation(); !sp.IsZero() {
		put(&raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_Settings{
			Settings: store.SelfPreservationSettingsToRecord(sp)}})
	}
	if werr != nil {
		return werr
	}
	if err := s.view.Tokens(func(t *store.Token) bool {
		return put(&raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_AclToken{AclToken: store.TokenToRecord(t)}})
	}); err != nil {
		return err
	}
	if s.view.ACLBootstrapped() {
		put(&raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_AclState{AclState: &raftcmdv1.ACLState{Bootstrapped: true}}})
	}
	if werr != nil {
		return werr
	}
	if err := s.view.Requests(func(r *store.RequestResult) bool {
		return put(&raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_Request{Request: store.RequestResultToRecord(r)}})
	}); err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	end := &raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_End{End: &raftcmdv1.SnapshotEnd{Records: n}}}
	if _, err := protodelim.MarshalTo(w, end); err != nil {
		return err
	}
	return w.Flush()
}

// Release implements raft.FSMSnapshot.
func (s *snapshot) Release() {}

// maxRecordSize bounds one snapshot record, so a corrupt length cannot make
// the reader allocate without bound.
const maxRecordSize = 16 << 20

// restore reads a snapshot stream into s and returns its applied index.
func restore(s *store.Store, r io.Reader) (uint64, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	opts := protodelim.UnmarshalOptions{MaxSize: maxRecordSize}
	var hdr raftcmdv1.SnapshotHeader
	if err := opts.UnmarshalFrom(br, &hdr); err != nil {
		return 0, fmt.Errorf("read header: %w", err)
	}
	if hdr.Version != snapshotVersion {
		return 0, fmt.Errorf("snapshot format version %d, this node reads %d", hdr.Version, snapshotVersion)
	}
	err := s.Restore(func(rs *store.Restorer) error {
		rs.SetRevision(hdr.Revision)
		rs.SetApplied(hdr.AppliedIndex)
		// A snapshot from before extinct_revision existed: every deletion
		// it covers is at or below its revision.
		rs.SetExtinct(hdr.GetRevision())
		if hdr.ExtinctRevision != nil {
			rs.SetExtinct(hdr.GetExtinctRevision())
		}
		var n uint64
		for {
			var rec raftcmdv1.SnapshotRecord
			if err := opts.UnmarshalFrom(br, &rec); err != nil {
				if errors.Is(err, io.EOF) {
					return fmt.Errorf("snapshot truncated after %d records", n)
				}
				return fmt.Errorf("record %d: %w", n, err)
			}
			switch r := rec.Record.(type) {
			case *raftcmdv1.SnapshotRecord_Instance:
				if err := rs.Instance(store.InstanceFromRecord(r.Instance)); err != nil {
					return err
				}
			case *raftcmdv1.SnapshotRecord_Service:
				rs.ServiceRevision(r.Service.Namespace, r.Service.Service, r.Service.ModRevision)
			case *raftcmdv1.SnapshotRecord_Member:
				if r.Member.GetNodeId() == "" {
					return fmt.Errorf("record %d: member without node id", n)
				}
				if err := rs.Member(&store.Member{NodeID: r.Member.NodeId, RaftAddr: r.Member.RaftAddr, APIAddr: r.Member.ApiAddr, JoinedToVote: r.Member.JoinedToVote}); err != nil {
					return err
				}
			case *raftcmdv1.SnapshotRecord_Settings:
				if err := rs.SelfPreservation(store.SelfPreservationSettingsFromRecord(r.Settings)); err != nil {
					return err
				}
			case *raftcmdv1.SnapshotRecord_Request:
				rr, err := store.RequestResultFromRecord(r.Request)
				if err != nil {
					return fmt.Errorf("record %d: %w", n, err)
				}
				if err := rs.Request(rr); err != nil {
					return fmt.Errorf("record %d: %w", n, err)
				}
			case *raftcmdv1.SnapshotRecord_AclToken:
				if err := rs.Token(store.TokenFromRecord(r.AclToken)); err != nil {
					return fmt.Errorf("record %d: %w", n, err)
				}
			case *raftcmdv1.SnapshotRecord_AclState:
				if err := rs.ACLBootstrapped(r.AclState.GetBootstrapped()); err != nil {
					return fmt.Errorf("record %d: %w", n, err)
				}
			case *raftcmdv1.SnapshotRecord_End:
				if r.End.Records != n {
					return fmt.Errorf("snapshot end says %d records, read %d", r.End.Records, n)
				}
				return nil
			default:
				return fmt.Errorf("record %d: unknown record %T", n, rec.Record)
			}
			n++
		}
	})
	if err != nil {
		return 0, err
	}
	return hdr.AppliedIndex, nil
}

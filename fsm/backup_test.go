package fsm

import (
	"bytes"
	"io"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

// restoreBackup restores backup into f as a running cluster does, at
// index.
func restoreBackup(t *testing.T, f *FSM, backup []byte, index uint64) {
	t.Helper()
	var prepared bytes.Buffer
	if _, err := PrepareRestore(bytes.NewReader(backup), &prepared, func(uint64, uint64) uint64 { return index }, Kept{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Restore(io.NopCloser(&prepared)); err != nil {
		t.Fatal(err)
	}
}

// TestBackupRestoreMovesServiceRevisionsForward: after a backup restore,
// every service, present or absent, reads as changed at the restore's
// index. They used to come back at the backup's revisions (web from 3 to 1,
// an absent service from 4 to 0), so a blocking query holding the revision
// it was given before the restore slept through it, and then answered with
// a lower revision.
func TestBackupRestoreMovesServiceRevisionsForward(t *testing.T) {
	f := newFSM()
	apply(f, 1, mustEncode(t, RegisterType, register("web", "a", "10.0.0.1", 0, 1)))
	apply(f, 2, mustEncode(t, RegisterType, register("gone", "x", "10.0.0.9", 0, 1)))
	var backup bytes.Buffer
	if err := WriteSnapshot(&backup, f.Store().View()); err != nil {
		t.Fatal(err)
	}
	apply(f, 3, mustEncode(t, RegisterType, register("web", "a", "10.0.0.2", 0, 2)))
	apply(f, 4, mustEncode(t, DeregisterType, deregister("gone", "x")))
	v := f.Store().View()
	webBefore, _, _ := v.Service(nil, "default", "web")
	goneBefore, _, _ := v.Service(nil, "default", "gone")
	absentBefore, _, _ := v.Service(nil, "default", "never")

	const index = 1 << 20
	restoreBackup(t, f, backup.Bytes(), index)
	v = f.Store().View()
	for _, c := range []struct {
		service string
		before  uint64
	}{{"web", webBefore}, {"gone", goneBefore}, {"never", absentBefore}} {
		if rev, _, err := v.Service(nil, "default", c.service); err != nil || rev != index {
			t.Errorf("%s: revision %d after the restore (%d before), %v; want the restore's %d", c.service, rev, c.before, err, index)
		}
	}
}

// TestBackupRestoreStampsServicesWithoutARevisionRecord: a backup whose
// services have no revision records (the stream a tool or an older version
// may write) restores them changed at the restore's index too.
func TestBackupRestoreStampsServicesWithoutARevisionRecord(t *testing.T) {
	f := newFSM()
	apply(f, 1, mustEncode(t, RegisterType, register("web", "a", "10.0.0.1", 0, 1)))
	apply(f, 2, mustEncode(t, RegisterType, register("api", "b", "10.0.0.2", 0, 1)))
	var full bytes.Buffer
	if err := WriteSnapshot(&full, f.Store().View()); err != nil {
		t.Fatal(err)
	}
	// Drop the service revision records, renumbering the end record.
	var stripped bytes.Buffer
	r := bytes.NewReader(full.Bytes())
	var hdr raftcmdv1.SnapshotHeader
	if err := protodelim.UnmarshalFrom(r, &hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := protodelim.MarshalTo(&stripped, &hdr); err != nil {
		t.Fatal(err)
	}
	var kept, dropped uint64
	for {
		var rec raftcmdv1.SnapshotRecord
		if err := protodelim.UnmarshalFrom(r, &rec); err != nil {
			t.Fatal(err)
		}
		if _, ok := rec.Record.(*raftcmdv1.SnapshotRecord_Service); ok {
			dropped++
			continue
		}
		if end, ok := rec.Record.(*raftcmdv1.SnapshotRecord_End); ok {
			end.End.Records = kept
		} else {
			kept++
		}
		if _, err := protodelim.MarshalTo(&stripped, &rec); err != nil {
			t.Fatal(err)
		}
		if _, ok := rec.Record.(*raftcmdv1.SnapshotRecord_End); ok {
			break
		}
	}
	if dropped != 2 {
		t.Fatalf("dropped %d service revision records, want 2", dropped)
	}
	const index = 1 << 20
	restoreBackup(t, f, stripped.Bytes(), index)
	for _, svc := range []string{"api", "web"} {
		if rev, insts, err := f.Store().View().Service(nil, "default", svc); err != nil || rev != index || len(insts) != 1 {
			t.Errorf("%s: revision %d with %d instances, %v; want %d with 1", svc, rev, len(insts), err, index)
		}
	}
}

// keptOf is what a restore into f keeps of it, as Node.RestoreBackup takes it.
func keptOf(t *testing.T, f *FSM) Kept {
	t.Helper()
	v := f.Store().View()
	k := Kept{ACLBootstrapped: v.ACLBootstrapped()}
	if err := v.Tokens(func(tk *store.Token) bool { k.Tokens = append(k.Tokens, tk); return true }); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestBackupRestoreKeepsTheClustersACLsWhenTheBackupHasNone: a backup of
// a cluster without ACLs (or not bootstrapped) restored into a
// bootstrapped one keeps that cluster's tokens and bootstrap mark. It used
// to leave the cluster with no token and not bootstrapped, so the first
// anonymous caller could bootstrap it and get a management token. A backup
// with ACL state of its own replaces the cluster's, as before.
func TestBackupRestoreKeepsTheClustersACLsWhenTheBackupHasNone(t *testing.T) {
	plain := newFSM()
	apply(plain, 1, mustEncode(t, RegisterType, register("web", "a", "10.0.0.1", 0, 1)))
	var noACL bytes.Buffer
	if err := WriteSnapshot(&noACL, plain.Store().View()); err != nil {
		t.Fatal(err)
	}
	withACL := newFSM()
	if err := resultErr(t, apply(withACL, 1, tokenCmd(t, "backup-root", "digest-b", true, "service::write", "operator:write", "acl:write"))); err != nil {
		t.Fatal(err)
	}
	var ownACL bytes.Buffer
	if err := WriteSnapshot(&ownACL, withACL.Store().View()); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name     string
		backup   []byte
		want     string // the accessor left
		wantKept bool
	}{
		{"a backup without ACL state", noACL.Bytes(), "root", true},
		{"a backup with ACL state of its own", ownACL.Bytes(), "backup-root", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFSM()
			if err := resultErr(t, apply(f, 1, tokenCmd(t, "root", "digest-r", true, "service::write", "operator:write", "acl:write"))); err != nil {
				t.Fatal(err)
			}
			var prepared bytes.Buffer
			prep, err := PrepareRestore(bytes.NewReader(c.backup), &prepared, func(uint64, uint64) uint64 { return 1 << 20 }, keptOf(t, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Restore(io.NopCloser(&prepared)); err != nil {
				t.Fatal(err)
			}
			toks := tokenList(t, f)
			if len(toks) != 1 || toks[0].AccessorID != c.want || !f.Store().View().ACLBootstrapped() || prep.KeptACL != c.wantKept {
				t.Fatalf("after the restore: tokens %+v, bootstrapped %v, kept %v; want only %s, bootstrapped, kept %v",
					toks, f.Store().View().ACLBootstrapped(), prep.KeptACL, c.want, c.wantKept)
			}
			if prep.ReplacedACL == c.wantKept || prep.Tokens != 1 {
				t.Fatalf("PrepareRestore said replaced %v, %d tokens; want replaced %v, 1 token", prep.ReplacedACL, prep.Tokens, !c.wantKept)
			}
		})
	}
}

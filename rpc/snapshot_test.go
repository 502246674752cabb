package rpc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/backup"
	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
	"github.com/roster-registry/roster/store"
)

// saveSnapshot saves a snapshot file through nd, as roster snapshot save does.
// filledSnapshot starts a 3-node cluster, registers n instances and saves
// a snapshot of it: the file and what its framing says.
func filledSnapshot(t *testing.T, n int) (context.Context, *testcluster.Cluster, []byte, backup.Info) {
	t.Helper()
	ctx := testcluster.Ctx(t)
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	fill(t, ctx, c.WaitLeader(), n)
	good := saveSnapshot(t, ctx, c.WaitLeader())
	info, err := backup.Verify(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	return ctx, c, good, info
}

// stateUnchanged notes the cluster's state hash and revision; the func it
// returns fails the test unless every node holds that state still.
func stateUnchanged(t *testing.T, ctx context.Context, c *testcluster.Cluster) func() {
	t.Helper()
	c.EnsureSame()
	before, err := c.WaitLeader().Cluster().Status(ctx, &rosterv1.StatusRequest{IncludeHash: true})
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		c.EnsureSame()
		after, err := c.WaitLeader().Cluster().Status(ctx, &rosterv1.StatusRequest{IncludeHash: true})
		if err != nil {
			t.Fatal(err)
		}
		if after.StateHash != before.StateHash || after.Revision != before.Revision {
			t.Fatalf("a refused restore changed the state: %s@%d -> %s@%d", before.StateHash, before.Revision, after.StateHash, after.Revision)
		}
	}
}

func saveSnapshot(t *testing.T, ctx context.Context, nd *testcluster.Node) []byte {
	t.Helper()
	stream, err := nd.Cluster().SnapshotSave(ctx, &rosterv1.SnapshotSaveRequest{})
	if err != nil {
		t.Fatalf("snapshot save on %s: %v", nd.ID, err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("snapshot save on %s: %v", nd.ID, err)
	}
	var f bytes.Buffer
	w, err := backup.NewWriter(&f, backup.Header{Revision: first.Revision, AppliedIndex: first.AppliedIndex, Created: time.Unix(0, first.CreatedUnixNs)})
	if err != nil {
		t.Fatal(err)
	}
	body := sha256.New()
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			t.Fatal("snapshot stream ended without its checksum")
		}
		if err != nil {
			t.Fatalf("snapshot save: %v", err)
		}
		if m.BodySha256 != nil {
			if !bytes.Equal(m.BodySha256, body.Sum(nil)) {
				t.Fatal("snapshot body checksum differs from the server's")
			}
			break
		}
		w.Write(m.Data)
		body.Write(m.Data)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Bytes()
}

// restoreSnapshot uploads a file through nd, as roster snapshot restore does.
func restoreSnapshot(ctx context.Context, nd *testcluster.Node, file []byte) (*rosterv1.SnapshotRestoreResponse, error) {
	up, err := nd.Cluster().SnapshotRestore(ctx)
	if err != nil {
		return nil, err
	}
	for len(file) > 0 {
		k := min(len(file), 100<<10)
		if err := up.Send(&rosterv1.SnapshotRestoreRequest{Data: file[:k]}); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		file = file[k:]
	}
	return up.CloseAndRecv()
}

// registryHash hashes what a backup carries from one cluster to another:
// every instance with its revisions. (The whole state hash also covers the
// members, the registry revision and the service revisions, which a
// restore takes from the running cluster or sets to its own revision.)
func registryHash(t *testing.T, nd *testcluster.Node) string {
	t.Helper()
	v := nd.Node.Store().View()
	h := sha256.New()
	if err := v.Instances(func(inst *store.Instance) bool {
		b, err := store.MarshalInstance(inst)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%d %x\n", len(b), b)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// serviceRevisionsAt fails unless every service of nd changed at rev
// exactly, as a restore at rev leaves them.
func serviceRevisionsAt(t *testing.T, nd *testcluster.Node, rev uint64) {
	t.Helper()
	if err := nd.Node.Store().View().ServiceRevisions(func(ns, svc string, got uint64) {
		if got != rev {
			t.Errorf("%s: service %s/%s at revision %d after the restore, want the restore's %d", nd.ID, ns, svc, got, rev)
		}
	}); err != nil {
		t.Fatal(err)
	}
}

func fill(t *testing.T, ctx context.Context, nd *testcluster.Node, n int) uint64 {
	t.Helper()
	var rev uint64
	for i := 0; i < n; i++ {
		inst := &rosterv1.Instance{Namespace: []string{"default", "prod"}[i%2], Service: fmt.Sprintf("svc%d", i%3),
			Id: fmt.Sprintf("i%d", i), Address: "10.1.1.1", Port: uint32(1000 + i)}
		resp, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: inst})
		if err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
		rev = resp.Revision
	}
	if _, err := nd.Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Namespace: "prod", Service: "svc1", Id: "i1"}); err != nil {
		t.Fatal(err)
	}
	return rev
}

func TestSnapshotSaveWipeRestore(t *testing.T) {
	ctx := testcluster.Ctx(t)
	old := testcluster.New(t, 3, testcluster.Options{})
	old.WaitMembersKnown()
	fill(t, ctx, old.Followers()[0], 30)
	file := saveSnapshot(t, ctx, old.Followers()[1])
	info, err := backup.Verify(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatalf("the saved file does not verify: %v", err)
	}
	old.EnsureSame()
	want := registryHash(t, old.WaitLeader())
	if info.Revision != old.WaitLeader().Node.Store().Revision() {
		t.Fatalf("file at revision %d, cluster at %d", info.Revision, old.WaitLeader().Node.Store().Revision())
	}
	old.Shutdown()

	// A fresh cluster, with something of its own the restore replaces.
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	if _, err := c.WaitLeader().Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("svc0", "mine", 1)}); err != nil {
		t.Fatal(err)
	}
	follower := c.Followers()[0]
	watch, err := follower.Registry().Watch(ctx, &rosterv1.WatchRequest{Service: "svc0",
		StartRead: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE}})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || !first.Reset_ || len(first.Events) != 1 {
		t.Fatalf("first watch message %v, %v: want the reset with one instance", first, err)
	}

	resp, err := restoreSnapshot(ctx, c.Followers()[1], file)
	if err != nil {
		t.Fatalf("restore through a follower: %v", err)
	}
	if resp.SourceRevision != info.Revision || resp.Revision <= info.Revision || resp.Instances != 29 ||
		resp.TokensReplaced || resp.Tokens == nil || *resp.Tokens != 0 {
		t.Fatalf("restore answered %v; file revision %d, no token either side", resp, info.Revision)
	}

	c.EnsureSame()
	for _, nd := range c.Nodes {
		if got := registryHash(t, nd); got != want {
			t.Fatalf("%s holds registry %s after the restore, the backup's cluster held %s", nd.ID, got, want)
		}
		serviceRevisionsAt(t, nd, resp.Revision)
		if rev := nd.Node.Store().Revision(); rev != resp.Revision {
			t.Fatalf("%s at revision %d, restore said %d", nd.ID, rev, resp.Revision)
		}
	}
	// The running cluster keeps its own members, so forwarding still works.
	c.WaitMembersKnown()

	// The watcher is reset at the restored revision with the backup's svc0.
	for {
		m, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch after restore: %v", err)
		}
		if m.Progress {
			continue
		}
		if !m.Reset_ || m.Revision != resp.Revision {
			t.Fatalf("after the restore the watcher got %v, want a reset at revision %d", m, resp.Revision)
		}
		ids := map[string]bool{}
		for _, e := range m.Events {
			ids[e.Instance.Id] = true
		}
		if len(ids) != 5 || ids["mine"] {
			t.Fatalf("reset holds %v, want the backup's five default/svc0 instances", ids)
		}
		break
	}
	// Revisions go on from the restore, on any node.
	r, err := c.Followers()[0].Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("svc0", "after", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Revision <= resp.Revision {
		t.Fatalf("a write after the restore got revision %d, not above %d", r.Revision, resp.Revision)
	}
	c.EnsureSame()
}

// TestSnapshotRestoreSaysWhetherTokensWereReplaced: a file without ACL
// state keeps the cluster's tokens, and the answer says so and how many
// there are; a file with ACL state of its own replaces them, and the
// answer says that. (One node: a restore makes every follower install a
// snapshot, and two in a row on a loaded machine can cost the harness's
// short-lease leader its leadership.)
func TestSnapshotRestoreSaysWhetherTokensWereReplaced(t *testing.T) {
	// One cluster at a time: the in-memory transports of two would share
	// node addresses.
	plain := testcluster.New(t, 1, testcluster.Options{})
	withoutTokens := saveSnapshot(t, testcluster.Ctx(t), plain.WaitLeader())
	plain.Shutdown()

	c := testcluster.New(t, 1, testcluster.Options{Server: func(o *rpc.Options) {
		o.ACL = rpc.ACLOptions{Enabled: true, BootstrapSecret: bootSecret}
	}})
	nd := c.WaitLeader()
	c.Eventually("the bootstrap token", 10*time.Second, func() bool {
		return nd.Node.Store().View().TokenBySecret(acl.HashSecret(bootSecret)) != nil
	})
	ctx := withToken(testcluster.Ctx(t), bootSecret)
	createToken(t, nd, "service::read")
	resp, err := restoreSnapshot(ctx, nd, withoutTokens)
	if err != nil {
		t.Fatal(err)
	}
	if resp.TokensReplaced || resp.GetTokens() != 2 {
		t.Fatalf("restore of a file without ACL state answered %v; want the cluster's 2 tokens kept", resp)
	}

	withTokens := saveSnapshot(t, ctx, nd)
	createToken(t, nd, "service::read")
	resp, err = restoreSnapshot(ctx, nd, withTokens)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.TokensReplaced || resp.GetTokens() != 2 {
		t.Fatalf("restore of a file holding 2 tokens answered %v; want tokens_replaced and 2 tokens", resp)
	}
	if n := tokenCount(t, nd); n != 2 {
		t.Fatalf("the node holds %d tokens after the restore, want the file's 2", n)
	}
}

// tokenCount is how many ACL tokens nd's state holds.
func tokenCount(t *testing.T, nd *testcluster.Node) int {
	t.Helper()
	n := 0
	if err := nd.Node.Store().View().Tokens(func(*store.Token) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSnapshotRestoreRefusesDamagedFiles(t *testing.T) {
	ctx, c, good, info := filledSnapshot(t, 12)
	// A file whose framing and checksum are right but whose body is cut:
	// only restoring it finds out.
	var cut bytes.Buffer
	w, _ := backup.NewWriter(&cut, info.Header)
	w.Write(good[backup.HeaderSize : backup.HeaderSize+info.BodySize-7])
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[backup.HeaderSize+40] ^= 0xff

	unchanged := stateUnchanged(t, ctx, c)
	for name, f := range map[string][]byte{
		"truncated":        good[:len(good)-100],
		"half":             good[:len(good)/2],
		"flipped byte":     flipped,
		"body cut, summed": cut.Bytes(),
		"not a snapshot":   []byte("hello, this is not a snapshot file at all, but it is long enough to hold a header and trailer"),
		"empty":            nil,
	} {
		for _, nd := range []*testcluster.Node{c.WaitLeader(), c.Followers()[0]} {
			_, err := restoreSnapshot(ctx, nd, f)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("%s file through %s: %v, want InvalidArgument", name, nd.ID, err)
			}
			t.Logf("%s through %s: %v", name, nd.ID, err)
		}
	}
	unchanged()
}

// TestSnapshotRestoreRefusesRecordsNoAPIAccepts: a file whose checksum is
// right but whose instance has a service name no API accepts ("SVC0") is
// refused as InvalidArgument naming the record, and nothing changes: such
// an instance could be neither read nor removed.
func TestSnapshotRestoreRefusesRecordsNoAPIAccepts(t *testing.T) {
	ctx, c, good, info := filledSnapshot(t, 3)
	// Rewrite the body with the first instance's service upper-cased.
	br := bytes.NewReader(good[backup.HeaderSize : backup.HeaderSize+info.BodySize])
	var body bytes.Buffer
	var hdr raftcmdv1.SnapshotHeader
	if err := protodelim.UnmarshalFrom(br, &hdr); err != nil {
		t.Fatal(err)
	}
	protodelim.MarshalTo(&body, &hdr)
	edited := false
	for {
		var rec raftcmdv1.SnapshotRecord
		if err := protodelim.UnmarshalFrom(br, &rec); err != nil {
			t.Fatal(err)
		}
		if inst := rec.GetInstance(); inst != nil && !edited {
			inst.Service, edited = strings.ToUpper(inst.Service), true
		}
		protodelim.MarshalTo(&body, &rec)
		if rec.GetEnd() != nil {
			break
		}
	}
	var bad bytes.Buffer
	w, _ := backup.NewWriter(&bad, info.Header)
	w.Write(body.Bytes())
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}

	unchanged := stateUnchanged(t, ctx, c)
	for _, nd := range []*testcluster.Node{c.WaitLeader(), c.Followers()[0]} {
		_, err := restoreSnapshot(ctx, nd, bad.Bytes())
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), `service "SVC`) {
			t.Fatalf("restore through %s: %v, want InvalidArgument naming the bad service", nd.ID, err)
		}
		t.Logf("through %s: %v", nd.ID, err)
	}
	unchanged()
}

// TestSnapshotRestoreFailuresSayWhetherItWasRestored: a restore Raft took
// and then failed to commit past (its enqueue timed out, or a leadership
// transfer began) is reported as outcome unknown, never as NOT_LEADER,
// which says nothing was restored; one Raft refused before taking it
// still says nothing was restored. Raft's answers are forced through a
// hook around its restore.
func TestSnapshotRestoreFailuresSayWhetherItWasRestored(t *testing.T) {
	var answer atomic.Pointer[func(restore func() error) error]
	c := testcluster.New(t, 3, testcluster.Options{Configure: func(cfg *cluster.Config) {
		cfg.TestHooks.RaftRestore = func(restore func() error) error { return (*answer.Load())(restore) }
		// Each restore sends both followers a snapshot, and a follower
		// answers no heartbeat while it installs one (raft installs in its
		// main loop): on a busy machine that outlasts the 100 ms lease of
		// the fast timeouts, and the leader steps down after nearly every
		// restore. A lease of a second outlasts the installs.
		cfg.UseLANTimeouts(4)
	}})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	fill(t, ctx, c.WaitLeader(), 5)
	file := saveSnapshot(t, ctx, c.WaitLeader())
	takenThen := func(err error) func(func() error) error {
		return func(restore func() error) error {
			if rerr := restore(); rerr != nil {
				return rerr
			}
			return err
		}
	}
	refused := func(err error) func(func() error) error {
		return func(func() error) error { return err }
	}
	tests := []struct {
		name   string
		raft   func(restore func() error) error
		code   codes.Code
		reason string
		want   string
	}{
		{"taken, then the no-op's enqueue timed out", takenThen(raft.ErrEnqueueTimeout), codes.Unavailable, rpc.ReasonOutcomeUnknown, "raft took the backup"},
		{"taken, then a transfer began", takenThen(raft.ErrLeadershipTransferInProgress), codes.Unavailable, rpc.ReasonOutcomeUnknown, "raft took the backup"},
		{"enqueue timed out before raft took it", refused(raft.ErrEnqueueTimeout), codes.Unavailable, rpc.ReasonNotLeader, "timed out"},
		{"a membership change not committed yet", refused(errors.New("cannot restore snapshot now, wait until the configuration entry at 9 has been applied (have applied 8)")),
			codes.Aborted, "", "nothing was restored"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer.Store(&tt.raft)
			// The answers hold while one leader leads throughout. On a busy
			// machine a leader may still miss its lease and step down
			// (after a restore, say); the follower then relays to a node
			// that no longer leads, which rightly answers NOT_LEADER, as
			// nothing was restored. A round in which leadership moved is
			// played again.
			for round := 1; ; round++ {
				nodes := leaderAndAFollower(c)
				leader, term := nodes[0], nodes[0].Node.Term()
				var wrong string
				for _, nd := range nodes {
					_, err := restoreSnapshot(ctx, nd, file)
					t.Logf("through %s: %v", nd.ID, err)
					if status.Code(err) != tt.code || rpc.Reason(err) != tt.reason || !strings.Contains(status.Convert(err).Message(), tt.want) {
						wrong = fmt.Sprintf("through %s: %v (reason %q), want %v with reason %q saying %q", nd.ID, err, rpc.Reason(err), tt.code, tt.reason, tt.want)
						break
					}
				}
				if wrong == "" {
					return
				}
				if (leader.Node.IsLeader() && leader.Node.Term() == term) || round == 5 {
					t.Fatal(wrong)
				}
				t.Logf("leadership moved from %s (term %d) during round %d; playing it again: %s", leader.ID, term, round, wrong)
			}
		})
	}
}

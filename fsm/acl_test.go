package fsm

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

func tokenCmd(t *testing.T, accessor, secretDigest string, bootstrap bool, rules ...string) []byte {
	t.Helper()
	return mustEncode(t, ACLSetTokenType, &raftcmdv1.ACLSetToken{Bootstrap: bootstrap, Token: &raftcmdv1.ACLToken{
		AccessorId: accessor, SecretSha256: []byte(secretDigest), Rules: rules, CreateUnixNs: 42}})
}

func resultErr(t *testing.T, res any) error {
	t.Helper()
	r, ok := res.(Result)
	if !ok {
		t.Fatalf("result %T", res)
	}
	return r.Err
}

func tokenList(t *testing.T, f *FSM) []store.Token {
	t.Helper()
	var out []store.Token
	if err := f.Store().View().Tokens(func(tk *store.Token) bool { out = append(out, *tk); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestACLBootstrapOnce(t *testing.T) {
	f := newFSM()
	if err := resultErr(t, apply(f, 1, tokenCmd(t, "a1", "s1", true, "acl:write"))); err != nil {
		t.Fatal(err)
	}
	if !f.Store().View().ACLBootstrapped() {
		t.Fatal("not bootstrapped")
	}
	if err := resultErr(t, apply(f, 2, tokenCmd(t, "a2", "s2", true))); !errors.Is(err, store.ErrACLBootstrapped) {
		t.Fatalf("second bootstrap: %v", err)
	}
	// The same bootstrap secret again (another leader, a restart): no-op.
	if err := resultErr(t, apply(f, 3, tokenCmd(t, "a3", "s1", true))); err != nil {
		t.Fatalf("bootstrap with the same secret: %v", err)
	}
	if err := resultErr(t, apply(f, 4, tokenCmd(t, "a4", "s1", false))); !errors.Is(err, store.ErrTokenExists) {
		t.Fatalf("a token with a used secret: %v", err)
	}
	if err := resultErr(t, apply(f, 5, mustEncode(t, ACLDeleteTokenType, &raftcmdv1.ACLDeleteToken{AccessorId: "nope"}))); !errors.Is(err, store.ErrTokenNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}
	toks := tokenList(t, f)
	if len(toks) != 1 || toks[0].AccessorID != "a1" || !toks[0].Bootstrap || toks[0].CreateIndex != 1 {
		t.Fatalf("tokens %+v", toks)
	}
}

func TestACLSnapshotRoundTrip(t *testing.T) {
	f := newFSM()
	apply(f, 1, regCmd(t, "web", "a", 80))
	apply(f, 2, tokenCmd(t, "boot", "s0", true, "service::write", "operator:write", "acl:write"))
	apply(f, 3, tokenCmd(t, "t1", "s1", false, "service:web:read"))
	apply(f, 4, tokenCmd(t, "t2", "s2", false, "operator:read"))
	apply(f, 5, mustEncode(t, ACLDeleteTokenType, &raftcmdv1.ACLDeleteToken{AccessorId: "t2"}))
	data := snapshotBytes(t, f)

	g := newFSM()
	apply(g, 1, tokenCmd(t, "stale", "sx", false, "acl:write"))
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	a, b := tokenList(t, f), tokenList(t, g)
	if len(a) != 2 || len(b) != 2 {
		t.Fatalf("tokens %+v restored as %+v", a, b)
	}
	for i := range a {
		if a[i].AccessorID != b[i].AccessorID || a[i].SecretHex != b[i].SecretHex || a[i].CreateIndex != b[i].CreateIndex ||
			a[i].CreateUnixNs != b[i].CreateUnixNs || a[i].Bootstrap != b[i].Bootstrap || len(a[i].Rules) != len(b[i].Rules) {
			t.Fatalf("token %d: %+v restored as %+v", i, a[i], b[i])
		}
	}
	if !g.Store().View().ACLBootstrapped() {
		t.Fatal("bootstrap mark lost")
	}
	if g.Store().View().TokenBySecret([]byte("s1")) == nil {
		t.Fatal("token not found by its secret digest after restore")
	}
	if dump(t, f) != dump(t, g) {
		t.Fatal("registry state differs")
	}
}

// TestRestorePreACLSnapshot: a snapshot written before ACL records existed
// (header, instance, end) restores, with no tokens and no bootstrap, and
// replaces whatever ACL state the node had.
func TestRestorePreACLSnapshot(t *testing.T) {
	var buf bytes.Buffer
	extinct := uint64(0)
	w := func(m any) {
		var err error
		switch v := m.(type) {
		case *raftcmdv1.SnapshotHeader:
			_, err = protodelim.MarshalTo(&buf, v)
		case *raftcmdv1.SnapshotRecord:
			_, err = protodelim.MarshalTo(&buf, v)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	w(&raftcmdv1.SnapshotHeader{Version: snapshotVersion, Revision: 7, AppliedIndex: 9, ExtinctRevision: &extinct})
	w(&raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_Instance{Instance: &raftcmdv1.Instance{
		Namespace: "default", Service: "web", Id: "a", Address: "10.0.0.1", Port: 80, Enabled: true, CreateRevision: 7, ModRevision: 7, RegistrationRevision: 7}}})
	w(&raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_End{End: &raftcmdv1.SnapshotEnd{Records: 1}}})

	g := newFSM()
	apply(g, 1, tokenCmd(t, "boot", "s0", true, "acl:write"))
	if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if len(tokenList(t, g)) != 0 || g.Store().View().ACLBootstrapped() {
		t.Fatal("ACL state survived a restore of a snapshot without it")
	}
	if _, insts, _ := g.Store().View().Service(nil, "default", "web"); len(insts) != 1 {
		t.Fatalf("instances %v", insts)
	}
	if got, _ := g.Applied(); got != 9 {
		t.Fatalf("applied %d", got)
	}
}

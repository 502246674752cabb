package main

import (
	"encoding/json"
	"google.golang.org/protobuf/proto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

func TestSnapshotSaveInspectRestore(t *testing.T) {
	ctx := testContext(t)
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := c.Leader().Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: id, Address: "10.0.0.1", Port: 80}}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "b.snap")
	addr := c.Followers()[0].Addr
	code, out, errOut := runCLI(t, ctx, addr, "snapshot", "save", file, "-o", "json")
	if code != 0 {
		t.Fatalf("save: exit %d: %s", code, errOut)
	}
	var saved snapshotJSON
	if err := json.Unmarshal([]byte(out), &saved); err != nil {
		t.Fatalf("save -o json: %v: %s", err, out)
	}
	if saved.Instances != 3 || saved.Services != 1 || saved.Namespaces != 1 || saved.Revision == 0 || len(saved.Checksum) != 64 {
		t.Fatalf("save printed %+v", saved)
	}
	// An existing file is kept unless --force is given.
	if err := os.WriteFile(file+".keep", []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, ctx, addr, "snapshot", "save", file+".keep")
	if kept, _ := os.ReadFile(file + ".keep"); code != 1 || string(kept) != "precious" ||
		errOut != "roster: "+file+".keep already exists; pass --force to replace it\n" {
		t.Fatalf("save over a file: exit %d %q, file now %q", code, errOut, kept)
	}
	if code, _, errOut = runCLI(t, ctx, addr, "snapshot", "save", "--force", file+".keep"); code != 0 {
		t.Fatalf("save --force: exit %d: %s", code, errOut)
	}
	if _, err := inspectFile(file + ".keep"); err != nil {
		t.Fatalf("save --force left %v", err)
	}
	code, out, errOut = runCLI(t, ctx, addr, "snapshot", "inspect", file, "-o", "json")
	var inspected snapshotJSON
	if code != 0 || json.Unmarshal([]byte(out), &inspected) != nil || inspected != saved {
		t.Fatalf("inspect: exit %d %s %s; want %+v", code, out, errOut, saved)
	}
	if _, err := c.Leader().Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "a"}); err != nil {
		t.Fatal(err)
	}

	// A damaged copy is refused here, before anything is sent.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.snap")
	if err := os.WriteFile(bad, raw[:len(raw)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"inspect", "restore"} {
		code, _, errOut = runCLI(t, ctx, addr, "snapshot", cmd, bad)
		if code != 1 || !strings.Contains(errOut, "invalid snapshot file") {
			t.Fatalf("%s of a cut file: exit %d, %q", cmd, code, errOut)
		}
	}

	code, out, errOut = runCLI(t, ctx, addr, "snapshot", "restore", file)
	if code != 0 || !strings.Contains(out, "restored 3 instances") || !strings.HasSuffix(out, "\nACL tokens: none, in the file or the cluster\n") {
		t.Fatalf("restore: exit %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "; the leader is checking the file and restoring it\n") {
		t.Fatalf("restore said nothing after the upload: %q", errOut)
	}
	c.EnsureSame()
	for _, nd := range c.Nodes {
		if n := nd.Node.Store().View().Count(); n != 3 {
			t.Fatalf("%s holds %d instances after the restore, want 3", nd.ID, n)
		}
	}
	// A second restore right after the first: on a loaded machine, with
	// the test cluster's fast timeouts, the leader may lose its term while
	// committing it (outcome unknown, as an operator would be told); the
	// operator's answer is to restore again.
	for range 3 {
		if code, out, errOut = runCLI(t, ctx, addr, "snapshot", "restore", file, "-o", "json"); code == 0 || !strings.Contains(errOut, "outcome unknown") {
			break
		}
		t.Logf("restore again after: %s", errOut)
	}
	var restored map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &restored) != nil {
		t.Fatalf("restore -o json: exit %d: %s %s", code, out, errOut)
	}
	if restored["instances"] != 3.0 || restored["tokens_replaced"] != false || restored["tokens"] != 0.0 {
		t.Fatalf("restore -o json printed %v; want 3 instances, tokens_replaced false, 0 tokens", restored)
	}
}

// TestRestoredTokens: the line restore prints says whether the file's ACL
// tokens replaced the cluster's or the cluster kept its own, and how many;
// none against a server that does not say.
func TestRestoredTokens(t *testing.T) {
	for _, tc := range []struct {
		resp *rosterv1.SnapshotRestoreResponse
		want string
	}{
		{&rosterv1.SnapshotRestoreResponse{TokensReplaced: true, Tokens: proto.Uint64(3)}, "ACL tokens: replaced by the file's (3 now)"},
		{&rosterv1.SnapshotRestoreResponse{Tokens: proto.Uint64(2)}, "ACL tokens: the file holds none; the cluster kept its own (2)"},
		{&rosterv1.SnapshotRestoreResponse{Tokens: proto.Uint64(0)}, "ACL tokens: none, in the file or the cluster"},
		// A server older than the fields says nothing of the tokens.
		{&rosterv1.SnapshotRestoreResponse{}, ""},
	} {
		if got := restoredTokens(tc.resp); got != tc.want {
			t.Errorf("restoredTokens(%v) = %q, want %q", tc.resp, got, tc.want)
		}
	}
}

// TestPlaceFileKeepsAFileThatAppeared covers the end of a save without
// --force: a file created at the path while the save ran is not replaced.
func TestPlaceFileKeepsAFileThatAppeared(t *testing.T) {
	dir := t.TempDir()
	tmp, path := filepath.Join(dir, "s.part"), filepath.Join(dir, "s.snap")
	for name, body := range map[string]string{tmp: "new", path: "old"} {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := placeFile(tmp, path, false); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("placeFile over a file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("file replaced: %q", b)
	}
	if err := placeFile(tmp, path, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("--force kept %q", b)
	}
}

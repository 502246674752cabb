package main

import (
	"encoding/json"
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
	if code != 0 || !strings.Contains(out, "restored 3 instances") {
		t.Fatalf("restore: exit %d: %s %s", code, out, errOut)
	}
	c.EnsureSame()
	for _, nd := range c.Nodes {
		if n := nd.Node.Store().View().Count(); n != 3 {
			t.Fatalf("%s holds %d instances after the restore, want 3", nd.ID, n)
		}
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type snapshotSummary struct {
	Revision  uint64 `json:"revision"`
	Instances int    `json:"instances"`
	Services  int    `json:"services"`
	Checksum  string `json:"checksum"`
}

// TestBackupRebuildAndRecoverWithProcesses runs the operations guide on
// real rosterd processes: back up a cluster, lose it, rebuild a new one
// from the file; then lose two of its three nodes for good, recover the
// survivor with peers.json, and grow it again with a new node.
func TestBackupRebuildAndRecoverWithProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	old := StartCluster(t, 3)
	old.Leader()
	for i := 0; i < 6; i++ {
		if _, stderr, code := old.CLI("--addr", old.Addrs(), "register", fmt.Sprintf("svc%d", i%2), fmt.Sprintf("i%d", i), fmt.Sprintf("10.0.0.%d:80", i+1)); code != 0 {
			t.Fatalf("register: %s", stderr)
		}
	}
	file := filepath.Join(t.TempDir(), "backup.snap")
	var saved, inspected snapshotSummary
	old.MustJSON(&saved, "--addr", old.Procs[1].GRPC, "snapshot", "save", file)
	old.MustJSON(&inspected, "snapshot", "inspect", file)
	if saved.Instances != 6 || saved.Services != 2 || inspected != saved {
		t.Fatalf("save %+v, inspect %+v", saved, inspected)
	}
	for _, p := range old.Procs {
		p.Kill()
	}

	// Rebuild: a new, empty cluster, then restore.
	c := StartCluster(t, 3)
	c.Leader()
	var restored struct {
		Revision       uint64 `json:"revision"`
		SourceRevision uint64 `json:"source_revision"`
		Instances      int    `json:"instances"`
	}
	c.MustJSON(&restored, "--addr", c.Addrs(), "snapshot", "restore", file)
	if restored.Instances != 6 || restored.SourceRevision != saved.Revision || restored.Revision <= saved.Revision {
		t.Fatalf("restore answered %+v for a file at revision %d", restored, saved.Revision)
	}
	c.Eventually("every node at the restored revision with the backup's instances", 30*time.Second, func() bool {
		for _, p := range c.Procs {
			var g getResult
			out, _, code := c.CLI("--addr", p.GRPC, "get", "svc0", "--consistency", "stale", "-o", "json")
			if code != 0 || json.Unmarshal([]byte(out), &g) != nil || len(g.Instances) != 3 {
				return false
			}
		}
		return true
	})

	// Two nodes lost for good; the survivor alone cannot lead.
	survivor := c.Procs[2]
	c.Procs[0].Kill()
	c.Procs[1].Kill()
	if err := survivor.Terminate(20 * time.Second); err != nil {
		t.Fatalf("stop the survivor: %v", err)
	}
	peers := fmt.Sprintf(`[{"id": %q, "address": %q, "non_voter": false}]`, survivor.ID, survivor.Raft)
	if err := os.WriteFile(filepath.Join(survivor.DataDir, "peers.json"), []byte(peers), 0o600); err != nil {
		t.Fatal(err)
	}
	survivor.Start()
	c.Eventually("the survivor to lead alone", 30*time.Second, func() bool {
		st, ok := c.Status(survivor)
		return ok && st.State == "leader"
	})
	if _, err := os.Stat(filepath.Join(survivor.DataDir, "peers.json.applied")); err != nil {
		t.Fatalf("peers.json not renamed: %v", err)
	}
	var g getResult
	c.MustJSON(&g, "--addr", survivor.GRPC, "get", "svc1")
	if len(g.Instances) != 3 {
		t.Fatalf("the recovered node holds %v", g.Instances)
	}
	if _, stderr, code := c.CLI("--addr", survivor.GRPC, "register", "svc1", "after", "10.0.1.1:80"); code != 0 {
		t.Fatalf("write after recovery: %s", stderr)
	}

	// A new node joins the recovered cluster.
	ports := FreePorts(t, 2)
	n4 := &Proc{ID: "n4", GRPC: fmt.Sprintf("127.0.0.1:%d", ports[0]), Raft: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		DataDir: filepath.Join(t.TempDir(), "n4"), rosterd: survivor.rosterd, t: t}
	n4.LogPath = n4.DataDir + ".log"
	n4.args = []string{"--node-id", n4.ID, "--data-dir", n4.DataDir, "--grpc-addr", n4.GRPC, "--raft-addr", n4.Raft, "--join", survivor.GRPC}
	c.Procs = append(c.Procs, n4)
	n4.Start()
	c.Eventually("n4 to hold the recovered data", 30*time.Second, func() bool {
		var g getResult
		out, _, code := c.CLI("--addr", n4.GRPC, "get", "svc1", "--consistency", "stale", "-o", "json")
		return code == 0 && json.Unmarshal([]byte(out), &g) == nil && len(g.Instances) == 4
	})
	ms, ok := c.members(survivor.GRPC)
	if !ok || len(ms.Members) != 2 {
		t.Fatalf("members after the join: %+v", ms)
	}
	var ids []string
	for _, m := range ms.Members {
		ids = append(ids, m.NodeID)
	}
	if got := strings.Join(ids, ","); got != "n3,n4" && got != "n4,n3" {
		t.Fatalf("members %s", got)
	}
}

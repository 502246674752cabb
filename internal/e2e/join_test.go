package e2e

import (
	"encoding/json"
	"testing"
	"time"
)

type members struct {
	Members []struct {
		NodeID  string `json:"node_id"`
		APIAddr string `json:"api_addr"`
		Voter   bool   `json:"voter"`
		Leader  bool   `json:"leader"`
		Healthy bool   `json:"healthy"`
	} `json:"members"`
}

func (c *Cluster) members(addr string) (members, bool) {
	var ms members
	stdout, _, code := c.CLI("--addr", addr, "members", "-o", "json", "--timeout", "3s")
	return ms, code == 0 && json.Unmarshal([]byte(stdout), &ms) == nil
}

// TestBootstrapJoinRemoveTransfer grows a cluster from one --bootstrap node
// with --join (one voter, one non-voter), moves leadership, and removes a node.
func TestBootstrapJoinRemoveTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	rosterd, roster := Binaries(t)
	ports := FreePorts(t, 6)
	base := t.TempDir()
	c := &Cluster{T: t, Roster: roster}
	for i := 0; i < 3; i++ {
		p := newProc(t, rosterd, base, ports, i)
		p.args = []string{"--node-id", p.ID, "--data-dir", p.DataDir, "--grpc-addr", p.GRPC, "--raft-addr", p.Raft}
		switch i {
		case 0:
			p.args = append(p.args, "--bootstrap")
		case 1:
			p.args = append(p.args, "--join", c.Procs[0].GRPC)
		case 2:
			p.args = append(p.args, "--join", c.Procs[0].GRPC+","+c.Procs[1].GRPC, "--non-voter")
		}
		c.Procs = append(c.Procs, p)
	}
	c.killOnCleanup(40)
	for _, p := range c.Procs {
		p.Start()
	}
	c.Eventually("three members with API addresses", 30*time.Second, func() bool {
		ms, ok := c.members(c.Procs[0].GRPC)
		if !ok || len(ms.Members) != 3 {
			return false
		}
		for _, m := range ms.Members {
			if m.APIAddr == "" || !m.Healthy || m.Voter != (m.NodeID != "n3") {
				return false
			}
		}
		return true
	})

	// The non-voter serves reads of writes made elsewhere.
	if _, stderr, code := c.CLI("--addr", c.Procs[1].GRPC, "register", "web", "a", "10.0.0.1:80"); code != 0 {
		t.Fatalf("register via joined voter: %s", stderr)
	}
	if got := c.ids(c.Procs[2].GRPC); got["a"] != 80 {
		t.Fatalf("non-voter read %v", got)
	}

	// Hand leadership to n2, through n3.
	if _, stderr, code := c.CLI("--addr", c.Procs[2].GRPC, "transfer-leadership", "n2"); code != 0 {
		t.Fatalf("transfer-leadership: %s", stderr)
	}
	c.Eventually("n2 to lead", 30*time.Second, func() bool {
		st, ok := c.Status(c.Procs[0])
		return ok && st.LeaderID == "n2"
	})

	// Remove n3; the others no longer list it.
	if _, stderr, code := c.CLI("--addr", c.Procs[0].GRPC, "remove-node", "n3"); code != 0 {
		t.Fatalf("remove-node: %s", stderr)
	}
	c.Eventually("n3 gone from the member list", 30*time.Second, func() bool {
		ms, ok := c.members(c.Procs[1].GRPC)
		if !ok {
			return false
		}
		for _, m := range ms.Members {
			if m.NodeID == "n3" {
				return false
			}
		}
		return len(ms.Members) == 2
	})
	// Removing an unknown node is a clear NotFound.
	if _, stderr, code := c.CLI("--addr", c.Procs[0].GRPC, "remove-node", "n9"); code == 0 || stderr == "" {
		t.Fatalf("remove-node of an unknown node: exit %d, stderr %q", code, stderr)
	}
	// A restarted joined node keeps its identity and does not join twice.
	c.Procs[1].Kill()
	c.Procs[1].Start()
	c.Eventually("n2 back with the same identity", 30*time.Second, func() bool {
		ms, ok := c.members(c.Procs[0].GRPC)
		if !ok || len(ms.Members) != 2 {
			return false
		}
		for _, m := range ms.Members {
			if !m.Healthy {
				return false
			}
		}
		return true
	})
}

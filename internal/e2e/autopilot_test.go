package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// apMembers is roster members -o json with autopilot's view.
type apMembers struct {
	Members []struct {
		NodeID      string `json:"node_id"`
		Voter       bool   `json:"voter"`
		ReadReplica bool   `json:"read_replica"`
		Autopilot   *struct {
			State  string `json:"state"`
			Failed bool   `json:"failed"`
		} `json:"autopilot"`
	} `json:"members"`
}

func (c *Cluster) apMembers(addr string) (map[string]string, apMembers, bool) {
	var ms apMembers
	stdout, _, code := c.CLI("--addr", addr, "members", "-o", "json", "--timeout", "3s")
	if code != 0 || json.Unmarshal([]byte(stdout), &ms) != nil {
		return nil, ms, false
	}
	roles := map[string]string{}
	for _, m := range ms.Members {
		switch {
		case m.Autopilot != nil && m.Autopilot.Failed:
			roles[m.NodeID] = "failed"
		case m.Autopilot != nil:
			roles[m.NodeID] = m.Autopilot.State
		}
	}
	return roles, ms, true
}

// TestAutopilotReplacesAFailedServer runs autopilot in real rosterd
// processes with bolt files: a cluster grown with --bootstrap and --join,
// a server killed for good, a read replica that is never promoted, the
// dead server kept while it would leave fewer voters than the minimum
// quorum, then removed once a replacement joins, which is staged and
// promoted.
func TestAutopilotReplacesAFailedServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	rosterd, roster := Binaries(t)
	ports := FreePorts(t, 10)
	base := t.TempDir()
	c := &Cluster{T: t, Roster: roster}
	ap := []string{"--autopilot-dead-server-after", "2s", "--autopilot-server-stabilization-time", "2s", "--autopilot-min-quorum", "3",
		"--log-level", "debug"}
	for i := 0; i < 5; i++ {
		p := newProc(t, rosterd, base, ports, i)
		p.args = append([]string{"--node-id", p.ID, "--data-dir", p.DataDir, "--grpc-addr", p.GRPC, "--raft-addr", p.Raft}, ap...)
		switch i {
		case 0:
			p.args = append(p.args, "--bootstrap")
		case 3: // the read replica
			p.args = append(p.args, "--join", c.Procs[0].GRPC, "--non-voter")
		default:
			p.args = append(p.args, "--join", c.Procs[0].GRPC)
		}
		c.Procs = append(c.Procs, p)
	}
	c.killOnCleanup(40)
	n1, n2, n3, r, n5 := c.Procs[0], c.Procs[1], c.Procs[2], c.Procs[3], c.Procs[4]
	for _, p := range []*Proc{n1, n2, n3, r} {
		p.Start()
	}
	c.Eventually("three voters and a replica", 60*time.Second, func() bool {
		roles, _, ok := c.apMembers(n2.GRPC)
		return ok && len(roles) == 4 && roles["n2"] == "voter" && roles["n3"] == "voter" && roles["n4"] == "read-replica"
	})

	n3.Kill()
	c.Eventually("autopilot to find n3 failed", 60*time.Second, func() bool {
		roles, _, ok := c.apMembers(n1.GRPC)
		return ok && roles["n3"] == "failed"
	})
	// Three voters with one failed: removing it would leave two, fewer
	// than the minimum quorum. Autopilot says so at every prune (2 s
	// apart); three of them pass.
	const refusal = "will not remove server node as it would leave less voters than the minimum number allowed"
	from := logCount(c.Procs, refusal)
	c.Eventually("three prunes to refuse to remove n3", 60*time.Second, func() bool { return logCount(c.Procs, refusal) >= from+3 })
	if roles, _, ok := c.apMembers(n1.GRPC); !ok || roles["n3"] != "failed" {
		t.Fatalf("n3 after three prunes: %v (ok %v); want it kept, failed, at the minimum quorum", roles, ok)
	}

	n5.Start()
	c.Eventually("n3 removed and n5 promoted", 90*time.Second, func() bool {
		roles, _, ok := c.apMembers(n1.GRPC)
		_, has3 := roles["n3"]
		return ok && !has3 && roles["n5"] == "voter" && roles["n4"] == "read-replica"
	})
	if _, stderr, code := c.CLI("--addr", n5.GRPC, "register", "web", "after", "10.0.0.9:80"); code != 0 {
		t.Fatalf("register via the replacement: %s", stderr)
	}
	if got := c.ids(r.GRPC); got["after"] != 80 {
		t.Fatalf("the replica read %v", got)
	}
}

// logCount counts the lines of the processes' logs that contain phrase.
func logCount(ps []*Proc, phrase string) int {
	n := 0
	for _, p := range ps {
		b, _ := os.ReadFile(p.LogPath)
		n += strings.Count(string(b), phrase)
	}
	return n
}

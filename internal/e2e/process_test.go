package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

type getResult struct {
	Revision  uint64 `json:"revision"`
	Instances []struct {
		ID          string `json:"id"`
		Port        int    `json:"port"`
		ModRevision uint64 `json:"mod_revision"`
	} `json:"instances"`
}

func (c *Cluster) ids(addr string, extra ...string) map[string]int {
	c.T.Helper()
	var got getResult
	c.MustJSON(&got, append([]string{"--addr", addr, "get", "web"}, extra...)...)
	out := map[string]int{}
	for _, i := range got.Instances {
		out[i.ID] = i.Port
	}
	return out
}

func TestProcessesSurviveKillAndFullRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := StartCluster(t, 3)
	leader := c.Leader()
	var follower *Proc
	for _, p := range c.Procs {
		if p != leader {
			follower = p
			break
		}
	}
	want := map[string]int{}
	register := func(via *Proc, id string, port int) uint64 {
		t.Helper()
		var res struct {
			Revision uint64 `json:"revision"`
		}
		// Retried while the cluster elects a leader: Register is an idempotent upsert.
		var stderr string
		var code int
		deadline := time.Now().Add(30 * time.Second)
		for {
			var stdout string
			stdout, stderr, code = c.CLI("--addr", via.GRPC, "register", "web", id, fmt.Sprintf("10.0.0.1:%d", port), "-o", "json")
			if code == 0 {
				if _, err := fmt.Sscanf(strings.TrimSpace(stdout), `{"revision": %d}`, &res.Revision); err != nil {
					t.Fatalf("register output %q: %v", stdout, err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("register %s via %s: exit %d: %s", id, via.ID, code, stderr)
			}
			time.Sleep(200 * time.Millisecond)
		}
		want[id] = port
		return res.Revision
	}

	// 1. Through a follower, with the CLI.
	rev := register(follower, "a", 1001)
	if rev == 0 {
		t.Fatal("register returned revision 0")
	}
	for _, p := range c.Procs {
		if got := c.ids(p.GRPC); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: linearizable get = %v, want %v", p.ID, got, want)
		}
	}

	// 2. kill -9 the leader; write through a survivor.
	leader.Kill()
	var survivors []*Proc
	for _, p := range c.Procs {
		if p != leader {
			survivors = append(survivors, p)
		}
	}
	newLeader := c.Leader(survivors...)
	if newLeader == leader {
		t.Fatal("killed node still reported as leader")
	}
	rev = register(survivors[0], "b", 1002)

	// 3. Restart the killed node from its data dir: it catches up.
	leader.Start()
	c.Eventually("the restarted node to catch up", 30*time.Second, func() bool {
		stdout, _, code := c.CLI("--addr", leader.GRPC, "get", "web", "--consistency", "stale",
			"--min-revision", fmt.Sprint(rev), "-o", "json", "--timeout", "2s")
		return code == 0 && strings.Contains(stdout, `"b"`)
	})
	if got := c.ids(leader.GRPC, "--consistency", "stale"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restarted %s has %v, want %v", leader.ID, got, want)
	}

	// 4. More writes, then kill -9 every node and restart them all.
	for i := 0; i < 20; i++ {
		register(c.Procs[i%3], fmt.Sprintf("c%02d", i), 2000+i)
	}
	for _, p := range c.Procs {
		p.Kill()
	}
	for _, p := range c.Procs {
		p.Start()
	}
	c.Leader()
	for _, p := range c.Procs {
		var got map[string]int
		c.Eventually(p.ID+" to answer a linearizable get", 30*time.Second, func() bool {
			stdout, _, code := c.CLI("--addr", p.GRPC, "get", "web", "-o", "json", "--timeout", "3s")
			if code != 0 {
				return false
			}
			got = parseIDs(t, stdout)
			return true
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after a full restart %s has %v, want %v: acknowledged writes lost", p.ID, got, want)
		}
	}

	// 5. SIGTERM is a graceful stop with exit status 0.
	for _, p := range c.Procs {
		if err := p.Terminate(20 * time.Second); err != nil {
			t.Fatalf("SIGTERM %s: %v", p.ID, err)
		}
	}
}

func parseIDs(t *testing.T, stdout string) map[string]int {
	t.Helper()
	var got getResult
	if err := jsonUnmarshal(stdout, &got); err != nil {
		t.Fatalf("bad get output %q: %v", stdout, err)
	}
	out := map[string]int{}
	for _, i := range got.Instances {
		out[i.ID] = i.Port
	}
	return out
}

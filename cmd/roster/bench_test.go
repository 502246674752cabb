package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

func TestBenchCountsCallsAndErrors(t *testing.T) {
	f := startFake(t)
	ctx := testContext(t)
	code, stdout, stderr := runCLI(t, ctx, f.addr, "bench", "register", "--count", "200", "--duration", "0", "--clients", "8", "--keys", "10", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res benchResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("bad JSON %q: %v", stdout, err)
	}
	if res.Ops != 200 || res.Errors != 0 || res.Clients != 8 || res.OpsPerS <= 0 || res.LatencyMS["p99"] <= 0 {
		t.Fatalf("result %+v", res)
	}
	regs := f.calls("Register")
	if len(regs) != 200 {
		t.Fatalf("server saw %d registers, want 200", len(regs))
	}
	ids := map[string]bool{}
	for _, r := range regs {
		ids[r.(*rosterv1.RegisterRequest).Instance.Id] = true
	}
	if len(ids) != 10 {
		t.Fatalf("registers touched %d keys, want --keys 10", len(ids))
	}

	f.setFail("GetService", status.Error(codes.Unavailable, "no leader"))
	code, stdout, _ = runCLI(t, ctx, f.addr, "bench", "get", "--count", "20", "--duration", "0", "--clients", "2", "--keys", "3")
	if code != 0 || !strings.Contains(stdout, "errors Unavailable: 20 (first: no leader)") {
		t.Fatalf("errors not reported: exit %d\n%s", code, stdout)
	}
}

// TestBenchCallsOutliveTheRun: each call of a timed run has --timeout of
// its own, not what is left of the run. A server answers a little before
// its caller's deadline (a write's outcome unknown, say): with calls tied
// to the run's end, the writes still out at its end came back as errors
// the bench counted.
func TestBenchCallsOutliveTheRun(t *testing.T) {
	f := startFake(t)
	ctx := testContext(t)
	code, stdout, stderr := runCLI(t, ctx, f.addr, "--timeout", "1m", "bench", "register", "--duration", "300ms", "--clients", "2", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res benchResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("bad JSON %q: %v", stdout, err)
	}
	f.mu.Lock()
	left := slices.Clone(f.registerLeft)
	f.mu.Unlock()
	if res.Ops == 0 || res.Errors != 0 || len(left) == 0 {
		t.Fatalf("result %+v, %d registers with deadlines", res, len(left))
	}
	for _, d := range left {
		if d < 5*time.Second { // the test's own context ends sooner than --timeout
			t.Fatalf("a register arrived with its deadline %v away: tied to the 300ms run, not --timeout 1m", d)
		}
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	f := startFake(t)
	ctx := testContext(t)
	for _, args := range [][]string{
		{"bench", "delete"},
		{"bench", "register", "--clients", "0"},
		{"bench", "register", "--duration", "0"},
		{"bench", "get", "--consistency", "eventual"},
		{"bench", "watch", "--watchers", "0"},
		{"bench", "watch", "--watch-on", "nobody"},
		{"bench", "watch", "--replicas", "2"},
		{"bench", "watch", "--local", "--replicas", "-1"},
		{"bench", "watch", "--local", "--replicas", "17"},
		{"bench", "register", "--local", "--replicas", "2"},
		{"bench", "watch", "--local", "--watch-on", "replicas"},
		{"bench", "failover", "--rounds", "0"},
		{"bench", "memory"},
		{"bench", "memory", "--local", "--pids", "1"},
		{"bench", "keepalive", "--streams", "0"},
		{"bench", "keepalive", "--pids", "1,2"},
	} {
		code, _, stderr := runCLI(t, ctx, f.addr, args...)
		if code != exitUsage || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Fatalf("%v: exit %d, stderr %q: want a one-line usage error", args, code, stderr)
		}
	}
	if f.total() != 0 {
		t.Fatalf("a usage error sent %d calls", f.total())
	}
}

func TestWatchPlacementDefaultsToReplicas(t *testing.T) {
	for _, c := range []struct {
		flag     string
		replicas int
		want     string
	}{
		{"", 0, "all"},
		{"", 2, "replicas"},
		{"all", 2, "all"},
		{"voters", 2, "voters"},
		{"leader", 0, "leader"},
	} {
		if got := watchPlacement(c.flag, c.replicas); got != c.want {
			t.Errorf("watchPlacement(%q, %d) = %q, want %q", c.flag, c.replicas, got, c.want)
		}
	}
}

func TestWatchNodesAndLayout(t *testing.T) {
	n1, n2, n3 := &benchNode{addr: "n1"}, &benchNode{addr: "n2"}, &benchNode{addr: "n3"}
	r1, r2 := &benchNode{addr: "r1", replica: true}, &benchNode{addr: "r2", replica: true}
	nodes := []*benchNode{n1, n2, n3, r1, r2}
	leader := n2
	addrs := func(ns []*benchNode) string {
		var out []string
		for _, n := range ns {
			out = append(out, n.addr)
		}
		return strings.Join(out, ",")
	}
	for placement, want := range map[string]string{
		"all":       "n1,n2,n3,r1,r2",
		"voters":    "n1,n2,n3",
		"leader":    "n2",
		"followers": "n1,n3",
		"replicas":  "r1,r2",
	} {
		if got := addrs(watchNodes(nodes, leader, placement)); got != want {
			t.Errorf("watchNodes %s = %s, want %s", placement, got, want)
		}
	}
	if got := addrs(watchNodes(nodes[:3], leader, "replicas")); got != "" {
		t.Errorf("replicas of a cluster without any = %q", got)
	}

	layout := func(on []*benchNode, watchers, conns int) string {
		var out []string
		for _, l := range watchLayout(nodes, on, leader, watchers, conns) {
			out = append(out, fmt.Sprintf("%s:%s:%d", l.Addr, l.Role, l.Watchers))
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		on              []*benchNode
		watchers, conns int
		want            string
	}{
		{[]*benchNode{r1, r2}, 20000, 16, "n1:follower:0 n2:leader:0 n3:follower:0 r1:replica:10000 r2:replica:10000"},
		{[]*benchNode{n1, n2, n3}, 10000, 16, "n1:follower:3334 n2:leader:3333 n3:follower:3333 r1:replica:0 r2:replica:0"},
		// Watcher i goes to connection i mod 6, connection j to node j mod 3.
		{[]*benchNode{n1, n2, n3}, 10, 2, "n1:follower:4 n2:leader:3 n3:follower:3 r1:replica:0 r2:replica:0"},
		// Fewer watchers than connections.
		{[]*benchNode{r1, r2}, 3, 4, "n1:follower:0 n2:leader:0 n3:follower:0 r1:replica:2 r2:replica:1"},
	} {
		if got := layout(c.on, c.watchers, c.conns); got != c.want {
			t.Errorf("layout of %d watchers, %d conns:\n got %s\nwant %s", c.watchers, c.conns, got, c.want)
		}
	}
}

func TestMarkReplicasAsksTheMembers(t *testing.T) {
	voter, replica := startFake(t), startFake(t)
	members := []*rosterv1.Member{
		{NodeId: "n1", ApiAddr: voter.addr, Voter: true, Leader: true},
		{NodeId: "r1", ApiAddr: replica.addr, Voter: false},
	}
	voter.nodeID, voter.members = "n1", members
	replica.nodeID, replica.members = "r1", members
	nodes, closeAll, err := dialNodes([]string{voter.addr, replica.addr}, 1, nil,
		[]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	markReplicas(testContext(t), nodes)
	if nodes[0].replica || !nodes[1].replica {
		t.Fatalf("replica marks %v %v, want false true", nodes[0].replica, nodes[1].replica)
	}
}

// TestVersionFlag: roster --version prints one line naming the build and
// sends nothing.
func TestVersionFlag(t *testing.T) {
	f := startFake(t)
	code, stdout, stderr := runCLI(t, testContext(t), f.addr, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "roster ") || !strings.Contains(stdout, "go1") || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if f.total() != 0 {
		t.Fatalf("--version sent %d calls", f.total())
	}
}

package main

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
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

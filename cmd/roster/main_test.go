package main

import (
	"context"
	"encoding/json"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// runCLI runs the command line against addr and returns its exit code,
// stdout and stderr.
func runCLI(t *testing.T, ctx context.Context, addr string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	full := append([]string{"--addr", addr, "--timeout", "5s"}, args...)
	code := run(ctx, full, &stdout, &stderr, func(string) string { return "" })
	return code, stdout.String(), stderr.String()
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func keys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

func TestJSONOutput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		// exact, when set, is the whole expected stdout.
		exact string
		// check inspects the decoded object.
		check func(t *testing.T, out map[string]any)
	}{
		{name: "register", args: []string{"register", "payments", "p1", "10.0.0.5:8080", "-o", "json"}, exact: "{\"revision\": 7}\n"},
		{name: "deregister", args: []string{"deregister", "payments", "p1", "-o", "json"}, exact: "{\"revision\": 8}\n"},
		{name: "maint", args: []string{"maint", "payments", "p1", "on", "-o", "json"}, exact: "{\"revision\": 9}\n"},
		{name: "remove-node", args: []string{"remove-node", "n3", "-o", "json"}, exact: "{\"node_id\": \"n3\"}\n"},
		{name: "transfer-leadership", args: []string{"transfer-leadership", "-o", "json"}, exact: "{\"leader_id\": \"n2\"}\n"},
		{
			name: "health", args: []string{"health", "payments", "p1", "warning", "--reason", "disk full", "-o", "json"},
			exact: "{\"namespace\": \"default\", \"service\": \"payments\", \"id\": \"p1\", \"status\": \"warning\", \"revision\": 11, \"ttl\": \"30s\"}\n",
		},
		{
			name: "heartbeat", args: []string{"heartbeat", "payments", "p1", "-o", "json"},
			exact: "{\"namespace\": \"default\", \"service\": \"payments\", \"id\": \"p1\", \"ttl\": \"30s\"}\n",
		},
		{
			name: "get", args: []string{"get", "payments", "-o", "json"},
			check: func(t *testing.T, out map[string]any) {
				if got := keys(out); !slices.Equal(got, []string{"instances", "revision"}) {
					t.Fatalf("get keys %v", got)
				}
				if out["revision"] != 42.0 {
					t.Fatalf("revision %v, want 42", out["revision"])
				}
				ins := out["instances"].([]any)
				want := []string{"address", "create_revision", "enabled", "id", "metadata", "mod_revision", "namespace", "port", "service", "status", "status_reason", "tags", "weight", "zone"}
				for _, raw := range ins {
					if got := keys(raw.(map[string]any)); !slices.Equal(got, want) {
						t.Fatalf("instance keys %v, want %v", got, want)
					}
				}
				p1, p2 := ins[0].(map[string]any), ins[1].(map[string]any)
				if p1["status"] != "passing" || p2["status"] != "critical" || p1["port"] != 8080.0 {
					t.Fatalf("instances %v", ins)
				}
				if tags, ok := p2["tags"].([]any); !ok || len(tags) != 0 {
					t.Fatalf("empty tags printed as %#v, want []", p2["tags"])
				}
				if meta, ok := p2["metadata"].(map[string]any); !ok || len(meta) != 0 {
					t.Fatalf("empty metadata printed as %#v, want {}", p2["metadata"])
				}
			},
		},
		{
			name: "services", args: []string{"services", "-o", "json"},
			check: func(t *testing.T, out map[string]any) {
				svc := out["services"].([]any)[0].(map[string]any)
				if got := keys(svc); !slices.Equal(got, []string{"instances", "namespace", "passing", "service"}) {
					t.Fatalf("service keys %v", got)
				}
			},
		},
		{
			name: "status", args: []string{"status", "-o", "json"},
			check: func(t *testing.T, out map[string]any) {
				for _, k := range []string{"node_id", "state", "leader_id", "term", "commit_index", "applied_index", "revision"} {
					if _, ok := out[k]; !ok {
						t.Fatalf("status has no %q: %v", k, out)
					}
				}
				if out["last_contact"] != "1.5s" {
					t.Fatalf("last_contact %v, want \"1.5s\"", out["last_contact"])
				}
			},
		},
		{
			name: "members", args: []string{"members", "-o", "json"},
			check: func(t *testing.T, out map[string]any) {
				ms := out["members"].([]any)
				m := ms[0].(map[string]any)
				if got := keys(m); !slices.Equal(got, []string{"api_addr", "autopilot", "healthy", "leader", "node_id", "raft_addr", "read_replica", "voter"}) {
					t.Fatalf("member keys %v", got)
				}
				ap := m["autopilot"].(map[string]any)
				if got := keys(ap); !slices.Equal(got, []string{"failed", "healthy", "last_contact", "last_index", "last_term", "stable_since", "state"}) {
					t.Fatalf("autopilot keys %v", got)
				}
				if ap["stable_since"] != "2026-01-02T03:04:05Z" || ap["state"] != "leader" {
					t.Fatalf("autopilot %v", ap)
				}
				if r := ms[2].(map[string]any); r["read_replica"] != true {
					t.Fatalf("r1 %v, want a read replica", r)
				}
				if out["autopilot_healthy"] != false || out["failure_tolerance"] != float64(0) {
					t.Fatalf("autopilot summary %v %v", out["autopilot_healthy"], out["failure_tolerance"])
				}
			},
		},
	}
	f := startFake(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, testContext(t), f.addr, tt.args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			if tt.exact != "" && stdout != tt.exact {
				t.Fatalf("stdout %q, want %q", stdout, tt.exact)
			}
			var out map[string]any
			if err := json.Unmarshal([]byte(stdout), &out); err != nil {
				t.Fatalf("stdout %q is not a JSON object: %v", stdout, err)
			}
			if tt.check != nil {
				tt.check(t, out)
			}
		})
	}
}

func TestRegisterRequest(t *testing.T) {
	f := startFake(t)
	code, stdout, stderr := runCLI(t, testContext(t), f.addr, "register", "payments", "p1", "10.0.0.5:8080",
		"--tag", "v2", "--tag", "canary", "--meta", "version=1.4", "--meta", "url=http://x/?a=b",
		"--weight", "50", "--zone", "eu-1", "--ttl", "30s", "--check-tcp", "10.0.0.5:8080", "--check-interval", "5s")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if want := "registered payments/p1 at revision 7\n"; stdout != want {
		t.Fatalf("stdout %q, want %q", stdout, want)
	}
	in := f.calls("Register")[0].(*rosterv1.RegisterRequest).GetInstance()
	switch {
	case in.GetAddress() != "10.0.0.5" || in.GetPort() != 8080:
		t.Fatalf("address %s:%d", in.GetAddress(), in.GetPort())
	case !slices.Equal(in.GetTags(), []string{"v2", "canary"}):
		t.Fatalf("tags %v", in.GetTags())
	case in.GetMetadata()["url"] != "http://x/?a=b" || in.GetMetadata()["version"] != "1.4":
		t.Fatalf("metadata %v", in.GetMetadata())
	case in.GetWeight() != 50 || in.GetZone() != "eu-1" || in.GetTtl().AsDuration() != 30*time.Second:
		t.Fatalf("weight %d zone %q ttl %v", in.GetWeight(), in.GetZone(), in.GetTtl().AsDuration())
	case in.GetCheck().GetTcp() != "10.0.0.5:8080" || in.GetCheck().GetInterval().AsDuration() != 5*time.Second:
		t.Fatalf("check %v", in.GetCheck())
	}
}

func TestMaintSendsEnabled(t *testing.T) {
	f := startFake(t)
	for _, arg := range []string{"on", "off"} {
		if code, _, stderr := runCLI(t, testContext(t), f.addr, "maint", "payments", "p1", arg, "--reason", "upgrade"); code != 0 {
			t.Fatalf("maint %s: exit %d, stderr %q", arg, code, stderr)
		}
	}
	calls := f.calls("SetMaintenance")
	if on, off := calls[0].(*rosterv1.SetMaintenanceRequest), calls[1].(*rosterv1.SetMaintenanceRequest); on.GetEnabled() || !off.GetEnabled() || on.GetReason() != "upgrade" {
		t.Fatalf("maint on sent %v, off sent %v", on, off)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"port zero", []string{"register", "payments", "p1", "10.0.0.5:0"}, `port must be a number from 1 to 65535`},
		{"port too big", []string{"register", "payments", "p1", "10.0.0.5:65536"}, `port must be a number from 1 to 65535`},
		{"no port", []string{"register", "payments", "p1", "10.0.0.5"}, `is not HOST:PORT`},
		{"no host", []string{"register", "payments", "p1", ":80"}, `has no host`},
		{"bad duration", []string{"register", "payments", "p1", "10.0.0.5:80", "--ttl", "5x"}, `invalid argument "5x" for "--ttl" flag`},
		{"negative duration", []string{"register", "payments", "p1", "10.0.0.5:80", "--ttl", "-5s"}, `--ttl -5s: must not be negative`},
		{"bad meta", []string{"register", "payments", "p1", "10.0.0.5:80", "--meta", "novalue"}, `--meta "novalue": want KEY=VALUE`},
		{"bad weight", []string{"register", "payments", "p1", "10.0.0.5:80", "--weight", "0"}, `--weight 0: must be from 1 to 10000`},
		{"two checks", []string{"register", "payments", "p1", "10.0.0.5:80", "--check-tcp", "a:1", "--check-grpc", "a:2"}, `at most one of`},
		{"check options without a check", []string{"register", "payments", "p1", "10.0.0.5:80", "--check-interval", "5s"}, `--check-interval needs`},
		{"bad check url", []string{"register", "payments", "p1", "10.0.0.5:80", "--check-http", "ftp://x"}, `want an http:// or https:// URL`},
		{"keepalive without ttl", []string{"register", "payments", "p1", "10.0.0.5:80", "--keepalive"}, `--keepalive needs --ttl`},
		{"missing args", []string{"register", "payments"}, `register needs 3 argument(s), SERVICE ID HOST:PORT; got 1`},
		{"extra args", []string{"status", "now"}, `status takes no arguments`},
		{"unknown command", []string{"regster"}, `unknown command "regster"`},
		{"unknown flag", []string{"get", "payments", "--bogus"}, `unknown flag: --bogus`},
		{"bad maint state", []string{"maint", "payments", "p1", "maybe"}, `must be on or off`},
		{"bad health status", []string{"health", "payments", "p1", "sick"}, `status "sick": use passing, warning or critical`},
		{"bad consistency", []string{"get", "payments", "--consistency", "eventual"}, `must be linearizable or stale`},
		{"bad output", []string{"status", "-o", "yaml"}, `must be table or json`},
		{"bad addr", []string{"--addr", "127.0.0.1:99999", "status"}, `--addr: address "127.0.0.1:99999"`},
		{"bad threshold", []string{"self-preservation", "--threshold", "1.5"}, `--threshold 1.5: must be between 0 (off) and 1`},
		{"off and threshold", []string{"self-preservation", "--off", "--threshold", "0.5"}, `--off and --threshold: give one`},
		{"bad min leases", []string{"self-preservation", "--min-leases", "0"}, `--min-leases 0: must be at least 1`},
		{"bad max hold", []string{"self-preservation", "--max-hold", "100ms"}, `--max-hold 100ms: must be between 1s and 24h0m0s`},
		{"bad service min", []string{"self-preservation", "--service-min-leases", "payments"}, `want [NAMESPACE/]SERVICE=N`},
		{"bad service min count", []string{"self-preservation", "--service-min-leases", "payments=-1"}, `N must be a whole number`},
		{"empty service", []string{"register", "", "w2", "1.2.3.4:5"}, `register: SERVICE must not be empty`},
		{"empty get", []string{"get", ""}, `get: SERVICE must not be empty`},
		{"empty id", []string{"deregister", "web", ""}, `deregister: ID must not be empty`},
		{"empty node", []string{"remove-node", ""}, `remove-node: ID must not be empty`},
		{"negative deadline", []string{"snapshot", "save", "f.snap", "--deadline", "-1s"}, `--deadline -1s: must be positive`},
		{"zero deadline", []string{"snapshot", "restore", "f.snap", "--deadline", "0"}, `--deadline 0s: must be positive`},
	}
	f := startFake(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, testContext(t), f.addr, tt.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr)
			}
			if !strings.HasPrefix(stderr, "roster: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q, want one line \"roster: ...%s...\"", stderr, tt.want)
			}
			if stdout != "" {
				t.Fatalf("stdout %q, want nothing", stdout)
			}
		})
	}
	if n := f.total(); n != 0 {
		t.Fatalf("bad input made %d calls, want none", n)
	}
}

func TestServerError(t *testing.T) {
	f := startFake(t)
	f.setFail("Register", invalidName)
	f.setFail("GetService", status.Error(codes.NotFound, "service \"nope\" not found\nin namespace default"))
	// ACL refusals already start with the code's words: said once.
	f.setFail("Deregister", status.Error(codes.PermissionDenied, "permission denied: token 2b7a lacks service:web:write in namespace default"))
	tests := []struct {
		args       []string
		wantStderr string
	}{
		{[]string{"register", "Bad_Name", "p1", "10.0.0.5:8080"}, "roster: invalid argument: service \"Bad_Name\" must be a lowercase DNS label\n"},
		{[]string{"get", "nope", "-o", "json"}, "roster: not found: service \"nope\" not found in namespace default\n"},
		{[]string{"deregister", "web", "w1"}, "roster: permission denied: token 2b7a lacks service:web:write in namespace default\n"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, testContext(t), f.addr, tt.args...)
		if code != 1 || stderr != tt.wantStderr || stdout != "" {
			t.Fatalf("%v: exit %d stdout %q stderr %q; want 1, nothing, %q", tt.args, code, stdout, stderr, tt.wantStderr)
		}
	}
}

func TestUnreachableServer(t *testing.T) {
	code, _, stderr := runCLI(t, testContext(t), "127.0.0.1:1", "status")
	if code != 1 || !strings.HasPrefix(stderr, "roster: unavailable: ") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d stderr %q, want 1 and one \"roster: unavailable: ...\" line", code, stderr)
	}
}

// TestWriteToClosedPortsFailsAtOnce: a write to addresses where nothing
// listens was sent nowhere, so it fails as a read does, with one line
// naming each refusal, rather than retrying until --timeout (ten minutes
// here, far beyond testContext's deadline, which would end it with a
// deadline error).
func TestWriteToClosedPortsFailsAtOnce(t *testing.T) {
	dead1, dead2 := closedPort(t), closedPort(t)
	for _, args := range [][]string{
		{"register", "web", "w1", "10.0.0.5:8080"},
		{"deregister", "web", "w1"},
		{"get", "web"},
	} {
		var stdout, stderr syncBuffer
		full := append([]string{"--addr", dead1 + "," + dead2, "--timeout", "10m"}, args...)
		code := run(testContext(t), full, &stdout, &stderr, func(string) string { return "" })
		line := stderr.String()
		if code != exitError || !strings.HasPrefix(line, "roster: unavailable: no endpoint answered: "+dead1+": ") ||
			!strings.Contains(line, dead2+": ") || !strings.Contains(line, "connection refused") ||
			strings.Count(line, "\n") != 1 || stdout.String() != "" {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q; want %d and one line saying no endpoint answered", args, code, stdout.String(), line, exitError)
		}
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestHelpHasExamples(t *testing.T) {
	root := (&app{}).rootCommand(func(string) string { return "" })
	for _, cmd := range root.Commands() {
		if cmd.Name() == "help" {
			continue
		}
		if cmd.Example == "" || cmd.Long == "" {
			t.Errorf("%s: help has no example or description", cmd.Name())
		}
	}
	var stdout, stderr syncBuffer
	if code := run(context.Background(), []string{"get", "--help"}, &stdout, &stderr, func(string) string { return "" }); code != 0 {
		t.Fatalf("get --help: exit %d", code)
	}
	if !strings.Contains(stdout.String(), "Examples:") {
		t.Fatalf("get --help shows no examples:\n%s", stdout.String())
	}
}

func TestTableOutput(t *testing.T) {
	f := startFake(t)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"get", "payments"}, []string{
			"NAMESPACE  SERVICE   ID  ADDRESS        STATUS    ENABLED  WEIGHT  ZONE  TAGS  REVISION",
			"default    payments  p1  10.0.0.5:8080  passing   true     100     eu-1  v2    40",
			"default    payments  p2  10.0.0.6:8080  critical  false    100     -     -     41",
		}},
		{[]string{"services"}, []string{
			"NAMESPACE  SERVICE   INSTANCES  PASSING",
			"default    payments  2          1",
		}},
		// A failed or unhealthy server is shown as such, with the time
		// its health changed, never as stable.
		{[]string{"members"}, []string{
			"NODE  RAFT ADDR       API ADDR        ROLE          HEALTH     SINCE",
			"n1    127.0.0.1:7421  127.0.0.1:7420  leader        healthy    2026-01-02T03:04:05Z",
			"n2    127.0.0.1:7431  127.0.0.1:7430  staging       healthy    -",
			"r1    127.0.0.1:7441  127.0.0.1:7440  read-replica  unhealthy  -",
			"n3    127.0.0.1:7451  127.0.0.1:7450  voter         failed     2026-01-02T03:10:00Z",
			"n4    127.0.0.1:7461  127.0.0.1:7460  voter         unhealthy  2026-01-02T03:11:00Z",
			"autopilot: healthy=false failure_tolerance=0",
		}},
		{[]string{"maint", "payments", "p1", "on"}, []string{"drained payments/p1 at revision 9"}},
		{[]string{"heartbeat", "payments", "p1", "--namespace", "staging"}, []string{"renewed staging/payments/p1 for 30s"}},
		{[]string{"health", "payments", "p1", "warning", "--reason", "disk full"}, []string{"payments/p1 is warning (revision 11); lease renewed for 30s"}},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, testContext(t), f.addr, tt.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", tt.args, code, stderr)
		}
		if want := strings.Join(tt.want, "\n") + "\n"; stdout != want {
			t.Fatalf("%v: stdout\n%s\nwant\n%s", tt.args, stdout, want)
		}
	}
}

package e2e

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func TestRosterdRejectsBadFlagsWithOneLine(t *testing.T) {
	rosterd, _ := Binaries(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no mode, no data", []string{"--node-id", "n1", "--data-dir", dir}, "holds no cluster state"},
		{"two modes", []string{"--node-id", "n1", "--data-dir", dir, "--bootstrap", "--join", "127.0.0.1:1"}, "choose one of"},
		{"no node id", []string{"--data-dir", dir, "--bootstrap"}, "--node-id is required"},
		{"bad initial cluster", []string{"--node-id", "n1", "--data-dir", dir, "--initial-cluster", "n1"}, "must be ID=HOST:RAFTPORT"},
		{"self missing", []string{"--node-id", "n9", "--data-dir", dir, "--initial-cluster", "n1=127.0.0.1:1", "--grpc-addr", "127.0.0.1:0"}, "does not name this node"},
		{"bad cluster state", []string{"--node-id", "n1", "--data-dir", dir, "--initial-cluster", "n1=127.0.0.1:1", "--initial-cluster-state", "old"}, "--initial-cluster-state"},
		{"existing with bootstrap", []string{"--node-id", "n1", "--data-dir", dir, "--bootstrap", "--initial-cluster-state", "existing"}, "cannot be combined with --bootstrap"},
		{"unknown flag", []string{"--frobnicate"}, "unknown flag"},
		{"bad level", []string{"--dev", "--log-level", "loud", "--grpc-addr", "127.0.0.1:0"}, "--log-level"},
		{"bad self-preservation threshold", []string{"--dev", "--self-preservation-threshold", "1.5", "--grpc-addr", "127.0.0.1:0"}, "--self-preservation-threshold 1.5 must be between 0 (off) and 1"},
		{"bad self-preservation max hold", []string{"--dev", "--self-preservation-max-hold", "0s", "--grpc-addr", "127.0.0.1:0"}, "--self-preservation-max-hold 0s must be between 1s and 24h"},
		{"bad self-preservation min leases", []string{"--dev", "--self-preservation-min-leases", "0", "--grpc-addr", "127.0.0.1:0"}, "--self-preservation-min-leases 0 must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(rosterd, tt.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() == 0 {
				t.Fatalf("exit status %v, want non-zero", err)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "rosterd: ") || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("stderr %q, want one line mentioning %q", stderr.String(), tt.want)
			}
		})
	}
}

func TestRosterdEnvironmentSetsFlags(t *testing.T) {
	rosterd, _ := Binaries(t)
	cmd := exec.Command(rosterd)
	cmd.Env = append(cmd.Environ(), "ROSTER_NODE_ID=n1", "ROSTER_DATA_DIR="+t.TempDir(), "ROSTER_LOG_LEVEL=nope")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	// The node id and data dir came from the environment, so the first
	// complaint is the missing bootstrap mode, not a missing flag.
	if !strings.Contains(stderr.String(), "holds no cluster state") {
		t.Fatalf("environment not applied: %q", stderr.String())
	}
}

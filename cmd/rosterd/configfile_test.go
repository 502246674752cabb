package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// withConfigFile parses args as rosterd would, then applies the
// environment and a config file holding text.
func withConfigFile(t *testing.T, text string, args ...string) (*flags, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rosterd.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &flags{}
	cmd := &cobra.Command{Use: "rosterd"}
	f.register(cmd.Flags())
	if err := cmd.Flags().Parse(append(args, "--config-file", path)); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd); err != nil {
		t.Fatal(err)
	}
	return f, applyConfigFile(cmd, f.configFile)
}

func TestConfigFileSetsFlags(t *testing.T) {
	f, err := withConfigFile(t, `
# a node of a 3-node cluster
node-id: n2
data-dir: /var/lib/roster
grpc-addr: 10.0.0.2:7420
join: [10.0.0.1:7420, "[::1]:7420"]
raft-timeout-scale: 2.5
acl: true
shutdown-timeout: 30s
max-instances-per-service: 500
`)
	if err != nil {
		t.Fatal(err)
	}
	if f.nodeID != "n2" || f.dataDir != "/var/lib/roster" || f.grpcAddr != "10.0.0.2:7420" ||
		f.join != "10.0.0.1:7420,[::1]:7420" || f.raftTimeoutScale != 2.5 || !f.acl.enabled ||
		f.shutdownTimeout != 30*time.Second || f.limits.maxInstancesPerService != 500 {
		t.Fatalf("settings not applied: %+v", f)
	}
}

func TestConfigFileLosesToFlagsAndEnvironment(t *testing.T) {
	t.Setenv("ROSTER_DATA_DIR", "/from/env")
	f, err := withConfigFile(t, "node-id: from-file\ndata-dir: /from/file\nlog-level: debug\n", "--node-id", "from-flag")
	if err != nil {
		t.Fatal(err)
	}
	if f.nodeID != "from-flag" || f.dataDir != "/from/env" || f.logLevel != "debug" {
		t.Fatalf("node-id %q data-dir %q log-level %q; want the flag's, the environment's and the file's", f.nodeID, f.dataDir, f.logLevel)
	}
}

func TestConfigFileErrorsNameTheLine(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"misspelt key", "node-id: n1\nnode_id: n1\n", `line 2: unknown setting "node_id"; did you mean node-id?`},
		{"unknown key", "colour: blue\n", `line 1: unknown setting "colour" (see rosterd --help`},
		{"twice", "acl: true\nacl: false\n", "line 2: acl is set twice (first on line 1)"},
		{"bad value", "node-id: n1\nshutdown-timeout: soon\n", `line 2: shutdown-timeout: invalid argument "soon"`},
		{"map value", "acl:\n  enabled: true\n", "line 2: acl: want a value or a list of values, not a map"},
		{"no value", "node-id:\n", "line 1: node-id: no value"},
		{"list for a one-value flag", "node-id: [a, b]\n", "line 1: node-id takes one value, not a list"},
		{"block list for a one-value flag", "node-id: n1\ntls-ca:\n  - a.pem\n  - b.pem\n", "line 3: tls-ca takes one value, not a list"},
		{"list for a number", "rate-limit: [1, 2]\n", "line 1: rate-limit takes one value, not a list"},
		{"comma in a list entry", "join: [\"a:1,b:2\", c:3]\n", `list entry "a:1,b:2" holds a comma`},
		{"itself", "config-file: other.yaml\n", "config-file cannot be set in a config file"},
		{"not a map", "- node-id\n", "want settings as"},
		{"two documents", "node-id: n1\n---\nnode-id: n2\n", "line 3: a second YAML document"},
		{"not YAML", "node-id: [n1\n", "not YAML"},
	}
	for _, tt := range tests {
		_, err := withConfigFile(t, tt.text)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
			continue
		}
		if _, ok := err.(usageError); !ok {
			t.Errorf("%s: %T is not a usage error", tt.name, err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", tt.name, err)
		}
	}
}

// TestConfigFileListFlags: the flags that take a comma-separated list
// are exactly --join and --initial-cluster, and a YAML list sets them.
func TestConfigFileListFlags(t *testing.T) {
	var lists []string
	cmd := &cobra.Command{Use: "rosterd"}
	(&flags{}).register(cmd.Flags())
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if fl.Annotations[commaListAnnotation] != nil {
			lists = append(lists, fl.Name)
		}
	})
	if strings.Join(lists, " ") != "initial-cluster join" {
		t.Fatalf("list flags %v; want initial-cluster and join", lists)
	}
	f, err := withConfigFile(t, "initial-cluster: [n1=127.0.0.1:7421, n2=127.0.0.1:7431]\n")
	if err != nil || f.initialCluster != "n1=127.0.0.1:7421,n2=127.0.0.1:7431" {
		t.Fatalf("initial-cluster %q, %v", f.initialCluster, err)
	}
}

// TestConfigFileRefusesCobraFlags: help and version are cobra's own
// flags, not settings; a file that sets them is refused, not obeyed or
// ignored.
func TestConfigFileRefusesCobraFlags(t *testing.T) {
	cmd := newCommand()
	cmd.InitDefaultHelpFlag()
	cmd.InitDefaultVersionFlag()
	for _, key := range []string{"help", "version"} {
		if cmd.Flags().Lookup(key) == nil {
			t.Fatalf("cobra added no --%s flag", key)
		}
		_, err := parseConfigFile([]byte("node-id: n1\n"+key+": true\n"), cmd.Flags())
		want := `line 2: unknown setting "` + key + `"`
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "did you mean "+key) {
			t.Errorf("%s: %v; want %q", key, err, want)
		}
	}
}

func TestConfigFileEmptyOrMissing(t *testing.T) {
	f, err := withConfigFile(t, "# nothing yet\n")
	if err != nil || f.nodeID != "" {
		t.Fatalf("empty file: %v, node-id %q", err, f.nodeID)
	}
	cmd := &cobra.Command{Use: "rosterd"}
	(&flags{}).register(cmd.Flags())
	if err := applyConfigFile(cmd, filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestEditDistanceAtMostOne(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"node-id", "node-id", true}, {"node-id", "node_id", true}, {"node-id", "nodeid", true},
		{"node-id", "node-idx", true}, {"node-id", "nod_id", false}, {"acl", "", false}, {"", "", true}, {"a", "", true},
	} {
		if got := editDistanceAtMostOne(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistanceAtMostOne(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}

// TestACLBootstrapTokenNeedsACLFromAnySource: a bootstrap token given by
// ROSTER_ACL_BOOTSTRAP_TOKEN or by the config file without ACLs on is the
// same one-line usage error (exit 2) as the flag's; with acl on in the
// file it is accepted.
func TestACLBootstrapTokenNeedsACLFromAnySource(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, env, file, wantErr string
	}{
		{name: "environment", env: "s3cret", wantErr: "--acl-bootstrap-token needs --acl"},
		{name: "config file", file: "acl-bootstrap-token: s3cret\n", wantErr: "--acl-bootstrap-token needs --acl"},
		{name: "config file with acl", file: "acl: true\nacl-bootstrap-token: s3cret\n"},
		{name: "environment with acl in the file", env: "s3cret", file: "acl: true\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("ROSTER_ACL_BOOTSTRAP_TOKEN", tt.env)
			}
			f, err := withConfigFile(t, tt.file, "--node-id", "n1", "--data-dir", dir, "--bootstrap")
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.clusterConfig()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if _, ok := err.(usageError); !ok || err.Error() != tt.wantErr {
				t.Fatalf("err = %v (%T), want the usage error %q", err, err, tt.wantErr)
			}
		})
	}
}

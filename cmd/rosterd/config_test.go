package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/roster-registry/roster/cluster"
)

func parse(t *testing.T, args ...string) *flags {
	t.Helper()
	f := &flags{}
	fs := pflag.NewFlagSet("rosterd", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return f
}

func TestClusterStateFlags(t *testing.T) {
	empty := t.TempDir()
	used := t.TempDir()
	if err := os.WriteFile(filepath.Join(used, "raft.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const initial = "n1=127.0.0.1:7421,n2=127.0.0.1:7431,n3=127.0.0.1:7441"
	base := func(dir string, more ...string) []string {
		return append([]string{"--node-id", "n1", "--data-dir", dir}, more...)
	}
	tests := []struct {
		name      string
		args      []string
		wantErr   string
		existing  bool
		bootstrap bool
	}{
		{name: "initial cluster is new by default", args: base(empty, "--initial-cluster", initial)},
		{name: "initial cluster, existing", args: base(empty, "--initial-cluster", initial, "--initial-cluster-state", "existing"), existing: true},
		{name: "existing alone on an empty dir waits to be caught up", args: base(empty, "--initial-cluster-state", "existing"), existing: true},
		{name: "join is always existing", args: base(empty, "--join", "127.0.0.1:7430"), existing: true},
		{name: "join, existing", args: base(empty, "--join", "127.0.0.1:7430", "--initial-cluster-state", "existing"), existing: true},
		{name: "bootstrap on an empty dir", args: base(empty, "--bootstrap"), bootstrap: true},
		{name: "restart without flags", args: base(used)},
		{name: "restart with initial cluster", args: base(used, "--initial-cluster", initial)},
		{name: "bad state", args: base(empty, "--initial-cluster", initial, "--initial-cluster-state", "old"), wantErr: `--initial-cluster-state "old": use new or existing`},
		{name: "existing with bootstrap", args: base(empty, "--bootstrap", "--initial-cluster-state", "existing"), wantErr: "cannot be combined with --bootstrap"},
		{name: "existing with dev", args: []string{"--dev", "--initial-cluster-state", "existing"}, wantErr: "cannot be combined with --dev"},
		{name: "bootstrap on a dir with state", args: base(used, "--bootstrap"), wantErr: "restart it with --join"},
		{name: "no mode on an empty dir", args: base(empty), wantErr: "holds no cluster state"},
		{name: "bootstrap and join", args: base(empty, "--bootstrap", "--join", "127.0.0.1:7430"), wantErr: "choose one of"},
		{name: "pprof on the HTTP address", args: base(used, "--http-addr", "127.0.0.1:8500", "--enable-pprof")},
		{name: "pprof without an HTTP address", args: base(used, "--enable-pprof"), wantErr: "set --http-addr too"},
		{name: "negative GC headroom", args: base(used, "--gc-headroom-mib", "-1"), wantErr: "--gc-headroom-mib -1 must be between"},
		{name: "commit timeout below raft's minimum", args: base(used, "--raft-commit-timeout", "500us"), wantErr: "--raft-commit-timeout 500µs must be between 1ms and 1s"},
		{name: "WAL segments too small", args: base(used, "--raft-wal-segment-kib", "8"), wantErr: "--raft-wal-segment-kib 8 must be between 64 and"},
		{name: "pprof with ACLs", args: base(used, "--http-addr", "127.0.0.1:8500", "--enable-pprof", "--acl"), wantErr: "cannot be combined with --acl"},
		{name: "ACL bootstrap token with ACLs", args: base(used, "--acl", "--acl-bootstrap-token", "s3cret")},
		{name: "ACL bootstrap token without ACLs", args: base(used, "--acl-bootstrap-token", "s3cret"), wantErr: "--acl-bootstrap-token needs --acl"},
		{name: "ACL bootstrap token without ACLs, dev", args: []string{"--dev", "--acl-bootstrap-token", "s3cret"}, wantErr: "--acl-bootstrap-token needs --acl"},
		{name: "join address without a port", args: base(empty, "--join", "127.0.0.1:7430,notanaddr"), wantErr: `--join: address "notanaddr": missing port`},
		{name: "join through IPv6 addresses", args: base(empty, "--join", "[::1]:7430, [2001:db8::2]:7430"), existing: true},
		{name: "join IPv6 address without brackets", args: base(empty, "--join", "[::1]:7430,::1:7440"), wantErr: `--join: address "::1:7440": an IPv6 host goes in brackets`},
		{name: "join list with an empty entry", args: base(empty, "--join", "[::1]:7430,,[::1]:7440"), wantErr: `--join: empty address in the list`},
		{name: "join address with port zero", args: base(empty, "--join", "[::1]:0"), wantErr: `--join: address "[::1]:0": port "0" is not a number`},
		{name: "negative snapshot interval", args: base(used, "--snapshot-interval", "-1s"), wantErr: "--snapshot-interval -1s must not be negative"},
		{name: "negative shutdown timeout", args: base(used, "--shutdown-timeout", "-1s"), wantErr: "--shutdown-timeout -1s must not be negative"},
		{name: "node id with a space and a slash", args: []string{"--node-id", "Bad ID/x", "--data-dir", empty, "--bootstrap"}, wantErr: `--node-id "Bad ID/x" must be 1-128 characters of A-Z a-z 0-9 . _ : @ -`},
		{name: "node id with a comma, joining", args: []string{"--node-id", "a,b", "--data-dir", empty, "--join", "127.0.0.1:7430"}, wantErr: `--node-id "a,b" must be`},
		{name: "dev with a bad node id", args: []string{"--dev", "--node-id", "N 5"}, wantErr: `--node-id "N 5" must be`},
		{name: "node id of every allowed kind", args: []string{"--node-id", "Az09._:@-", "--data-dir", empty, "--bootstrap"}, bootstrap: true},
		{name: "negative watch history", args: base(used, "--watch-history-events", "-5"), wantErr: "--watch-history-events -5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(t, tt.args...).clusterConfig()
			if tt.wantErr != "" {
				var usage usageError
				if err == nil || !errors.As(err, &usage) {
					t.Fatalf("err = %v, want a usage error mentioning %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("err = %q, want one line mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Existing != tt.existing || cfg.Bootstrap != tt.bootstrap {
				t.Fatalf("Existing=%v Bootstrap=%v, want %v %v", cfg.Existing, cfg.Bootstrap, tt.existing, tt.bootstrap)
			}
		})
	}
}

// TestAutopilotAndBootstrapListenFlags: autopilot is on by default with
// Consul's settings, off with --autopilot=false, and bad values are a
// one-line usage error; --bootstrap-listen overrides the default window.
func TestAutopilotAndBootstrapListenFlags(t *testing.T) {
	dir := t.TempDir()
	base := []string{"--node-id", "n1", "--data-dir", dir, "--bootstrap"}
	cfg, err := parse(t, base...).clusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	if ap := cfg.Autopilot; ap == nil || !ap.CleanupDeadServers || ap.MinQuorum != 3 ||
		ap.ServerStabilizationTime != 10*time.Second || ap.DeadServerAfter != cluster.DefaultAutopilotDeadServerAfter {
		t.Fatalf("default autopilot %+v", cfg.Autopilot)
	}
	if cfg.BootstrapListen != 0 {
		t.Fatalf("default bootstrap listen %v, want the cluster's default (0 here)", cfg.BootstrapListen)
	}
	cfg, err = parse(t, append(base, "--autopilot=false", "--bootstrap-listen", "5s")...).clusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Autopilot != nil || cfg.BootstrapListen != 5*time.Second {
		t.Fatalf("autopilot %+v, bootstrap listen %v", cfg.Autopilot, cfg.BootstrapListen)
	}
	cfg, err = parse(t, append(base, "--autopilot-min-quorum", "5", "--autopilot-server-stabilization-time", "30s")...).clusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Autopilot.MinQuorum != 5 || cfg.Autopilot.ServerStabilizationTime != 30*time.Second {
		t.Fatalf("autopilot %+v", cfg.Autopilot)
	}
	for _, bad := range [][]string{
		{"--autopilot-dead-server-after", "0s"},
		{"--autopilot-server-stabilization-time", "-1s"},
		{"--autopilot-max-trailing-logs", "0"},
		{"--bootstrap-listen", "-1s"},
	} {
		_, err := parse(t, append(base, bad...)...).clusterConfig()
		var usage usageError
		if err == nil || !errors.As(err, &usage) || !strings.Contains(err.Error(), bad[0]) {
			t.Fatalf("%v: err = %v, want a usage error naming %s", bad, err, bad[0])
		}
	}
}

// TestUnknownArgumentIsAUsageError: rosterd takes no positional argument,
// and one given is a usage error (exit 2), not a failure to run.
func TestUnknownArgumentIsAUsageError(t *testing.T) {
	cmd := newCommand()
	cmd.SetArgs([]string{"extra"})
	err := cmd.Execute()
	var usage usageError
	if !errors.As(err, &usage) || !strings.Contains(err.Error(), `"extra"`) {
		t.Fatalf("rosterd extra: %v, want a usage error naming it", err)
	}
}

// TestJoinFlagTakesAnIPv6List: --join reads its list as the client reads
// registry addresses, IPv6 hosts in brackets, and the join loop dials the
// addresses as read.
func TestJoinFlagTakesAnIPv6List(t *testing.T) {
	f := parse(t, "--node-id", "n1", "--data-dir", t.TempDir(), "--join", "[::1]:7430, [fe80::1%eth0]:7440,roster-2:7450")
	if _, err := f.clusterConfig(); err != nil {
		t.Fatalf("clusterConfig: %v", err)
	}
	got, err := f.joinAddrs()
	if want := []string{"[::1]:7430", "[fe80::1%eth0]:7440", "roster-2:7450"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("join addresses %q, %v; want %q", got, err, want)
	}
}

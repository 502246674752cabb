package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
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

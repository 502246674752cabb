package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

const secretToken = "s3cret-from-env-7f1c"

func envWithToken(name string) string {
	if name == "ROSTER_TOKEN" {
		return secretToken
	}
	return ""
}

// TestHelpNeverPrintsTheTokenFromTheEnvironment runs --help on every
// command: cobra prints flag defaults there, and ROSTER_TOKEN is a secret.
func TestHelpNeverPrintsTheTokenFromTheEnvironment(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk((&app{}).rootCommand(envWithToken), nil)
	if len(paths) < 10 {
		t.Fatalf("only %d commands found", len(paths))
	}
	for _, path := range paths {
		var stdout, stderr syncBuffer
		args := append(append([]string(nil), path...), "--help")
		if code := run(context.Background(), args, &stdout, &stderr, envWithToken); code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
		if out := stdout.String() + stderr.String(); strings.Contains(out, secretToken) {
			t.Fatalf("%v prints the ROSTER_TOKEN secret:\n%s", args, out)
		}
	}
}

// TestTokenFromEnvironmentOrFlag checks that ROSTER_TOKEN still applies
// when --token is not given, and that --token wins over it.
func TestTokenFromEnvironmentOrFlag(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{args: nil, want: secretToken},
		{args: []string{"--token", "from-flag"}, want: "from-flag"},
		{args: []string{"--token", ""}, want: ""},
	}
	for _, tt := range tests {
		var out syncBuffer
		a := &app{stdout: &out, stderr: &out}
		root := a.rootCommand(envWithToken)
		root.SetArgs(append(append([]string(nil), tt.args...), "tls", "ca", "create", "--dir", t.TempDir()))
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if a.token != tt.want {
			t.Fatalf("%v: token %q, want %q", tt.args, a.token, tt.want)
		}
	}
}

// TestCompletionScripts: "roster completion SHELL" prints a script for each
// shell cobra supports, without reading the address or TLS settings.
func TestCompletionScripts(t *testing.T) {
	badEnv := func(name string) string {
		if name == "ROSTER_ADDR" {
			return "not an address list,,"
		}
		return ""
	}
	for shell, want := range map[string]string{
		"bash": "__start_roster", "zsh": "#compdef roster", "fish": "complete -c roster", "powershell": "Register-ArgumentCompleter",
	} {
		var stdout, stderr syncBuffer
		if code := run(context.Background(), []string{"completion", shell}, &stdout, &stderr, badEnv); code != 0 {
			t.Fatalf("completion %s: exit %d, stderr %q", shell, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("completion %s: output lacks %q:\n%.300s", shell, want, stdout.String())
		}
	}
	// The scripts ask the program itself for candidates on every TAB.
	var out, errOut syncBuffer
	if code := run(context.Background(), []string{"__complete", "ge"}, &out, &errOut, badEnv); code != 0 || !strings.Contains(out.String(), "get") {
		t.Errorf("__complete ge: exit %d, stdout %q, stderr %q; want the get command", code, out.String(), errOut.String())
	}
	// Values of the flags and arguments that take one of a few words.
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"get", "web", "--consistency", ""}, []string{"linearizable", "stale"}},
		{[]string{"get", "web", "-o", ""}, []string{"table", "json"}},
		{[]string{"members", "--output", ""}, []string{"table", "json"}},
		{[]string{"bench", "--consistency", ""}, []string{"linearizable", "stale"}},
		{[]string{"health", "web", "w1", ""}, []string{"passing", "warning", "critical"}},
		{[]string{"maint", "web", "w1", ""}, []string{"on", "off"}},
	} {
		var out, errOut syncBuffer
		code := run(context.Background(), append([]string{"__complete"}, tc.args...), &out, &errOut, badEnv)
		got := strings.Fields(out.String())
		for _, w := range tc.want {
			if code != 0 || !slices.Contains(got, w) {
				t.Errorf("__complete %v: exit %d, %q; want %v offered", tc.args, code, out.String(), tc.want)
				break
			}
		}
	}
	// The same environment stops any command that calls a server.
	var stdout, stderr syncBuffer
	if code := run(context.Background(), []string{"get", "web"}, &stdout, &stderr, badEnv); code != exitUsage {
		t.Errorf("get with a bad ROSTER_ADDR: exit %d, want %d", code, exitUsage)
	}
	// An unknown shell is a usage error, not help and exit 0.
	stderr = syncBuffer{}
	if code := run(context.Background(), []string{"completion", "tcsh"}, &stdout, &stderr, badEnv); code != exitUsage || !strings.Contains(stderr.String(), `unknown shell "tcsh"`) {
		t.Errorf("completion tcsh: exit %d, stderr %q; want %d naming the shell", code, stderr.String(), exitUsage)
	}
}

// TestOfflineCommandsIgnoreConnectionSettings: snapshot inspect and the
// tls commands talk to no server, so connection settings meant for the
// cluster (ROSTER_ADDR, ROSTER_TLS_*, --timeout) do not stop them; what
// they do use (--output, an --addr given to tls cert create) is checked.
func TestOfflineCommandsIgnoreConnectionSettings(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.snap")
	if err := os.WriteFile(junk, []byte("not a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(vars ...string) func(string) string {
		return func(name string) string {
			for i := 0; i+1 < len(vars); i += 2 {
				if vars[i] == name {
					return vars[i+1]
				}
			}
			return ""
		}
	}
	badAddr := env("ROSTER_ADDR", "bad")
	halfTLS := env("ROSTER_TLS_CERT", "/x")
	for _, tt := range []struct {
		name    string
		getenv  func(string) string
		args    []string
		code    int
		wantErr string
	}{
		{"ca create, bad ROSTER_ADDR", badAddr, []string{"tls", "ca", "create", "--dir", dir}, exitOK, ""},
		{"ca create, half-set TLS", halfTLS, []string{"tls", "ca", "create", "--dir", t.TempDir()}, exitOK, ""},
		{"client cert, bad ROSTER_ADDR", badAddr, []string{"tls", "cert", "create", "--client", "--dir", dir}, exitOK, ""},
		{"server cert, no timeout, half-set TLS", halfTLS, []string{"--timeout", "0", "tls", "cert", "create", "--server", "--dir", dir}, exitOK, ""},
		{"inspect, bad ROSTER_ADDR", badAddr, []string{"snapshot", "inspect", junk}, exitError, "junk.snap"},
		{"inspect, half-set TLS", halfTLS, []string{"snapshot", "inspect", junk}, exitError, "junk.snap"},
		{"inspect, no timeout", env(), []string{"--timeout", "0", "snapshot", "inspect", junk}, exitError, "junk.snap"},
		{"inspect, bad output", env(), []string{"-o", "yaml", "snapshot", "inspect", junk}, exitUsage, `--output "yaml"`},
		{"server cert, bad --addr given", env(), []string{"--addr", "bad", "tls", "cert", "create", "--server", "--dir", dir}, exitUsage, `--addr: address "bad"`},
		{"a call, bad ROSTER_ADDR", badAddr, []string{"status"}, exitUsage, `--addr: address "bad"`},
		{"a call, half-set TLS", halfTLS, []string{"status"}, exitUsage, "--tls-cert and --tls-key go together"},
	} {
		var stdout, stderr syncBuffer
		code := run(context.Background(), tt.args, &stdout, &stderr, tt.getenv)
		if code != tt.code || !strings.Contains(stderr.String(), tt.wantErr) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tt.name, code, stderr.String(), tt.code, tt.wantErr)
		}
		if code == exitError && (strings.Contains(stderr.String(), "--addr") || strings.Contains(stderr.String(), "--tls") || strings.Contains(stderr.String(), "--timeout")) {
			t.Errorf("%s: stderr %q names a connection setting", tt.name, stderr.String())
		}
	}
}

// TestAddrFlagTakesAnIPv6List: --addr reads a list of addresses as the
// client reads them, IPv6 hosts in brackets; a bad entry is a one-line
// usage error naming it.
func TestAddrFlagTakesAnIPv6List(t *testing.T) {
	for _, tt := range []struct {
		addr    string
		want    []string
		wantErr string
	}{
		{addr: "[::1]:7420,[::1]:7421", want: []string{"[::1]:7420", "[::1]:7421"}},
		{addr: "[2001:db8::1]:7420, 10.0.0.2:7420", want: []string{"[2001:db8::1]:7420", "10.0.0.2:7420"}},
		{addr: "[::1]:7420,::1:7421", wantErr: `--addr: address "::1:7421": an IPv6 host goes in brackets`},
		{addr: "[::1]:7420,,[::1]:7421", wantErr: `--addr: empty address in the list`},
		{addr: "[127.0.0.1]:7420", wantErr: `--addr: address "[127.0.0.1]:7420": brackets hold an IPv6 address`},
	} {
		var out syncBuffer
		a := &app{stdout: &out, stderr: &out}
		root := a.rootCommand(func(string) string { return "" })
		root.SetArgs([]string{"--addr", tt.addr, "tls", "ca", "create", "--dir", t.TempDir()})
		err := root.ExecuteContext(context.Background())
		if tt.wantErr != "" {
			if err == nil || !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Errorf("--addr %q: %v; want a one-line usage error with %q", tt.addr, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(a.addrs, tt.want) {
			t.Errorf("--addr %q: addresses %q, %v; want %q", tt.addr, a.addrs, err, tt.want)
		}
	}
}

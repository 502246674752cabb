package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runTLS(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	code := run(context.Background(), args, &stdout, &stderr, func(string) string { return "" })
	return code, stdout.String(), stderr.String()
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTLSCommandsCreateFilesAndNeverOverwrite(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runTLS(t, "tls", "ca", "create", "--dir", dir); code != 0 {
		t.Fatalf("ca create: %d %s", code, stderr)
	}
	if code, _, stderr := runTLS(t, "tls", "ca", "create", "--dir", dir); code == 0 || !strings.Contains(stderr, "already exists") {
		t.Fatalf("second ca create: exit %d %q", code, stderr)
	}
	code, stdout, stderr := runTLS(t, "--addr", "10.1.2.3:7420,roster-2.internal:7420", "tls", "cert", "create", "--server",
		"--dir", dir, "--dns", "roster.example", "--ip", "192.168.7.7", "-o", "json")
	if code != 0 {
		t.Fatalf("cert create --server: %d %s", code, stderr)
	}
	var files createdFiles
	if err := json.Unmarshal([]byte(stdout), &files); err != nil {
		t.Fatalf("bad JSON %q: %v", stdout, err)
	}
	if files.Cert != filepath.Join(dir, "dc1-server-roster-0.pem") || files.Key != filepath.Join(dir, "dc1-server-roster-0-key.pem") {
		t.Fatalf("files %+v", files)
	}
	server := readCert(t, files.Cert)
	for _, name := range []string{"server.dc1.roster", "localhost", "roster.example", "roster-2.internal"} {
		if err := server.VerifyHostname(name); err != nil {
			t.Errorf("server certificate: %v", err)
		}
	}
	for _, ip := range []string{"127.0.0.1", "10.1.2.3", "192.168.7.7"} {
		if err := server.VerifyHostname(ip); err != nil {
			t.Errorf("server certificate: %v", err)
		}
	}
	if fi, err := os.Stat(files.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}

	// The next certificate takes the next number; nothing is overwritten.
	if code, _, stderr := runTLS(t, "tls", "cert", "create", "--server", "--dir", dir); code != 0 {
		t.Fatalf("second cert create: %d %s", code, stderr)
	}
	if readCert(t, filepath.Join(dir, "dc1-server-roster-1.pem")).SerialNumber.Cmp(server.SerialNumber) == 0 {
		t.Fatal("the second server certificate is the first one")
	}
	if readCert(t, files.Cert).SerialNumber.Cmp(server.SerialNumber) != 0 {
		t.Fatal("the first server certificate was overwritten")
	}

	if code, _, stderr := runTLS(t, "tls", "cert", "create", "--client", "--dc", "eu1", "--dir", dir); code != 0 {
		t.Fatalf("cert create --client: %d %s", code, stderr)
	}
	client := readCert(t, filepath.Join(dir, "eu1-client-roster-0.pem"))
	if client.VerifyHostname("server.eu1.roster") == nil {
		t.Fatal("a client certificate carries the server name")
	}
	if len(client.ExtKeyUsage) != 1 || client.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("client certificate usages %v", client.ExtKeyUsage)
	}
}

func TestTLSCommandsBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"tls", "cert", "create", "--dir", dir},
		{"tls", "cert", "create", "--server", "--client", "--dir", dir},
		{"tls", "cert", "create", "--server", "--dc", "Bad_DC", "--dir", dir},
		{"tls", "cert", "create", "--server", "--ip", "not-an-ip", "--dir", dir},
		{"--tls-cert", "x.pem", "status"},
	} {
		if code, _, stderr := runTLS(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, stderr, exitUsage)
		}
	}
	if code, _, stderr := runTLS(t, "tls", "cert", "create", "--server", "--dir", dir); code != exitError || !strings.Contains(stderr, "roster-agent-ca") {
		t.Errorf("cert create without a CA: exit %d %q", code, stderr)
	}
}

// TestTLSCommandsNameAMissingDir: the error names the directory, not a
// file inside it.
func TestTLSCommandsNameAMissingDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for _, args := range [][]string{
		{"tls", "ca", "create", "--dir", missing},
		{"tls", "cert", "create", "--server", "--dir", missing},
	} {
		code, _, stderr := runTLS(t, args...)
		want := "roster: --dir " + missing + " does not exist; create it first (mkdir -p " + missing + ")\n"
		if code != exitError || stderr != want {
			t.Errorf("%v: exit %d %q, want 1 %q", args, code, stderr, want)
		}
	}
}

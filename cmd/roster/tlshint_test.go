package main

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/roster-registry/roster/internal/certs"
	"github.com/roster-registry/roster/internal/tlsconfig"
	"github.com/roster-registry/roster/rpc"
)

// listenLoopback listens on a free port of 127.0.0.1 in 27000-27999.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	start := rand.IntN(1000)
	for i := range 1000 {
		lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(27000+(start+i)%1000)))
		if err == nil {
			t.Cleanup(func() { lis.Close() })
			return lis
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatal(err)
		}
	}
	t.Fatal("no free port in 27000-27999")
	return nil
}

// testPKI writes a CA, a server certificate and a client certificate, and
// a client certificate of another CA, to a temp dir.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey, otherCert, otherKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(ca *certs.CA, name string, r certs.Request) (string, string) {
		c, k, err := ca.Issue(r)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", c), write(name+"-key.pem", k)
	}
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{ca: write("ca.pem", ca.CertPEM)}
	p.serverCert, p.serverKey = issue(ca, "server", certs.Request{Server: true})
	p.clientCert, p.clientKey = issue(ca, "client", certs.Request{})
	p.otherCert, p.otherKey = issue(other, "other", certs.Request{})
	return p
}

// TestTLSMismatchHints: each common TLS mismatch between the CLI and a
// real server on loopback ends in one line that keeps the transport error
// and adds a hint; the server logs the handshakes it refused.
func TestTLSMismatchHints(t *testing.T) {
	p := newTestPKI(t)
	conf, err := tlsconfig.Load(tlsconfig.Files{CA: p.ca, Cert: p.serverCert, Key: p.serverKey, VerifyIncoming: true,
		ServerName: certs.ServerName(certs.DefaultDatacenter)})
	if err != nil {
		t.Fatal(err)
	}
	var serverLog syncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &serverLog, Level: hclog.Info})
	tlsAddr := startFakeOn(t, listenLoopback(t), grpc.Creds(rpc.ServerCredentialsLogged(conf.API(), logger))).addr
	plainAddr := startFakeOn(t, listenLoopback(t)).addr

	tlsCA := []string{"--tls-ca", p.ca}
	tests := []struct {
		name, addr string
		args       []string
		hint       string
	}{
		{"plaintext client, TLS server", tlsAddr, nil, "the server expects TLS: pass --tls-ca"},
		{"no client certificate", tlsAddr, tlsCA, "the server refused the client certificate (missing, expired or from another CA): check --tls-cert/--tls-key"},
		{"client certificate of another CA", tlsAddr, append(tlsCA, "--tls-cert", p.otherCert, "--tls-key", p.otherKey),
			"the server refused the client certificate"},
		{"TLS client, plaintext server", plainAddr, tlsCA, "the server does not speak TLS: drop --tls-*"},
	}
	for _, tt := range tests {
		args := append(append([]string(nil), tt.args...), "status")
		code, _, stderr := runCLI(t, testContext(t), tt.addr, args...)
		if code != exitError || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "roster: unavailable: ") ||
			!strings.Contains(stderr, "; hint: "+tt.hint) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and one line with the error and the hint %q", tt.name, code, stderr, tt.hint)
		}
	}
	good := append(tlsCA, "--tls-cert", p.clientCert, "--tls-key", p.clientKey, "status")
	if code, _, stderr := runCLI(t, testContext(t), tlsAddr, good...); code != 0 {
		t.Fatalf("a good client certificate: exit %d %q", code, stderr)
	}
	waitFor(t, "the server to log the refused handshake", func() bool {
		l := serverLog.String()
		return strings.Contains(l, "[INFO]  refused a TLS handshake on the gRPC port: peer=127.0.0.1:") &&
			strings.Contains(l, "reason=\"tls: first record does not look like a TLS handshake\"")
	})
}

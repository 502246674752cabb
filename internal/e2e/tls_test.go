package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/internal/tlsconfig"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// tlsFiles creates a CA, a server and a client certificate in dir with the
// roster tls commands, and returns the CLI used.
func tlsFiles(t *testing.T, roster, dir string) {
	t.Helper()
	c := &Cluster{T: t, Roster: roster}
	for _, args := range [][]string{
		{"tls", "ca", "create", "--dir", dir},
		{"tls", "cert", "create", "--server", "--dir", dir},
		{"tls", "cert", "create", "--client", "--dir", dir},
	} {
		if _, stderr, code := c.CLI(args...); code != 0 {
			t.Fatalf("roster %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
	}
	for _, key := range []string{"roster-agent-ca-key.pem", "dc1-server-roster-0-key.pem", "dc1-client-roster-0-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, key))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", key, fi.Mode().Perm())
		}
	}
	if _, stderr, code := c.CLI("tls", "ca", "create", "--dir", dir); code == 0 || !strings.Contains(stderr, "already exists") {
		t.Fatalf("a second CA in the same dir: exit %d, %q; want a refusal", code, stderr)
	}
}

// TestTLSClusterEndToEnd runs three rosterd processes with TLS on every
// link (API with verify-incoming, Raft and forwarding with mutual TLS),
// registers through a follower and reads it back elsewhere; clients
// without TLS or without a certificate are refused, and a client
// certificate can neither relay a call as a server nor speak Raft.
func TestTLSClusterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	_, roster := Binaries(t)
	dir := t.TempDir()
	tlsFiles(t, roster, dir)
	ca := filepath.Join(dir, "roster-agent-ca.pem")
	srvCert, srvKey := filepath.Join(dir, "dc1-server-roster-0.pem"), filepath.Join(dir, "dc1-server-roster-0-key.pem")
	cliCert, cliKey := filepath.Join(dir, "dc1-client-roster-0.pem"), filepath.Join(dir, "dc1-client-roster-0-key.pem")

	c := StartCluster(t, 3, "--tls-ca", ca, "--tls-cert", srvCert, "--tls-key", srvKey, "--tls-verify-incoming")
	c.Env = []string{"ROSTER_TLS_CA=" + ca, "ROSTER_TLS_CERT=" + cliCert, "ROSTER_TLS_KEY=" + cliKey}
	leader := c.Leader()
	var followers []*Proc
	for _, p := range c.Procs {
		if p != leader {
			followers = append(followers, p)
		}
	}

	// A write through a follower is forwarded to the leader over mutual
	// TLS, replicated over Raft over mutual TLS, and read on the other.
	if _, stderr, code := c.CLI("--addr", followers[0].GRPC, "register", "web", "a", "10.0.0.1:80"); code != 0 {
		t.Fatalf("register via follower: %s", stderr)
	}
	c.Eventually("the other follower to read the write", 30*time.Second, func() bool {
		return c.ids(followers[1].GRPC, "--consistency", "stale")["a"] == 80
	})
	if got := c.ids(followers[1].GRPC); got["a"] != 80 {
		t.Fatalf("linearizable read on a follower: %v", got)
	}

	// Plaintext, and TLS without a client certificate, are refused.
	plain := &Cluster{T: t, Roster: roster}
	if _, stderr, code := plain.CLI("--addr", leader.GRPC, "--timeout", "3s", "status"); code == 0 {
		t.Fatal("a plaintext client was served")
	} else {
		t.Logf("plaintext client: %s", strings.TrimSpace(stderr))
	}
	noCert := &Cluster{T: t, Roster: roster, Env: []string{"ROSTER_TLS_CA=" + ca}}
	if _, stderr, code := noCert.CLI("--addr", leader.GRPC, "--timeout", "3s", "status"); code == 0 {
		t.Fatal("a client without a certificate was served with --tls-verify-incoming")
	} else {
		t.Logf("client without a certificate: %s", strings.TrimSpace(stderr))
	}

	// A call marked as relayed by a follower, from a client certificate,
	// is refused by the leader; the same call from a server certificate
	// is accepted.
	relayed := func(cert, key string) error {
		conf, err := tlsconfig.Client(ca, cert, key, "")
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(leader.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "roster-forwarded", followers[0].ID)
		_, err = rosterv1.NewRegistryClient(cc).Register(ctx, &rosterv1.RegisterRequest{
			Instance: &rosterv1.Instance{Namespace: "default", Service: "web", Id: "evil", Address: "10.6.6.6", Port: 666},
		})
		return err
	}
	if err := relayed(cliCert, cliKey); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("relayed write with a client certificate: %v, want PermissionDenied", err)
	}
	if got := c.ids(leader.GRPC); got["evil"] != 0 {
		t.Fatalf("the refused write was applied: %v", got)
	}
	if err := relayed(srvCert, srvKey); err != nil {
		t.Fatalf("relayed write with a server certificate: %v", err)
	}

	// A client certificate cannot speak Raft to any node; a server one can.
	appendEntries := func(cert, key string) error {
		conf, err := tlsconfig.Client(ca, cert, key, "server.dc1.roster")
		if err != nil {
			t.Fatal(err)
		}
		tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: tlsDialer{conf, make(chan struct{})}, MaxPool: 1, Timeout: 5 * time.Second,
		})
		defer tr.Close()
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}}
		var resp raft.AppendEntriesResponse
		return tr.AppendEntries(raft.ServerID(leader.ID), raft.ServerAddress(leader.Raft), req, &resp)
	}
	if err := appendEntries(cliCert, cliKey); err == nil {
		t.Fatal("the Raft port answered a client certificate")
	} else {
		t.Logf("raft with a client certificate: %v", err)
	}
	if err := appendEntries(srvCert, srvKey); err != nil {
		t.Fatalf("raft with a server certificate: %v", err)
	}
}

// tlsDialer is a dial-only raft.StreamLayer over TLS.
type tlsDialer struct {
	conf   *tls.Config
	closed chan struct{}
}

func (d tlsDialer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return (&tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: d.conf}).Dial("tcp", string(addr))
}
func (d tlsDialer) Accept() (net.Conn, error) { <-d.closed; return nil, net.ErrClosed }
func (d tlsDialer) Close() error              { close(d.closed); return nil }
func (tlsDialer) Addr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestTLSHTTPFrontEnd runs one rosterd --dev with TLS on gRPC and HTTP and
// --tls-verify-incoming: HTTPS with the client certificate is served (the
// in-process gRPC connection behind it needs no TLS), plaintext HTTP and
// HTTPS without a certificate are not.
func TestTLSHTTPFrontEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	rosterd, roster := Binaries(t)
	dir := t.TempDir()
	tlsFiles(t, roster, dir)
	ca := filepath.Join(dir, "roster-agent-ca.pem")
	ports := FreePorts(t, 2)
	addr, httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	p := &Proc{ID: "dev", GRPC: addr, LogPath: filepath.Join(dir, "dev.log"), rosterd: rosterd, t: t,
		args: []string{"--dev", "--grpc-addr", addr, "--http-addr", httpAddr, "--dns-addr", "", "--tls-ca", ca,
			"--tls-cert", filepath.Join(dir, "dc1-server-roster-0.pem"), "--tls-key", filepath.Join(dir, "dc1-server-roster-0-key.pem"),
			"--tls-verify-incoming"}}
	p.Start()
	t.Cleanup(p.Kill)
	c := &Cluster{T: t, Roster: roster, Procs: []*Proc{p}, Env: []string{"ROSTER_TLS_CA=" + ca,
		"ROSTER_TLS_CERT=" + filepath.Join(dir, "dc1-client-roster-0.pem"), "ROSTER_TLS_KEY=" + filepath.Join(dir, "dc1-client-roster-0-key.pem")}}
	c.Leader()

	httpClient := func(withCert bool) *http.Client {
		cert, key := "", ""
		if withCert {
			cert, key = filepath.Join(dir, "dc1-client-roster-0.pem"), filepath.Join(dir, "dc1-client-roster-0-key.pem")
		}
		conf, err := tlsconfig.Client(ca, cert, key, "")
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}}
	}
	base := "https://" + httpAddr
	var resp *http.Response
	c.Eventually("HTTPS /health", 20*time.Second, func() bool {
		r, err := httpClient(true).Get(base + "/health")
		if err != nil {
			return false
		}
		r.Body.Close()
		resp = r
		return r.StatusCode == http.StatusOK
	})
	t.Logf("HTTPS /health: %s over %s", resp.Status, resp.Proto)
	if _, err := httpClient(false).Get(base + "/health"); err == nil {
		t.Fatal("HTTPS without a client certificate was served")
	}
	if r, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + httpAddr + "/health"); err == nil {
		r.Body.Close()
		if r.StatusCode == http.StatusOK {
			t.Fatal("plaintext HTTP was served")
		}
	}

	body := `{"instance":{"service":"web","id":"h1","address":"10.0.0.9","port":8080}}`
	r, err := httpClient(true).Post(base+"/api/v1/instances", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS register: %s", r.Status)
	}
	if got := c.ids(addr); got["h1"] != 8080 {
		t.Fatalf("after HTTPS register: %v", got)
	}
}

package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-registry/roster/internal/certs"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

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

// nodePKI is one CA with a server and a client certificate, PEM-encoded.
type nodePKI struct {
	caPEM, serverPEM, serverKey []byte
	client                      tls.Certificate
	serial                      string
}

func newNodePKI(t *testing.T, name string) nodePKI {
	t.Helper()
	ca, err := certs.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := nodePKI{caPEM: ca.CertPEM}
	if p.serverPEM, p.serverKey, err = ca.Issue(certs.Request{Server: true}); err != nil {
		t.Fatal(err)
	}
	server, err := tls.X509KeyPair(p.serverPEM, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(server.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	p.serial = leaf.SerialNumber.String()
	cc, ck, err := ca.Issue(certs.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if p.client, err = tls.X509KeyPair(cc, ck); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTLSReloadOnHangup: a SIGHUP reloads the certificate, key and CA, and
// the next handshake on a real listener sees them; files that do not load
// are refused and the material in use stays.
func TestTLSReloadOnHangup(t *testing.T) {
	dir := t.TempDir()
	f := &tlsFlags{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server-key.pem"),
		verifyIncoming: true, serverName: certs.ServerName(certs.DefaultDatacenter)}
	install := func(p nodePKI) {
		for path, b := range map[string][]byte{f.ca: p.caPEM, f.cert: p.serverPEM, f.key: p.serverKey} {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, second := newNodePKI(t, "first CA"), newNodePKI(t, "second CA")
	install(first)
	if err := f.load(); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	reloaded := make(chan struct{})
	stop := f.reloadOnHangup(hclog.New(&hclog.LoggerOptions{Output: &logs}), reloaded)
	defer stop()
	hangup := func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case <-reloaded:
		case <-time.After(10 * time.Second):
			t.Fatal("no reload after SIGHUP")
		}
	}

	lis := tls.NewListener(listenLoopback(t), f.api("h2"))
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(first.caPEM)
	roots.AppendCertsFromPEM(second.caPEM)
	// exchange returns the serial of the server's certificate, once the
	// server has accepted the client's (TLS 1.3 says so on the first read).
	exchange := func(conf *tls.Config) (string, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(), conf)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			return "", err
		}
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	asClient := func(cert tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: roots, ServerName: f.serverName, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
	}

	if got, err := exchange(asClient(first.client)); err != nil || got != first.serial {
		t.Fatalf("before the reload: serial %s, %v; want %s", got, err, first.serial)
	}

	install(second)
	hangup()
	if got, err := exchange(asClient(second.client)); err != nil || got != second.serial {
		t.Fatalf("after the reload: serial %s, %v; want the new certificate %s", got, err, second.serial)
	}
	if _, err := exchange(asClient(first.client)); err == nil {
		t.Fatal("a client certificate of the old CA is still accepted after the reload")
	}
	// Connections to other servers present the new certificate and trust
	// the new CA too.
	if got, err := exchange(f.dialing(f.conf.Load().Peer())); err != nil || got != second.serial {
		t.Fatalf("peer dial after the reload: serial %s, %v", got, err)
	}
	if !strings.Contains(logs.String(), "[INFO]  SIGHUP: reloaded the TLS certificate, key and CA: cert="+f.cert) {
		t.Fatalf("reload not logged:\n%s", logs.String())
	}

	if err := os.WriteFile(f.cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	hangup()
	if got, err := exchange(asClient(second.client)); err != nil || got != second.serial {
		t.Fatalf("after a failed reload: serial %s, %v; want the certificate in use, %s", got, err, second.serial)
	}
	if !strings.Contains(logs.String(), "[ERROR] SIGHUP: TLS files not reloaded; the ones loaded before stay in use: error=") {
		t.Fatalf("failed reload not logged:\n%s", logs.String())
	}
}

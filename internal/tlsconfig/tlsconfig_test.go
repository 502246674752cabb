package tlsconfig_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/certs"
	"github.com/roster-registry/roster/internal/tlsconfig"
)

// pki is a CA and certificates written to a temp dir.
type pki struct {
	t   *testing.T
	dir string
	ca  *certs.CA
}

func newPKI(t *testing.T) *pki {
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: t.TempDir(), ca: ca}
	p.write("ca.pem", ca.CertPEM)
	return p
}

func (p *pki) write(name string, b []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// issue writes a certificate and key named name and returns their paths.
func (p *pki) issue(name string, r certs.Request) (string, string) {
	c, k, err := p.ca.Issue(r)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.write(name+".pem", c), p.write(name+"-key.pem", k)
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca.pem") }

func (p *pki) node(verifyIncoming bool) *tlsconfig.Config {
	cert, key := p.issue("server", certs.Request{Server: true})
	c, err := tlsconfig.Load(tlsconfig.Files{CA: p.caFile(), Cert: cert, Key: key, VerifyIncoming: verifyIncoming, ServerName: certs.ServerName("dc1")})
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

// serve accepts on a real listener with conf and answers "ok" to every
// connection whose handshake succeeds.
func serve(t *testing.T, conf *tls.Config) string {
	lis, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()
	return lis.Addr().String()
}

// exchange dials addr with conf and reads the answer. With TLS 1.3 a
// refused client certificate shows on the first read, not in the dial.
func exchange(addr string, conf *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != "ok" {
		return errors.New("unexpected answer")
	}
	return nil
}

func (p *pki) client(cert, key, serverName string) *tls.Config {
	conf, err := tlsconfig.Client(p.caFile(), cert, key, serverName)
	if err != nil {
		p.t.Fatal(err)
	}
	return conf
}

func TestAPIRefusesPlaintextAndMissingOrBadCertificates(t *testing.T) {
	p := newPKI(t)
	addr := serve(t, p.node(true).API())

	goodCert, goodKey := p.issue("client", certs.Request{})
	expiredCert, expiredKey := p.issue("expired", certs.Request{
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	foreign := newPKI(t)
	foreignCert, foreignKey := foreign.issue("foreign", certs.Request{})

	if err := exchange(addr, p.client(goodCert, goodKey, "")); err != nil {
		t.Fatalf("a CA-signed client certificate was refused: %v", err)
	}
	for name, conf := range map[string]*tls.Config{
		"no certificate":      p.client("", "", ""),
		"expired certificate": p.client(expiredCert, expiredKey, ""),
		"foreign CA":          p.client(foreignCert, foreignKey, ""),
	} {
		err := exchange(addr, conf)
		if err == nil {
			t.Errorf("%s: served", name)
			continue
		}
		t.Logf("%s: %v", name, err)
	}

	// Plaintext: the server answers with a TLS alert, never "ok".
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	if strings.Contains(string(b), "ok") {
		t.Fatalf("a plaintext client was answered %q", b)
	}
}

func TestClientRefusesExpiredOrForeignServer(t *testing.T) {
	p := newPKI(t)
	for name, r := range map[string]certs.Request{
		"expired": {Server: true, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)},
	} {
		cert, key := p.issue(name, r)
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		addr := serve(t, &tls.Config{Certificates: []tls.Certificate{pair}})
		if err := exchange(addr, p.client("", "", "")); err == nil {
			t.Errorf("%s server certificate accepted", name)
		}
	}
	foreign := newPKI(t)
	addr := serve(t, foreign.node(false).API())
	if err := exchange(addr, p.client("", "", "")); err == nil {
		t.Error("a server of a foreign CA was accepted")
	}
}

func TestRaftPortTakesServerCertificatesOnly(t *testing.T) {
	p := newPKI(t)
	node := p.node(false)
	addr := serve(t, node.RaftIncoming())
	name := certs.ServerName("dc1")

	clientCert, clientKey := p.issue("client", certs.Request{})
	if err := exchange(addr, p.client(clientCert, clientKey, name)); err == nil {
		t.Fatal("the Raft port accepted a client certificate")
	}
	if err := exchange(addr, p.client("", "", name)); err == nil {
		t.Fatal("the Raft port accepted no certificate")
	}
	other := newPKI(t)
	oc, ok := other.issue("server", certs.Request{Server: true})
	if err := exchange(addr, p.client(oc, ok, name)); err == nil {
		t.Fatal("the Raft port accepted a server certificate of a foreign CA")
	}
	dc2c, dc2k := p.issue("dc2", certs.Request{Server: true, Datacenter: "dc2"})
	if err := exchange(addr, p.client(dc2c, dc2k, name)); err == nil {
		t.Fatal("the Raft port accepted the server certificate of another datacenter")
	}
	if err := exchange(addr, p.node(false).RaftPeer()); err != nil {
		t.Fatalf("the Raft port refused a server certificate: %v", err)
	}

	// A server dialing a peer refuses one that shows a client certificate.
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	fake := serve(t, &tls.Config{Certificates: []tls.Certificate{pair}})
	if err := exchange(fake, node.RaftPeer()); err == nil {
		t.Fatal("a peer showing a client certificate was taken for a server")
	}
}

func TestLoadRefusesAClientCertificateAsTheNodes(t *testing.T) {
	p := newPKI(t)
	cert, key := p.issue("client", certs.Request{})
	_, err := tlsconfig.Load(tlsconfig.Files{CA: p.caFile(), Cert: cert, Key: key, ServerName: certs.ServerName("dc1")})
	if err == nil {
		t.Fatal("a client certificate was loaded as a server's")
	}
	t.Log(err)
}

func TestVerifyServer(t *testing.T) {
	p := newPKI(t)
	node := p.node(false)
	serverCert, serverKey := p.issue("s", certs.Request{Server: true})
	clientCert, clientKey := p.issue("c", certs.Request{})
	for _, tc := range []struct {
		cert, key string
		ok        bool
	}{{serverCert, serverKey, true}, {clientCert, clientKey, false}} {
		pair, err := tls.LoadX509KeyPair(tc.cert, tc.key)
		if err != nil {
			t.Fatal(err)
		}
		// Accept on the API config and check the state the server saw.
		lis, err := tls.Listen("tcp", "127.0.0.1:0", node.API())
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() {
			c, err := lis.Accept()
			if err != nil {
				got <- err
				return
			}
			defer c.Close()
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err != nil {
				got <- err
				return
			}
			got <- node.VerifyServer(tc.ConnectionState())
			_, _ = c.Write([]byte("ok"))
		}()
		conf := p.client("", "", "")
		conf.Certificates = []tls.Certificate{pair}
		_ = exchange(lis.Addr().String(), conf)
		if err := <-got; (err == nil) != tc.ok {
			t.Errorf("VerifyServer of %s: %v", tc.cert, err)
		}
		lis.Close()
	}
}

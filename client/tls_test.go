package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/roster-registry/roster/internal/certs"
	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/internal/tlsconfig"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// TestWithTLS: a client with WithTLS (the CA and a client certificate)
// talks to nodes that require one; a client without TLS, or with TLS and no
// certificate, does not get an answer.
func TestWithTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sc, sk, err := ca.Issue(certs.Request{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cc, ck, err := ca.Issue(certs.Request{})
	if err != nil {
		t.Fatal(err)
	}
	node, err := tlsconfig.Load(tlsconfig.Files{CA: write("ca.pem", ca.CertPEM), Cert: write("s.pem", sc), Key: write("s-key.pem", sk),
		VerifyIncoming: true, ServerName: certs.ServerName("dc1")})
	if err != nil {
		t.Fatal(err)
	}
	tc := testcluster.New(t, 1, testcluster.Options{
		Server: func(o *rpc.Options) { o.VerifyPeerServer = node.VerifyServer },
		GRPCOptions: func(string) []grpc.ServerOption {
			return []grpc.ServerOption{grpc.Creds(rpc.ServerCredentials(node.API()))}
		},
	})
	addrs := []string{tc.Nodes[0].Addr}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	pair, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}

	call := func(opts ...Option) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := New(ctx, addrs, append(opts, WithConnectTimeout(2*time.Second))...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Status(ctx, &rosterv1.StatusRequest{})
		return err
	}
	if err := call(WithTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}})); err != nil {
		t.Fatalf("with TLS and a client certificate: %v", err)
	}
	if err := call(); err == nil {
		t.Fatal("a plaintext client was answered")
	}
	if err := call(WithTLS(&tls.Config{RootCAs: pool})); err == nil {
		t.Fatal("a client without a certificate was answered")
	}
	if err := call(WithTLS(nil)); err == nil {
		t.Fatal("a client trusting only the system roots was answered")
	}
}

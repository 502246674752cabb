package rpc_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/internal/certs"
	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/internal/tlsconfig"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// tlsFiles holds a CA, a server and a client certificate on disk.
type tlsFiles struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	node                                             *tlsconfig.Config
}

func newTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
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
	f := tlsFiles{ca: write("ca.pem", ca.CertPEM)}
	sc, sk, err := ca.Issue(certs.Request{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cc, ck, err := ca.Issue(certs.Request{})
	if err != nil {
		t.Fatal(err)
	}
	f.serverCert, f.serverKey = write("s.pem", sc), write("s-key.pem", sk)
	f.clientCert, f.clientKey = write("c.pem", cc), write("c-key.pem", ck)
	f.node, err = tlsconfig.Load(tlsconfig.Files{CA: f.ca, Cert: f.serverCert, Key: f.serverKey, VerifyIncoming: true, ServerName: certs.ServerName("dc1")})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// dial connects to addr over TLS with the given client certificate.
func (f tlsFiles) dial(t *testing.T, addr, cert, key, serverName string) *grpc.ClientConn {
	t.Helper()
	conf, err := tlsconfig.Client(f.ca, cert, key, serverName)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestForwardingTakesServerCertificatesOnly: a follower that relays a write
// to the leader with a client certificate is refused by the leader's
// server-name check and nothing is applied; one relaying with its server
// certificate is served. Clients with a client certificate are served on
// every node either way.
func TestForwardingTakesServerCertificatesOnly(t *testing.T) {
	f := newTLSFiles(t)
	for _, tc := range []struct {
		name              string
		peerCert, peerKey string
		wantCode          codes.Code
	}{
		{"server certificate", f.serverCert, f.serverKey, codes.OK},
		{"client certificate", f.clientCert, f.clientKey, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peerConf, err := tlsconfig.Client(f.ca, tc.peerCert, tc.peerKey, certs.ServerName("dc1"))
			if err != nil {
				t.Fatal(err)
			}
			c := testcluster.New(t, 3, testcluster.Options{
				Server: func(o *rpc.Options) {
					o.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(peerConf))}
					o.VerifyPeerServer = f.node.VerifyServer
				},
				GRPCOptions: func(string) []grpc.ServerOption {
					return []grpc.ServerOption{grpc.Creds(rpc.ServerCredentials(f.node.API()))}
				},
			})
			leader := c.WaitLeader()
			follower := c.Followers()[0]
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			inst := &rosterv1.Instance{Namespace: "default", Service: "web", Id: "a", Address: "10.0.0.1", Port: 80}

			viaFollower := rosterv1.NewRegistryClient(f.dial(t, follower.Addr, f.clientCert, f.clientKey, ""))
			_, err = viaFollower.Register(ctx, &rosterv1.RegisterRequest{Instance: inst})
			t.Logf("register through the follower: %v", err)
			if status.Code(err) != tc.wantCode {
				t.Fatalf("register through a follower relaying with a %s: %v, want %s", tc.name, err, tc.wantCode)
			}
			onLeader := rosterv1.NewRegistryClient(f.dial(t, leader.Addr, f.clientCert, f.clientKey, ""))
			got, err := onLeader.GetService(ctx, &rosterv1.GetServiceRequest{Namespace: "default", Service: "web",
				Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE}})
			if err != nil {
				t.Fatalf("read on the leader: %v", err)
			}
			if applied := len(got.Instances) == 1; applied != (tc.wantCode == codes.OK) {
				t.Fatalf("after a %s relay the leader holds %v", tc.name, got.Instances)
			}
			if _, err := onLeader.Register(ctx, &rosterv1.RegisterRequest{Instance: inst}); err != nil {
				t.Fatalf("a client certificate on the leader: %v", err)
			}
		})
	}
}

// TestInProcessCallsAreNeverServers: the in-process connection of the HTTP
// front end carries no TLS, so a call over it marked as relayed is refused
// when servers must prove themselves, and an unmarked one is served.
func TestInProcessCallsAreNeverServers(t *testing.T) {
	f := newTLSFiles(t)
	c := testcluster.New(t, 1, testcluster.Options{
		Server: func(o *rpc.Options) { o.VerifyPeerServer = f.node.VerifyServer },
		GRPCOptions: func(string) []grpc.ServerOption {
			return []grpc.ServerOption{grpc.Creds(rpc.ServerCredentials(f.node.API()))}
		},
	})
	conn, err := rpc.InProcess(c.WaitLeader().GRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg := rosterv1.NewRegistryClient(conn)
	inst := &rosterv1.Instance{Namespace: "default", Service: "web", Id: "a", Address: "10.0.0.1", Port: 80}
	marked := metadata.AppendToOutgoingContext(ctx, "roster-forwarded", "n9")
	if _, err := reg.Register(marked, &rosterv1.RegisterRequest{Instance: inst}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("in-process call marked as relayed: %v, want PermissionDenied", err)
	}
	if _, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: inst}); err != nil {
		t.Fatalf("in-process call: %v", err)
	}
}

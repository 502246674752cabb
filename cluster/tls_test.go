package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/internal/certs"
	"github.com/roster-registry/roster/internal/tlsconfig"
	"github.com/roster-registry/roster/store"
)

// testPKI writes a CA, a server and a client certificate to a temp dir and
// returns the node configuration and the client's TLS files.
func testPKI(t *testing.T) (node *tlsconfig.Config, ca, clientCert, clientKey string) {
	t.Helper()
	dir := t.TempDir()
	authority, err := certs.NewCA("test CA", time.Hour)
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
	ca = write("ca.pem", authority.CertPEM)
	sc, sk, err := authority.Issue(certs.Request{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cc, ck, err := authority.Issue(certs.Request{})
	if err != nil {
		t.Fatal(err)
	}
	node, err = tlsconfig.Load(tlsconfig.Files{CA: ca, Cert: write("s.pem", sc), Key: write("s-key.pem", sk), ServerName: certs.ServerName("dc1")})
	if err != nil {
		t.Fatal(err)
	}
	return node, ca, write("c.pem", cc), write("c-key.pem", ck)
}

func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// TestRaftOverMutualTLS runs three nodes whose Raft transports speak
// mutual TLS on real loopback listeners: they elect a leader and
// replicate a write. The bootstrap probe, dialing over TLS, gets an answer
// with a server certificate and none with a client certificate.
func TestRaftOverMutualTLS(t *testing.T) {
	conf, ca, clientCert, clientKey := testPKI(t)
	rt := &RaftTLS{Incoming: conf.RaftIncoming(), Outgoing: conf.RaftPeer()}
	addrs := freeAddrs(t, 3)
	var peers []Peer
	for i, a := range addrs {
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: a})
	}
	var nodes []*Node
	for i, p := range peers {
		n, err := New(Config{
			NodeID: p.ID, InMemory: true, RaftBind: addrs[i], InitialCluster: peers, RaftTLS: rt,
			APIAddr:          "127.0.0.1:1",
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
			LeaderLeaseTimeout: 100 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
			Logger: hclog.New(&hclog.LoggerOptions{Name: p.ID, Output: os.Stderr, Level: hclog.Error}),
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			_ = n.Shutdown()
		}
	})

	var leader *Node
	deadline := time.Now().Add(30 * time.Second)
	for leader == nil {
		if time.Now().After(deadline) {
			t.Fatal("no leader over TLS within 30s")
		}
		for _, n := range nodes {
			if n.LeaderReady() {
				leader = n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rev, err := leader.Register(ctx, &store.Instance{Namespace: "default", Service: "web", ID: "a", Address: "10.0.0.1", Port: 80}, "")
	if err != nil {
		t.Fatalf("register on the leader: %v", err)
	}
	for _, n := range nodes {
		if err := n.WaitApplied(ctx, rev); err != nil {
			t.Fatalf("%s did not apply the write: %v", n.ID(), err)
		}
	}

	// The probe transport (bootstrap.go) dials over TLS with the node's
	// certificate and is answered; with a client certificate it is not.
	probe := func(d *dialOnly) probeAnswer {
		tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: d, MaxPool: 1, Timeout: 5 * time.Second})
		defer func() { tr.CloseStreams(); _ = tr.Close() }()
		return probePeer(tr, peers[0])
	}
	if a := probe(newDialOnly(rt)); !a.answered || a.lastLog < 2 {
		t.Fatalf("probe with a server certificate: %+v", a)
	}
	clientConf, err := tlsconfig.Client(ca, clientCert, clientKey, certs.ServerName("dc1"))
	if err != nil {
		t.Fatal(err)
	}
	if a := probe(newDialOnly(&RaftTLS{Incoming: rt.Incoming, Outgoing: clientConf})); a.answered {
		t.Fatalf("the Raft port answered a client certificate: %+v", a)
	}
	if a := probe(newDialOnly(nil)); a.answered {
		t.Fatalf("the Raft port answered plaintext: %+v", a)
	}
}

package dnsapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc/metadata"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/dnsapi"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// TestACLDNSToken: with ACLs on, DNS answers what its --dns-token may
// read; a service it may not read, or any service without a token, is
// REFUSED.
func TestACLDNSToken(t *testing.T) {
	const boot = "dns-boot-secret"
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
		o.ACL = rpc.ACLOptions{Enabled: true, BootstrapSecret: boot}
	}})
	leader := c.WaitLeader()
	c.Eventually("bootstrapped", 10*time.Second, func() bool {
		return leader.Node.Store().View().TokenBySecret(acl.HashSecret(boot)) != nil
	})
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+boot), 10*time.Second)
	defer cancel()
	for _, svc := range []string{"web", "db"} {
		if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
			Service: svc, Id: "i1", Address: "10.0.0.7", Port: 80}}); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := rosterv1.NewACLClient(leader.Conn).CreateToken(ctx, &rosterv1.CreateTokenRequest{Rules: []string{"service:web:read"}})
	if err != nil {
		t.Fatal(err)
	}
	withToken := func(secret string) string {
		s, err := dnsapi.Listen("127.0.0.1:0", dnsapi.Config{Conn: leader.Conn, Token: secret})
		if err != nil {
			t.Fatal(err)
		}
		s.Start(make(chan error, 2))
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		return s.Addr()
	}
	reader, anonymous := withToken(tok.Token.SecretId), withToken("")
	if r := ask(t, reader, "udp", "web.service.roster.", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("web with its token: %v", r)
	}
	if r := ask(t, reader, "udp", "db.service.roster.", dns.TypeA, 0); r.Rcode != dns.RcodeRefused {
		t.Fatalf("db with a web token: rcode %s", dns.RcodeToString[r.Rcode])
	}
	if r := ask(t, anonymous, "udp", "web.service.roster.", dns.TypeA, 0); r.Rcode != dns.RcodeRefused {
		t.Fatalf("web without a token: rcode %s", dns.RcodeToString[r.Rcode])
	}
}

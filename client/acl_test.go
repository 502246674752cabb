package client_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// TestWithToken: a client made WithToken sends its token on unary calls
// and watch streams; one without is refused.
func TestWithToken(t *testing.T) {
	const boot = "sdk-boot-secret"
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
		o.ACL = rpc.ACLOptions{Enabled: true, BootstrapSecret: boot}
	}})
	c.Eventually("bootstrapped", 10*time.Second, func() bool {
		for _, nd := range c.Nodes {
			if nd.Node.Store().View().TokenBySecret(acl.HashSecret(boot)) == nil {
				return false
			}
		}
		return true
	})
	var addrs []string
	for _, nd := range c.Nodes {
		addrs = append(addrs, nd.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	with, err := client.New(ctx, addrs, client.WithToken(boot))
	if err != nil {
		t.Fatal(err)
	}
	defer with.Close()
	without, err := client.New(ctx, addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer without.Close()

	reg := &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "web", Id: "w1", Address: "10.0.0.1", Port: 80}}
	if _, err := without.Register(ctx, reg); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("without a token: %v", err)
	}
	if _, err := with.Register(ctx, reg); err != nil {
		t.Fatalf("with a token: %v", err)
	}
	for resp, err := range with.Watch(ctx, &rosterv1.WatchRequest{Service: "web"}) {
		if err != nil {
			t.Fatalf("watch with a token: %v", err)
		}
		if len(resp.GetEvents()) > 0 || resp.GetReset_() {
			break
		}
	}
	for _, err := range without.Watch(ctx, &rosterv1.WatchRequest{Service: "web"}) {
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("watch without a token: %v", err)
		}
		break
	}
}

// TestWatchEndsWhenItsTokenIsDeleted: a Watch whose token is deleted
// while it streams ends with the refusal once every endpoint has refused
// it, rather than reopening refused streams for ever.
func TestWatchEndsWhenItsTokenIsDeleted(t *testing.T) {
	const boot = "sdk-boot-secret"
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
		o.ACL = rpc.ACLOptions{Enabled: true, BootstrapSecret: boot}
	}})
	leader := c.WaitLeader()
	c.Eventually("bootstrapped", 10*time.Second, func() bool {
		return leader.Node.Store().View().TokenBySecret(acl.HashSecret(boot)) != nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mgmt := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+boot)
	tok, err := rosterv1.NewACLClient(leader.Conn).CreateToken(mgmt, &rosterv1.CreateTokenRequest{Rules: []string{"service:web:read"}})
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, nd := range c.Nodes {
		addrs = append(addrs, nd.Addr)
	}
	cl, err := client.New(ctx, addrs, client.WithToken(tok.Token.SecretId))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var last error
	deleted := false
	for resp, err := range cl.Watch(ctx, &rosterv1.WatchRequest{Service: "web"}) {
		if err != nil {
			last = err
			continue // the range ends after an error
		}
		if resp.GetReset_() && !deleted {
			// Another node may not have applied the deletion yet, and
			// serve a reset of its own first.
			deleted = true
			if _, err := rosterv1.NewACLClient(leader.Conn).DeleteToken(mgmt, &rosterv1.DeleteTokenRequest{AccessorId: tok.Token.AccessorId}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if status.Code(last) != codes.PermissionDenied || rpc.Reason(last) != rpc.ReasonACLTokenNotFound {
		t.Fatalf("the watch ended with %v, want the refusal of its deleted token", last)
	}
}

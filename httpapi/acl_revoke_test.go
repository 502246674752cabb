package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// TestACLDeletedTokenEndsHTTPWatchAndBlockingQuery: once the token of an
// open server-sent-events watch and of a waiting Consul blocking query is
// deleted, the watch ends with an error event and the query is answered
// 403, as each answers an unknown token.
func TestACLDeletedTokenEndsHTTPWatchAndBlockingQuery(t *testing.T) {
	// waiting is closed once a blocking GetService has passed the ACL
	// check: an interceptor after the server's own runs inside it.
	waiting := make(chan struct{})
	var once sync.Once
	blockingRead := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*rosterv1.GetServiceRequest); ok && r.WaitRevision > 0 {
			once.Do(func() { close(waiting) })
		}
		return h(ctx, req)
	}
	c := testcluster.New(t, 3, testcluster.Options{
		Server: func(o *rpc.Options) { o.ACL = rpc.ACLOptions{Enabled: true, BootstrapSecret: bootSecret} },
		GRPCOptions: func(string) []grpc.ServerOption {
			return []grpc.ServerOption{grpc.ChainUnaryInterceptor(blockingRead)}
		},
	})
	c.WaitMembersKnown()
	f := c.Followers()[0]
	c.Eventually("bootstrap token known", 10*time.Second, func() bool {
		return f.Node.Store().View().TokenBySecret(acl.HashSecret(bootSecret)) != nil
	})
	ctx := metadata.AppendToOutgoingContext(testcluster.Ctx(t), "authorization", "Bearer "+bootSecret)
	acls := rosterv1.NewACLClient(c.WaitLeader().Conn)
	tok, err := acls.CreateToken(ctx, &rosterv1.CreateTokenRequest{Rules: []string{"service:web:read"}})
	if err != nil {
		t.Fatal(err)
	}
	ro := tok.Token.SecretId
	c.Eventually("token known", 10*time.Second, func() bool {
		return f.Node.Store().View().TokenBySecret(acl.HashSecret(ro)) != nil
	})
	base := serve(t, f).URL
	admin := consulClientWithToken(t, base, bootSecret)
	if err := admin.Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: "w1", Name: "web", Address: "10.0.0.1", Port: 80}); err != nil {
		t.Fatal(err)
	}

	req, err := http.NewRequest("GET", base+"/api/v1/watch?service=web", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ro)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch: %d", resp.StatusCode)
	}
	sse := readEvents(t, resp)
	if ev := sse.next(); ev.event != "reset" {
		t.Fatalf("first event %v, want the reset", ev)
	}

	cc := consulClientWithToken(t, base, ro)
	_, meta, err := cc.Health().Service("web", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	// A context the test's end cancels, so a failing run does not wait
	// the query out.
	qctx := testcluster.Ctx(t)
	go func() {
		q := (&consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 5 * time.Minute}).WithContext(qctx)
		_, _, err := cc.Health().Service("web", "", false, q)
		blocked <- err
	}()
	select {
	case <-waiting:
	case <-time.After(20 * time.Second):
		t.Fatal("the blocking query never started")
	}

	if _, err := acls.DeleteToken(ctx, &rosterv1.DeleteTokenRequest{AccessorId: tok.Token.AccessorId}); err != nil {
		t.Fatal(err)
	}

	ev := sse.next()
	if msg, _ := ev.data["message"].(string); ev.event != "error" || ev.data["status"] != "PERMISSION_DENIED" || !strings.Contains(msg, "deleted") {
		t.Fatalf("after the deletion the watch sent %v, want an error event saying the token was deleted", ev)
	}
	select {
	case err := <-blocked:
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "Permission denied: ACL token not found") {
			t.Fatalf("the blocking query answered %v, want 403 for its deleted token", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the blocking query went on waiting after its token was deleted")
	}
}

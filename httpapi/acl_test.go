package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"google.golang.org/grpc/metadata"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

const bootSecret = "http-boot-secret"

// aclCluster starts a 3-node cluster with ACLs on, bootstrapped with
// bootSecret, and creates a token with rules; it returns a follower that
// knows the token, and the token's secret.
func aclCluster(t *testing.T, rules ...string) (*testcluster.Cluster, *testcluster.Node, string) {
	t.Helper()
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
		o.ACL = rpc.ACLOptions{Enabled: true, BootstrapSecret: bootSecret}
	}})
	c.WaitMembersKnown()
	f := c.Followers()[0]
	c.Eventually("bootstrap token known", 10*time.Second, func() bool {
		return f.Node.Store().View().TokenBySecret(acl.HashSecret(bootSecret)) != nil
	})
	ctx := metadata.AppendToOutgoingContext(testcluster.Ctx(t), "authorization", "Bearer "+bootSecret)
	resp, err := rosterv1.NewACLClient(f.Conn).CreateToken(ctx, &rosterv1.CreateTokenRequest{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	secret := resp.Token.SecretId
	c.Eventually("token known", 10*time.Second, func() bool {
		return f.Node.Store().View().TokenBySecret(acl.HashSecret(secret)) != nil
	})
	return c, f, secret
}

// aclAPI is aclCluster with the HTTP front end of the follower; it returns
// a token that may only read web, and the front end's URL.
func aclAPI(t *testing.T) (*testcluster.Cluster, *testcluster.Node, string, string) {
	t.Helper()
	c, f, ro := aclCluster(t, "service:web:read")
	return c, f, ro, serve(t, f).URL
}

// consulClientWithToken is the real Consul client pointed at base (an
// http:// URL), calling with token.
func consulClientWithToken(t *testing.T, base, token string) *consul.Client {
	t.Helper()
	cfg := consul.DefaultConfig()
	cfg.Address = strings.TrimPrefix(base, "http://")
	cfg.Token = token
	cl, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func do(t *testing.T, method, u, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestACLJSONAPI: the JSON gateway passes the Authorization header on as
// the call's token: no token and a read-only token get 403 on a write and
// nothing is stored; the management token writes; the read-only token reads.
func TestACLJSONAPI(t *testing.T) {
	c, f, ro, base := aclAPI(t)
	body := `{"instance": {"service": "web", "id": "w1", "address": "10.0.0.1", "port": 80}}`
	for _, hdr := range []map[string]string{nil, {"Authorization": "Bearer " + ro}, {"Authorization": "Bearer wrong"}} {
		code, out := do(t, "POST", base+"/api/v1/instances", body, hdr)
		if code != http.StatusForbidden || !strings.Contains(out, "permission denied") {
			t.Fatalf("write with %v: %d %s", hdr, code, out)
		}
	}
	if n := f.Node.Store().View().Count(); n != 0 {
		t.Fatalf("%d instances stored after refused writes", n)
	}
	if code, out := do(t, "POST", base+"/api/v1/instances", body, map[string]string{"Authorization": "Bearer " + bootSecret}); code != http.StatusOK {
		t.Fatalf("management write: %d %s", code, out)
	}
	c.EnsureSame()
	if code, out := do(t, "GET", base+"/api/v1/services/default/web", "", map[string]string{"Authorization": "Bearer " + ro}); code != http.StatusOK || !strings.Contains(out, "w1") {
		t.Fatalf("read: %d %s", code, out)
	}
	if code, out := do(t, "GET", base+"/api/v1/services/default/web", "", nil); code != http.StatusForbidden {
		t.Fatalf("anonymous read: %d %s", code, out)
	}
}

// TestACLConsulAPI: the real Consul client's Token reaches the check as
// X-Consul-Token; ?token= and Authorization: Bearer work too; a refusal is
// Consul's 403 "Permission denied" and changes nothing.
func TestACLConsulAPI(t *testing.T) {
	c, f, ro, base := aclAPI(t)
	client := func(token string) *consul.Client { return consulClientWithToken(t, base, token) }
	reg := &consul.AgentServiceRegistration{ID: "w1", Name: "web", Address: "10.0.0.1", Port: 80}
	for _, tok := range []string{"", ro} {
		err := client(tok).Agent().ServiceRegister(reg)
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "Permission denied") {
			t.Fatalf("register with token %v: %v", tok != "", err)
		}
	}
	if n := f.Node.Store().View().Count(); n != 0 {
		t.Fatalf("%d instances stored after refused writes", n)
	}
	if err := client(bootSecret).Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	if err := client(bootSecret).Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: "a1", Name: "api", Address: "10.0.0.2", Port: 80}); err != nil {
		t.Fatal(err)
	}
	c.EnsureSame()
	svcs, _, err := client(ro).Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svcs["web"]; !ok || len(svcs) != 1 {
		t.Fatalf("read-only token sees %v, want web only", svcs)
	}
	// A service the token may not read is an empty list marked as
	// filtered, as in Consul: the answer does not say whether it exists.
	for _, svc := range []string{"api", "absent"} {
		entries, meta, err := client(ro).Health().Service(svc, "", false, nil)
		if err != nil || len(entries) != 0 || !meta.ResultsFilteredByACLs || !meta.KnownLeader {
			t.Fatalf("health of %s with a web token: %v, %d entries, meta %+v; want [] filtered by ACLs", svc, err, len(entries), meta)
		}
		listed, meta, err := client(ro).Catalog().Service(svc, "", nil)
		if err != nil || len(listed) != 0 || !meta.ResultsFilteredByACLs {
			t.Fatalf("catalog of %s with a web token: %v, %d entries, meta %+v; want [] filtered by ACLs", svc, err, len(listed), meta)
		}
	}
	// A blocking query for it answers once its wait is over, with the
	// index it gave, so a client's loop does not spin.
	start := time.Now()
	_, meta, err := client(ro).Health().Service("api", "", false, &consul.QueryOptions{WaitIndex: 7, WaitTime: 300 * time.Millisecond})
	if err != nil || meta.LastIndex != 7 || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("blocking health of api with a web token: %v, index %d after %s; want index 7 after the wait", err, meta.LastIndex, time.Since(start))
	}
	// A token that may read no service gets an empty catalog; a blocking
	// query of it answers once its wait is over (nothing it may see can
	// change).
	svcs, meta, err = client("").Catalog().Services(nil)
	if err != nil || len(svcs) != 0 {
		t.Fatalf("anonymous catalog: %v, %v", svcs, err)
	}
	start = time.Now()
	svcs, _, err = client("").Catalog().Services(&consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 300 * time.Millisecond})
	if err != nil || len(svcs) != 0 || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("blocking anonymous catalog: %v, %v after %s; want nothing after the wait", svcs, err, time.Since(start))
	}
	// An unknown token is refused outright, as in Consul.
	if _, _, err := client("00000000-0000-4000-8000-000000000000").Health().Service("api", "", false, nil); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "ACL token not found") {
		t.Fatalf("api with an unknown token: %v", err)
	}
	if code, out := do(t, "GET", base+"/v1/health/service/web?token="+ro, "", nil); code != http.StatusOK || !strings.Contains(out, "w1") {
		t.Fatalf("?token=: %d %s", code, out)
	}
	if code, out := do(t, "GET", base+"/v1/health/service/web", "", map[string]string{"Authorization": "Bearer " + ro}); code != http.StatusOK {
		t.Fatalf("Authorization: %d %s", code, out)
	}
	if code, out := do(t, "GET", base+"/v1/health/service/web", "", nil); code != http.StatusOK || strings.TrimSpace(out) != "[]" {
		t.Fatalf("anonymous: %d %s, want an empty list", code, out)
	}
}

// TestACLWatch: the SSE watch passes the Authorization header on as the
// call's token: without one it is refused with the server's reason; a
// token that may read the service opens the stream; one that may not is
// refused.
func TestACLWatch(t *testing.T) {
	_, _, ro, base := aclAPI(t)
	code, out := do(t, "GET", base+"/api/v1/watch?service=web", "", nil)
	if code != http.StatusForbidden || !strings.Contains(out, "permission denied") {
		t.Fatalf("anonymous watch: %d %s", code, out)
	}
	code, out = do(t, "GET", base+"/api/v1/watch?service=api", "", map[string]string{"Authorization": "Bearer " + ro})
	if code != http.StatusForbidden || !strings.Contains(out, "lacks service:api:read") {
		t.Fatalf("watch of a service the token may not read: %d %s", code, out)
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
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("watch with a read token: %d %s", resp.StatusCode, b)
	}
	// The first event is the reset of the (empty) service.
	buf := make([]byte, 4096)
	var got strings.Builder
	for !strings.Contains(got.String(), "event: reset") {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("stream ended before a reset: %q, %v", got.String(), err)
		}
	}
}

// TestACLConsulBlockingQueriesWithANarrowToken: Consul filters what a
// token may not read rather than refusing, so blocking queries with a
// token that may read only some services of the namespace work as the
// plain ones do: /v1/catalog/services returns when a service the token may
// read changes or appears, and answers only those; /v1/health/service and
// /v1/catalog/service block on a service it may read.
func TestACLConsulBlockingQueriesWithANarrowToken(t *testing.T) {
	c, _, ro, base := aclAPI(t)
	cc := consulClientWithToken(t, base, ro)
	admin := consulClientWithToken(t, base, bootSecret)
	register := func(id, name string) {
		t.Helper()
		if err := admin.Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: id, Name: name, Address: "10.0.0.1", Port: 80, Tags: []string{id}}); err != nil {
			t.Fatal(err)
		}
	}
	register("w1", "web")
	register("s1", "secret")
	c.EnsureSame()
	_, meta, err := cc.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		svcs map[string][]string
		meta *consul.QueryMeta
		err  error
	}
	block := func(index uint64) chan result {
		done := make(chan result, 1)
		go func() {
			s, m, err := cc.Catalog().Services(&consul.QueryOptions{WaitIndex: index, WaitTime: time.Minute})
			done <- result{s, m, err}
		}()
		return done
	}
	wait := func(what string, done chan result) result {
		t.Helper()
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("%s: %v", what, r.err)
			}
			if _, ok := r.svcs["secret"]; ok {
				t.Fatalf("%s: the web token sees %v", what, r.svcs)
			}
			return r
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the blocking query did not return", what)
		}
		return result{}
	}
	// A change to a service the token may read.
	done := block(meta.LastIndex)
	register("w2", "web")
	r := wait("after web changed", done)
	if !slices.Equal(r.svcs["web"], []string{"w1", "w2"}) || r.meta.LastIndex <= meta.LastIndex {
		t.Fatalf("after web changed: %v, index %d -> %d", r.svcs, meta.LastIndex, r.meta.LastIndex)
	}
	// A service the token may read appearing.
	done = block(r.meta.LastIndex)
	register("h1", "webhook")
	r = wait("after webhook appeared", done)
	if _, ok := r.svcs["webhook"]; !ok {
		t.Fatalf("after webhook appeared: %v", r.svcs)
	}

	// The per-service blocking queries, on a service the token may read.
	_, hmeta, err := cc.Health().Service("web", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	hdone := make(chan error, 2)
	go func() {
		e, m, err := cc.Health().Service("web", "", false, &consul.QueryOptions{WaitIndex: hmeta.LastIndex, WaitTime: time.Minute})
		if err == nil && (len(e) != 3 || m.LastIndex <= hmeta.LastIndex) {
			err = fmt.Errorf("health: %d entries, index %d", len(e), m.LastIndex)
		}
		hdone <- err
	}()
	go func() {
		e, m, err := cc.Catalog().Service("web", "", &consul.QueryOptions{WaitIndex: hmeta.LastIndex, WaitTime: time.Minute})
		if err == nil && (len(e) != 3 || m.LastIndex <= hmeta.LastIndex) {
			err = fmt.Errorf("catalog: %d entries, index %d", len(e), m.LastIndex)
		}
		hdone <- err
	}()
	register("w3", "web")
	for range 2 {
		select {
		case err := <-hdone:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a blocking query of web did not return")
		}
	}
}

// TestACLConsulNarrowBlockingQuerySeesAServiceGoneBeforeTheWait: with a
// token that may read only some services, a blocking /v1/catalog/services
// query returns at once when a service it may read lost its last instance
// after the client's index but before the query arrived. That service is
// in the client's answer but in no list the wait takes, so no watch of it
// and no relist would show it going; the query would block the whole wait
// while the client still lists it.
func TestACLConsulNarrowBlockingQuerySeesAServiceGoneBeforeTheWait(t *testing.T) {
	c, _, ro, base := aclAPI(t)
	cc := consulClientWithToken(t, base, ro)
	admin := consulClientWithToken(t, base, bootSecret)
	for _, s := range []struct{ id, name string }{{"w1", "web"}, {"h1", "webhook"}, {"s1", "secret"}} {
		if err := admin.Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: s.id, Name: s.name, Address: "10.0.0.1", Port: 80}); err != nil {
			t.Fatal(err)
		}
	}
	c.EnsureSame()
	svcs, meta, err := cc.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svcs["webhook"]; !ok {
		t.Fatalf("the web token lists %v, want webhook in it", svcs)
	}
	if err := admin.Agent().ServiceDeregister("h1"); err != nil {
		t.Fatal(err)
	}
	c.EnsureSame()

	type result struct {
		svcs map[string][]string
		meta *consul.QueryMeta
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s, m, err := cc.Catalog().Services(&consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 40 * time.Second})
		done <- result{s, m, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if _, ok := r.svcs["webhook"]; ok || r.meta.LastIndex <= meta.LastIndex {
			t.Fatalf("after webhook went: %v, index %d -> %d", r.svcs, meta.LastIndex, r.meta.LastIndex)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the blocking query did not return: it missed webhook going before the wait began")
	}
}

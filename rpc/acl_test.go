package rpc_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
	"github.com/roster-registry/roster/store"
)

const bootSecret = "b00t-secret-for-tests"

func withToken(ctx context.Context, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
}

// aclCluster starts a 3-node cluster with ACLs on (except where aclOff
// says) and the bootstrap secret on every node, and waits until every node
// knows the bootstrap token.
func aclCluster(t *testing.T, aclOff func(nodeLogger string) bool) *testcluster.Cluster {
	t.Helper()
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
		o.ACL = rpc.ACLOptions{Enabled: aclOff == nil || !aclOff(o.Logger.Name()), BootstrapSecret: bootSecret}
	}})
	c.Eventually("bootstrap token on every node", 10*time.Second, func() bool {
		for _, nd := range c.Running() {
			if nd.Node.Store().View().TokenBySecret(acl.HashSecret(bootSecret)) == nil {
				return false
			}
		}
		return true
	})
	return c
}

func createToken(t *testing.T, nd *testcluster.Node, rules ...string) string {
	t.Helper()
	resp, err := rosterv1.NewACLClient(nd.Conn).CreateToken(withToken(testcluster.Ctx(t), bootSecret),
		&rosterv1.CreateTokenRequest{Description: "test", Rules: rules})
	if err != nil {
		t.Fatalf("create token %v: %v", rules, err)
	}
	return resp.Token.SecretId
}

func register(ctx context.Context, nd *testcluster.Node, svc, id string) error {
	_, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
		Service: svc, Id: id, Address: "10.0.0.1", Port: 80}})
	return err
}

func wantDenied(t *testing.T, err error, want string) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("got %v, want PermissionDenied", err)
	}
	if !strings.Contains(status.Convert(err).Message(), want) {
		t.Fatalf("message %q does not say %q", status.Convert(err).Message(), want)
	}
}

// waitTokens waits until every node knows every token (tokens are read
// from each node's own state).
func waitTokens(t *testing.T, c *testcluster.Cluster, secrets ...string) {
	t.Helper()
	c.Eventually("tokens replicated", 10*time.Second, func() bool {
		for _, nd := range c.Running() {
			for _, s := range secrets {
				if nd.Node.Store().View().TokenBySecret(acl.HashSecret(s)) == nil {
					return false
				}
			}
		}
		return true
	})
}

// TestACLWriteDeniedDirectlyAndThroughFollower: a read-only token, no
// token and an unknown token are refused writes on the leader and on a
// follower, and nothing changes; the read-only token reads.
func TestACLWriteDeniedDirectlyAndThroughFollower(t *testing.T) {
	c := aclCluster(t, nil)
	leader := c.WaitLeader()
	mgmt := withToken(testcluster.Ctx(t), bootSecret)
	if err := register(mgmt, leader, "web", "w1"); err != nil {
		t.Fatal(err)
	}
	ro := createToken(t, leader, "service:web:read")
	waitTokens(t, c, ro)
	c.EnsureSame()
	before := leader.Node.Store().Revision()

	for _, nd := range c.Nodes {
		wantDenied(t, register(withToken(testcluster.Ctx(t), ro), nd, "web", "w2"), "lacks service:web:write in namespace default")
		wantDenied(t, register(testcluster.Ctx(t), nd, "web", "w2"), "anonymous token")
		wantDenied(t, register(withToken(testcluster.Ctx(t), "no-such-secret"), nd, "web", "w2"), "ACL token not found")
		_, err := nd.Registry().Deregister(withToken(testcluster.Ctx(t), ro), &rosterv1.DeregisterRequest{Service: "web", Id: "w1"})
		wantDenied(t, err, "service:web:write")
		_, err = nd.Registry().Heartbeat(withToken(testcluster.Ctx(t), ro), &rosterv1.HeartbeatRequest{Service: "web", Id: "w1"})
		wantDenied(t, err, "service:web:write")
		resp, err := nd.Registry().GetService(withToken(testcluster.Ctx(t), ro), &rosterv1.GetServiceRequest{Service: "web",
			Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE}})
		if err != nil || len(resp.Instances) != 1 {
			t.Fatalf("%s: read-only token reads: %v, %v", nd.ID, resp, err)
		}
		_, err = nd.Registry().GetService(testcluster.Ctx(t), &rosterv1.GetServiceRequest{Service: "web"})
		wantDenied(t, err, "lacks service:web:read")
		_, err = nd.Cluster().Members(withToken(testcluster.Ctx(t), ro), &rosterv1.MembersRequest{})
		wantDenied(t, err, "lacks operator:read")
		if _, err := nd.Cluster().Members(mgmt, &rosterv1.MembersRequest{}); err != nil {
			t.Fatalf("management token: members: %v", err)
		}
	}
	// A write by the management token after them: had any denied write
	// gone through, the revisions would show more than this one.
	if err := register(mgmt, leader, "web", "w3"); err != nil {
		t.Fatal(err)
	}
	c.EnsureSame()
	for _, nd := range c.Nodes {
		if got := nd.Node.Store().Revision(); got <= before {
			t.Fatalf("%s: revision %d", nd.ID, got)
		}
		_, insts, err := nd.Node.Store().View().Service(nil, "default", "web")
		if err != nil || len(insts) != 2 {
			t.Fatalf("%s: web has %d instances (%v), want w1 and w3 only", nd.ID, len(insts), err)
		}
	}
}

// TestACLLeaderChecksRelayedWrites: a follower that does not check tokens
// (misconfigured without --acl) relays a write, with the caller's token, to
// a leader that does: the leader refuses it and nothing changes.
func TestACLLeaderChecksRelayedWrites(t *testing.T) {
	c := aclCluster(t, func(name string) bool { return strings.HasPrefix(name, "n3") })
	n3 := c.Nodes[2]
	if c.WaitLeader() == n3 {
		if err := n3.Node.TransferLeadership(testcluster.Ctx(t), "n1"); err != nil {
			t.Fatal(err)
		}
		c.Eventually("n3 no longer leads", 10*time.Second, func() bool { l := c.Leader(); return l != nil && l != n3 })
	}
	leader := c.WaitLeader()
	ro := createToken(t, leader, "service:web:read")
	waitTokens(t, c, ro)
	before := leader.Node.Store().Revision()
	wantDenied(t, register(withToken(testcluster.Ctx(t), ro), n3, "web", "w1"), "lacks service:web:write")
	wantDenied(t, register(testcluster.Ctx(t), n3, "web", "w1"), "anonymous token")
	if got := leader.Node.Store().Revision(); got != before {
		t.Fatalf("revision moved from %d to %d", before, got)
	}
	// The token the caller sent is the one checked: a writer passes.
	rw := createToken(t, leader, "service:web:write")
	waitTokens(t, c, rw)
	if err := register(withToken(testcluster.Ctx(t), rw), n3, "web", "w1"); err != nil {
		t.Fatalf("relayed write with a write token: %v", err)
	}
}

// TestACLDenyAndFiltering: deny beats at equal specificity and the longest
// prefix wins; ListServices shows only readable services; a Watch needs
// read on its service, or on some service of its namespace.
func TestACLDenyAndFiltering(t *testing.T) {
	c, leader, _ := aclClusterOfWebAPIWebhook(t)
	deny := createToken(t, leader, "service::write", "service:web:deny", "service:webhook:write")
	eq := createToken(t, leader, "service:api:write", "service:api:deny")
	webOnly := createToken(t, leader, "service:web:read")
	all := createToken(t, leader, "service::read")
	waitTokens(t, c, deny, eq, webOnly, all)
	f := c.Followers()[0]

	wantDenied(t, register(withToken(testcluster.Ctx(t), deny), f, "web", "i2"), "lacks service:web:write")
	if err := register(withToken(testcluster.Ctx(t), deny), f, "api", "i2"); err != nil {
		t.Fatalf("api: %v", err)
	}
	if err := register(withToken(testcluster.Ctx(t), deny), f, "webhook", "i2"); err != nil {
		t.Fatalf("webhook (longer prefix than the deny): %v", err)
	}
	wantDenied(t, register(withToken(testcluster.Ctx(t), eq), f, "api", "i3"), "lacks service:api:write")

	list, err := f.Registry().ListServices(withToken(testcluster.Ctx(t), webOnly), &rosterv1.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.Services {
		names = append(names, s.Service)
	}
	if strings.Join(names, ",") != "web,webhook" {
		t.Fatalf("web-prefix token lists %v, want web and webhook", names)
	}
	list, err = f.Registry().ListServices(testcluster.Ctx(t), &rosterv1.ListServicesRequest{})
	if err != nil || len(list.Services) != 0 {
		t.Fatalf("anonymous list: %v, %v", list, err)
	}

	watch := func(secret string, req *rosterv1.WatchRequest) error {
		ctx, cancel := context.WithCancel(withToken(testcluster.Ctx(t), secret))
		defer cancel()
		st, err := f.Registry().Watch(ctx, req)
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	// The same through WatchMany, where a refused watch ends with a
	// message naming it and the stream goes on: its watch 1 is refused or
	// not, then watch 2, of web, with webOnly's rights, is served.
	watchMany := func(secret string, req *rosterv1.WatchRequest) error {
		ctx, cancel := context.WithCancel(withToken(testcluster.Ctx(t), secret))
		defer cancel()
		st, err := f.Registry().WatchMany(ctx)
		if err != nil {
			return err
		}
		for id, r := range []*rosterv1.WatchRequest{req, {Service: "web"}} {
			if err := st.Send(&rosterv1.WatchManyRequest{Action: &rosterv1.WatchManyRequest_Create{
				Create: &rosterv1.WatchCreate{WatchId: uint64(id + 1), Request: r}}}); err != nil {
				return err
			}
		}
		// Both webOnly and all may read web; deny may not.
		wantSecond := secret == webOnly || secret == all
		var first error
		firstDone, secondOK := false, false
		for !firstDone || (wantSecond && !secondOK) {
			m, err := st.Recv()
			if err != nil {
				return err
			}
			for _, id := range m.WatchIds {
				switch {
				case id == 1 && !firstDone:
					firstDone = true
					if e := m.Ended; e != nil {
						first = status.FromProto(e).Err()
					}
				case id == 2 && m.Ended != nil && wantSecond:
					t.Fatalf("watch of web ended: %v", m.Ended)
				case id == 2:
					secondOK = true
				}
			}
		}
		return first
	}
	for _, open := range []func(string, *rosterv1.WatchRequest) error{watch, watchMany} {
		if err := open(webOnly, &rosterv1.WatchRequest{Service: "web"}); err != nil {
			t.Fatalf("watch web: %v", err)
		}
		wantDenied(t, open(webOnly, &rosterv1.WatchRequest{Service: "api"}), "lacks service:api:read")
		// A namespace watch needs read on some service of it; what the
		// token may not read is left out (TestACLNamespaceWatchLeavesOut...).
		for _, secret := range []string{webOnly, all, deny} {
			if err := open(secret, &rosterv1.WatchRequest{}); err != nil {
				t.Fatalf("namespace watch: %v", err)
			}
		}
		wantDenied(t, open(eq, &rosterv1.WatchRequest{}), "may read no service of namespace default")
		wantDenied(t, open(eq, &rosterv1.WatchRequest{Namespace: "other"}), "may read no service of namespace other")
	}
}

// TestACLNamespaceWatchLeavesOutUnreadableServices: a token that may read
// only some services of a namespace watches the namespace as if the others
// did not exist, through Watch and WatchMany alike: its reset lists only
// what it may read, and so do the events after it; a token that may read
// everything sees everything on the same stream kind.
func TestACLNamespaceWatchLeavesOutUnreadableServices(t *testing.T) {
	c, leader, mgmt := aclClusterOfWebAPIWebhook(t)
	// web and webhook by prefix, less webhook's writes' reads: deny wins.
	narrow := createToken(t, leader, "service:web:read", "service:webhook:deny")
	all := createToken(t, leader, "service::read")
	waitTokens(t, c, narrow, all)
	f := c.Followers()[0]

	// keys gathers the instance keys of messages until one at or past rev.
	type recv func() (events []*rosterv1.Event, rev uint64, reset bool)
	keys := func(next recv, rev uint64) (resetKeys, eventKeys []string) {
		for {
			evs, at, reset := next()
			for _, e := range evs {
				k := e.Instance.Service + "/" + e.Instance.Id
				if reset {
					resetKeys = append(resetKeys, k)
				} else {
					eventKeys = append(eventKeys, k)
				}
			}
			if !reset && at >= rev {
				return resetKeys, eventKeys
			}
		}
	}
	watchOne := func(ctx context.Context) recv {
		st, err := f.Registry().Watch(ctx, &rosterv1.WatchRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return func() ([]*rosterv1.Event, uint64, bool) {
			m, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			return m.Events, m.Revision, m.Reset_
		}
	}
	watchMany := func(ctx context.Context) recv {
		st, err := f.Registry().WatchMany(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&rosterv1.WatchManyRequest{Action: &rosterv1.WatchManyRequest_Create{
			Create: &rosterv1.WatchCreate{WatchId: 1, Request: &rosterv1.WatchRequest{}}}}); err != nil {
			t.Fatal(err)
		}
		return func() ([]*rosterv1.Event, uint64, bool) {
			m, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if m.Ended != nil {
				t.Fatalf("watch ended: %v", status.FromProto(m.Ended).Err())
			}
			r := m.Response
			return r.GetEvents(), r.GetRevision(), r.GetReset_()
		}
	}
	for name, open := range map[string]func(context.Context) recv{"Watch": watchOne, "WatchMany": watchMany} {
		ctx, cancel := context.WithCancel(testcluster.Ctx(t))
		narrowNext := open(withToken(ctx, narrow))
		allNext := open(withToken(ctx, all))
		var rev uint64
		for _, svc := range []string{"api", "webhook", "web"} {
			resp, err := leader.Registry().Register(mgmt, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
				Service: svc, Id: name, Address: "10.0.0.1", Port: 80}})
			if err != nil {
				t.Fatal(err)
			}
			rev = resp.Revision
		}
		gotReset, gotEvents := keys(narrowNext, rev)
		if r, e := strings.Join(gotReset, ","), strings.Join(gotEvents, ","); !strings.Contains(r, "web/i1") || strings.Contains(r+e, "api") || strings.Contains(r+e, "webhook") ||
			!strings.Contains(r+","+e, "web/"+name) {
			t.Fatalf("%s, narrow token: reset %v, events %v; want web's instances only", name, gotReset, gotEvents)
		}
		gotReset, gotEvents = keys(allNext, rev)
		if r, e := strings.Join(gotReset, ",")+","+strings.Join(gotEvents, ","), 0; !strings.Contains(r, "api/i1") || !strings.Contains(r, "webhook/i1") ||
			!strings.Contains(r, "api/"+name) || !strings.Contains(r, "webhook/"+name) || e != 0 {
			t.Fatalf("%s, service::read: reset %v, events %v; want every service", name, gotReset, gotEvents)
		}
		cancel()
	}
}

// TestACLBootstrapOnceAndTokens: bootstrap works once; a token made with
// acl:write can be listed (without secrets) and deleted, after which it is
// refused.
func TestACLBootstrapOnceAndTokens(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) { o.ACL.Enabled = true }})
	f := c.Followers()[0]
	resp, err := rosterv1.NewACLClient(f.Conn).Bootstrap(testcluster.Ctx(t), &rosterv1.ACLBootstrapRequest{})
	if err != nil {
		t.Fatalf("bootstrap through a follower: %v", err)
	}
	secret := resp.Token.SecretId
	if secret == "" || !resp.Token.Management {
		t.Fatalf("bootstrap token %v", resp.Token)
	}
	_, err = rosterv1.NewACLClient(c.WaitLeader().Conn).Bootstrap(testcluster.Ctx(t), &rosterv1.ACLBootstrapRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second bootstrap: %v, want FailedPrecondition", err)
	}
	waitTokens(t, c, secret)
	aclc := rosterv1.NewACLClient(f.Conn)
	made, err := aclc.CreateToken(withToken(testcluster.Ctx(t), secret), &rosterv1.CreateTokenRequest{Rules: []string{"service:web:write"}})
	if err != nil {
		t.Fatal(err)
	}
	waitTokens(t, c, made.Token.SecretId)
	_, err = aclc.CreateToken(withToken(testcluster.Ctx(t), made.Token.SecretId), &rosterv1.CreateTokenRequest{Rules: []string{"acl:write"}})
	wantDenied(t, err, "lacks acl:write")
	_, err = aclc.CreateToken(withToken(testcluster.Ctx(t), secret), &rosterv1.CreateTokenRequest{Rules: []string{"service:web:admin"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad rule: %v", err)
	}
	waitTokens(t, c, made.Token.SecretId)
	list, err := aclc.ListTokens(withToken(testcluster.Ctx(t), secret), &rosterv1.ListTokensRequest{})
	if err != nil || len(list.Tokens) != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	for _, tok := range list.Tokens {
		if tok.SecretId != "" {
			t.Fatalf("list shows a secret: %v", tok)
		}
	}
	if err := register(withToken(testcluster.Ctx(t), made.Token.SecretId), f, "web", "w1"); err != nil {
		t.Fatal(err)
	}
	if _, err := aclc.DeleteToken(withToken(testcluster.Ctx(t), secret), &rosterv1.DeleteTokenRequest{AccessorId: made.Token.AccessorId}); err != nil {
		t.Fatal(err)
	}
	c.EnsureSame()
	wantDenied(t, register(withToken(testcluster.Ctx(t), made.Token.SecretId), f, "web", "w2"), "ACL token not found")
}

// TestACLDisabledRefusesBootstrapAndCreateToken: a node running without
// ACLs refuses to make tokens, which would protect nothing, and says how
// to turn ACLs on; it still lists tokens (there are none).
func TestACLDisabledRefusesBootstrapAndCreateToken(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.WaitLeader()
	aclc := rosterv1.NewACLClient(nd.Conn)
	const want = "ACLs are not enabled on this node; start every server with --acl"
	_, err := aclc.Bootstrap(testcluster.Ctx(t), &rosterv1.ACLBootstrapRequest{})
	if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != want {
		t.Fatalf("bootstrap without ACLs: %v; want FailedPrecondition %q", err, want)
	}
	_, err = aclc.CreateToken(testcluster.Ctx(t), &rosterv1.CreateTokenRequest{Rules: []string{"acl:write"}})
	if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != want {
		t.Fatalf("create token without ACLs: %v; want FailedPrecondition %q", err, want)
	}
	if nd.Node.Store().View().ACLBootstrapped() {
		t.Fatal("the refused bootstrap was applied")
	}
	list, err := aclc.ListTokens(testcluster.Ctx(t), &rosterv1.ListTokensRequest{})
	if err != nil || len(list.Tokens) != 0 {
		t.Fatalf("list without ACLs: %v, %v; want no tokens", list, err)
	}
}

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestACLSecretsNeverLogged: with every node logging at trace level, the
// bootstrap secret, a created token's secret and an unknown secret used on
// granted, refused and relayed calls appear nowhere in the logs.
func TestACLSecretsNeverLogged(t *testing.T) {
	var logs lockedBuffer
	c := testcluster.New(t, 3, testcluster.Options{
		Configure: func(cfg *cluster.Config) {
			cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.NodeID, Level: hclog.Trace, Output: &logs})
		},
		Server: func(o *rpc.Options) { o.ACL = rpc.ACLOptions{Enabled: true, BootstrapSecret: bootSecret} },
	})
	c.Eventually("bootstrap token on every node", 10*time.Second, func() bool {
		for _, nd := range c.Nodes {
			if nd.Node.Store().View().TokenBySecret(acl.HashSecret(bootSecret)) == nil {
				return false
			}
		}
		return true
	})
	f := c.Followers()[0]
	rw := createToken(t, f, "service:web:write")
	waitTokens(t, c, rw)
	if err := register(withToken(testcluster.Ctx(t), rw), f, "web", "w1"); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, register(withToken(testcluster.Ctx(t), rw), f, "api", "a1"), "lacks")
	const unknown = "unknown-secret-0123456789"
	wantDenied(t, register(withToken(testcluster.Ctx(t), unknown), f, "web", "w2"), "not found")
	if _, err := rosterv1.NewACLClient(f.Conn).Bootstrap(testcluster.Ctx(t), &rosterv1.ACLBootstrapRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("bootstrap: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "acl token created") {
		t.Fatalf("the capture holds no ACL log lines; it proves nothing:\n%s", out)
	}
	for _, secret := range []string{bootSecret, rw, unknown} {
		if strings.Contains(out, secret) {
			t.Fatalf("secret %q appears in the logs", secret)
		}
	}
}

// TestACLKeepAliveBatchNeedsWriteOnEveryService: a batched renewal is
// checked instance by instance, so one instance of a service the token may
// not write ends the stream as PermissionDenied, however many it may.
func TestACLKeepAliveBatchNeedsWriteOnEveryService(t *testing.T) {
	c := aclCluster(t, nil)
	leader := c.WaitLeader()
	mgmt := withToken(testcluster.Ctx(t), bootSecret)
	for _, svc := range []string{"web", "api"} {
		if err := register(mgmt, leader, svc, "x1"); err != nil {
			t.Fatal(err)
		}
	}
	web := createToken(t, leader, "service:web:write")
	waitTokens(t, c, web)
	ref := func(svc string) *rosterv1.InstanceRef { return &rosterv1.InstanceRef{Service: svc, Id: "x1"} }
	for _, nd := range c.Nodes {
		st, err := nd.Registry().KeepAlive(withToken(testcluster.Ctx(t), web))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&rosterv1.HeartbeatRequest{Instances: []*rosterv1.InstanceRef{ref("web"), ref("web")}}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil || len(resp.Results) != 2 {
			t.Fatalf("%s: a batch of web instances with a web write token: %v, %v", nd.ID, resp, err)
		}
		if err := st.Send(&rosterv1.HeartbeatRequest{Instances: []*rosterv1.InstanceRef{ref("web"), ref("web"), ref("api")}}); err != nil {
			t.Fatal(err)
		}
		_, err = st.Recv()
		wantDenied(t, err, "lacks service:api:write")
	}
}

// TestACLTokensShowTheirCreateTime: bootstrap and token create answer
// with the create time the leader stamped and committed, not zero (1970).
func TestACLTokensShowTheirCreateTime(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{Server: func(o *rpc.Options) { o.ACL.Enabled = true }})
	aclc := rosterv1.NewACLClient(c.WaitLeader().Conn)
	boot, err := aclc.Bootstrap(testcluster.Ctx(t), &rosterv1.ACLBootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	made, err := aclc.CreateToken(withToken(testcluster.Ctx(t), boot.Token.SecretId), &rosterv1.CreateTokenRequest{Rules: []string{"service:web:read"}})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int64{}
	c.Nodes[0].Node.Store().View().Tokens(func(tok *store.Token) bool { stored[tok.AccessorID] = tok.CreateUnixNs; return true })
	for _, tok := range []*rosterv1.ACLToken{boot.Token, made.Token} {
		if tok.CreateTimeUnixNs == 0 || tok.CreateTimeUnixNs != stored[tok.AccessorId] {
			t.Fatalf("token %s answered with create time %d; committed %d", tok.AccessorId, tok.CreateTimeUnixNs, stored[tok.AccessorId])
		}
	}
}

// aclClusterOfWebAPIWebhook is an ACL cluster holding instance i1 of web,
// api and webhook, with its leader and a context carrying the management
// token.
func aclClusterOfWebAPIWebhook(t *testing.T) (*testcluster.Cluster, *testcluster.Node, context.Context) {
	t.Helper()
	c := aclCluster(t, nil)
	leader := c.WaitLeader()
	mgmt := withToken(testcluster.Ctx(t), bootSecret)
	for _, svc := range []string{"web", "api", "webhook"} {
		if err := register(mgmt, leader, svc, "i1"); err != nil {
			t.Fatal(err)
		}
	}
	return c, leader, mgmt
}

package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/client/balancer"
	"github.com/roster-registry/roster/client/resolver"
	"github.com/roster-registry/roster/examples/echo/echo"
	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/internal/testdiscovery"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

const waitLong = 15 * time.Second

type env struct {
	t  testing.TB
	tc *testcluster.Cluster
}

func newEnv(t testing.TB) *env {
	tc := testcluster.New(t, 3, testcluster.Options{})
	tc.WaitMembersKnown()
	return &env{t: t, tc: tc}
}

func (e *env) addrs() []string {
	var out []string
	for _, nd := range e.tc.Nodes {
		out = append(out, nd.Addr)
	}
	return out
}

func (e *env) client(addrs []string, opts ...client.Option) *client.Client {
	e.t.Helper()
	opts = append([]client.Option{
		client.WithConnectTimeout(500 * time.Millisecond),
		client.WithLogger(hclog.New(&hclog.LoggerOptions{Output: logWriter{e.t}})),
	}, opts...)
	c, err := client.New(context.Background(), addrs, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func (e *env) register(inst *rosterv1.Instance) {
	e.t.Helper()
	if err := testdiscovery.Retry(e.t, func(ctx context.Context) error {
		_, err := e.tc.Running()[0].Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: inst})
		return err
	}); err != nil {
		e.t.Fatalf("register: %v", err)
	}
}

func (e *env) deregister(service, id string) {
	e.t.Helper()
	retried := false
	if err := testdiscovery.Retry(e.t, func(ctx context.Context) error {
		_, err := e.tc.Running()[0].Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: service, Id: id})
		if status.Code(err) == codes.NotFound && retried {
			return nil // an earlier attempt took effect
		}
		retried = true
		return err
	}); err != nil {
		e.t.Fatalf("deregister: %v", err)
	}
}

func (e *env) drain(service, id string) {
	e.t.Helper()
	if err := testdiscovery.Retry(e.t, func(ctx context.Context) error {
		_, err := e.tc.Running()[0].Registry().SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{Service: service, Id: id, Reason: "test"})
		return err
	}); err != nil {
		e.t.Fatalf("drain: %v", err)
	}
}

func (e *env) critical(service, id string) {
	e.t.Helper()
	k := store.Key{Namespace: client.DefaultNamespace, Service: service, ID: id}
	testdiscovery.Eventually(e.t, "a committed critical status", waitLong, func() bool {
		leader := e.tc.WaitLeader()
		inst, err := leader.Node.Store().View().Instance(nil, k)
		if err != nil || inst == nil {
			e.t.Fatalf("instance %s: %v", id, err)
		}
		_, err = leader.Node.SetHealth(testcluster.Ctx(e.t), k, inst.RegistrationRevision, store.HealthCritical, "test check failed")
		return err == nil
	})
}

// dial opens a channel to target with policy, seeded for reproducible
// splits.
func dial(t testing.TB, target string, policy balancer.Policy, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cfg := fmt.Sprintf(`{"loadBalancingConfig":[{%q:{"seed":42}}]}`, policy)
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(cfg))
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func call(t testing.TB, conn *grpc.ClientConn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := echo.Call(ctx, conn, "hi", grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	return got
}

// waitServing calls until every server in want has answered and then until
// a run of calls reaches none outside want.
func waitServing(t testing.TB, conn *grpc.ClientConn, want ...*testdiscovery.Echo) {
	t.Helper()
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w.Addr] = true
	}
	seen := map[string]bool{}
	clean := 0
	testdiscovery.Eventually(t, fmt.Sprintf("calls to exactly %v", slices.Sorted(mapKeys(wanted))), waitLong, func() bool {
		got := call(t, conn)
		seen[got] = true
		if !wanted[got] {
			clean = 0
			clear(seen)
			return false
		}
		clean++
		return len(seen) == len(wanted) && clean >= 50
	})
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestWeightedSplits(t *testing.T) {
	e := newEnv(t)
	servers := []*testdiscovery.Echo{testdiscovery.StartEcho(t), testdiscovery.StartEcho(t), testdiscovery.StartEcho(t)}
	weights := []float64{100, 200, 300}
	for i, s := range servers {
		e.register(s.Instance("echo", fmt.Sprintf("e%d", i), uint32(weights[i])))
	}
	c := e.client(e.addrs())
	const n = 1200
	for _, policy := range balancer.Policies {
		t.Run(string(policy), func(t *testing.T) {
			conn := dial(t, "roster:///echo", policy, grpc.WithResolvers(resolver.NewBuilder(c)))
			waitServing(t, conn, servers...)
			counts := map[string]int{}
			for range n {
				counts[call(t, conn)]++
			}
			share := map[balancer.Policy][]float64{
				balancer.RoundRobin:         {1, 1, 1},
				balancer.Random:             {1, 1, 1},
				balancer.WeightedRoundRobin: weights,
				balancer.WeightedRandom:     weights,
				balancer.P2C:                balancer.P2CIdleShares(weights),
			}[policy]
			// Deterministic strategies are exact up to where the window
			// starts; random ones (seeded) within about 4 standard deviations.
			tol := map[balancer.Policy]float64{
				balancer.RoundRobin: 0.002, balancer.WeightedRoundRobin: 0.002,
				balancer.Random: 0.05, balancer.WeightedRandom: 0.05, balancer.P2C: 0.05,
			}[policy]
			var sum float64
			for _, w := range share {
				sum += w
			}
			for i, s := range servers {
				want := share[i] / sum
				got := float64(counts[s.Addr]) / n
				if math.Abs(got-want) > tol {
					t.Errorf("%s got %.3f of the calls, want %.3f ± %.3f (counts %v)", s.Addr, got, want, tol, counts)
				}
			}
			t.Logf("%s: %v", policy, counts)
		})
	}
}

func TestInstancesLeaveAndJoin(t *testing.T) {
	e := newEnv(t)
	c := e.client(e.addrs())
	for _, policy := range balancer.Policies {
		t.Run(string(policy), func(t *testing.T) {
			svc := strings.ReplaceAll(string(policy), "_", "-")
			var servers []*testdiscovery.Echo
			for i := range 4 {
				s := testdiscovery.StartEcho(t)
				servers = append(servers, s)
				e.register(s.Instance(svc, fmt.Sprintf("s%d", i), 100))
			}
			conn := dial(t, "roster:///"+svc, policy, grpc.WithResolvers(resolver.NewBuilder(c)))
			waitServing(t, conn, servers...)

			e.deregister(svc, "s0")
			waitServing(t, conn, servers[1:]...)
			e.critical(svc, "s1")
			waitServing(t, conn, servers[2:]...)
			e.drain(svc, "s2")
			waitServing(t, conn, servers[3:]...)

			fresh := testdiscovery.StartEcho(t)
			start := time.Now()
			e.register(fresh.Instance(svc, "new", 100))
			testdiscovery.Eventually(t, "a pick of the new instance", waitLong, func() bool {
				return call(t, conn) == fresh.Addr
			})
			t.Logf("%s: registration committed to first pick of the new instance: %s", policy, time.Since(start))
			waitServing(t, conn, servers[3], fresh)
		})
	}
}

func TestNamespaceAndAddressTargets(t *testing.T) {
	e := newEnv(t)
	a, b := testdiscovery.StartEcho(t), testdiscovery.StartEcho(t)
	e.register(a.Instance("echo", "a", 100))
	other := b.Instance("echo", "b", 100)
	other.Namespace = "team"
	e.register(other)

	// No setup: the registry nodes are in the target.
	conn := dial(t, "roster://"+strings.Join(e.addrs(), ",")+"/echo", balancer.RoundRobin)
	waitServing(t, conn, a)
	conn = dial(t, "roster://"+strings.Join(e.addrs(), ",")+"/team/echo", balancer.RoundRobin)
	waitServing(t, conn, b)
	// The same with options for the resolver's own client.
	conn = dial(t, "roster://"+strings.Join(e.addrs(), ",")+"/team/echo", balancer.RoundRobin,
		grpc.WithResolvers(resolver.NewBuilderWithOptions(client.WithConnectTimeout(time.Second))))
	waitServing(t, conn, b)

	c := e.client(e.addrs())
	conn = dial(t, "roster:///team/echo", balancer.P2C, grpc.WithResolvers(resolver.NewBuilder(c)))
	waitServing(t, conn, b)

	// A name the registry refuses fails calls with the reason.
	conn = dial(t, "roster:///Not_A_Name", balancer.RoundRobin, grpc.WithResolvers(resolver.NewBuilder(c)))
	ctx0, cancel0 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel0()
	if _, err := echo.Call(ctx0, conn, "hi"); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Fatalf("call to an invalid service name: %v", err)
	}

	// Without a client and without addresses there is no registry.
	bad, err := grpc.NewClient("roster:///echo", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := echo.Call(ctx, bad, "hi"); err == nil || !strings.Contains(err.Error(), "NewBuilder") {
		t.Fatalf("call without registry: %v", err)
	}
}

func TestResolverKeepsServingThroughRegistryOutage(t *testing.T) {
	e := newEnv(t)
	a, b := testdiscovery.StartEcho(t), testdiscovery.StartEcho(t)
	e.register(a.Instance("echo", "a", 100))
	e.register(b.Instance("echo", "b", 100))
	var proxies []*testdiscovery.Proxy
	var addrs []string
	for _, nd := range e.tc.Nodes {
		p := testdiscovery.NewProxy(t, nd.Addr)
		proxies = append(proxies, p)
		addrs = append(addrs, p.Addr)
	}
	c := e.client(addrs)
	conn := dial(t, "roster:///echo", balancer.RoundRobin, grpc.WithResolvers(resolver.NewBuilder(c)))
	waitServing(t, conn, a, b)

	for _, p := range proxies {
		p.Cut()
	}
	fresh := testdiscovery.StartEcho(t)
	e.register(fresh.Instance("echo", "c", 100))
	testdiscovery.Eventually(t, "the cache to see the outage", waitLong, func() bool {
		s, err := c.CachedService(testcluster.Ctx(t), "echo")
		return err == nil && s.Stale
	})
	// Calls still spread over the last known instances.
	waitServing(t, conn, a, b)

	for _, p := range proxies {
		p.Restore()
	}
	waitServing(t, conn, a, b, fresh)
}

func TestResolverStartsFromCacheDirWithoutRegistry(t *testing.T) {
	e := newEnv(t)
	a, b := testdiscovery.StartEcho(t), testdiscovery.StartEcho(t)
	e.register(a.Instance("echo", "a", 100))
	e.register(b.Instance("echo", "b", 100))
	dir := t.TempDir()
	c := e.client(e.addrs(), client.WithCacheDir(dir))
	conn := dial(t, "roster:///echo", balancer.RoundRobin, grpc.WithResolvers(resolver.NewBuilder(c)))
	waitServing(t, conn, a, b)
	_ = conn.Close()
	_ = c.Close()

	e.tc.Shutdown()
	c2 := e.client(e.addrs(), client.WithCacheDir(dir))
	conn = dial(t, "roster:///echo", balancer.WeightedRoundRobin, grpc.WithResolvers(resolver.NewBuilder(c2)))
	waitServing(t, conn, a, b)
}

func TestResolverMovesOnWhenItsNodeIsKilled(t *testing.T) {
	e := newEnv(t)
	a := testdiscovery.StartEcho(t)
	e.register(a.Instance("echo", "a", 100))
	c := e.client(e.addrs())
	conn := dial(t, "roster:///echo", balancer.RoundRobin, grpc.WithResolvers(resolver.NewBuilder(c)))
	waitServing(t, conn, a)
	// The client moves on as soon as its node dies: read its endpoint once.
	first := c.Endpoint()
	for _, nd := range e.tc.Nodes {
		if nd.Addr == first {
			e.tc.Stop(nd)
		}
	}
	e.tc.WaitLeader()
	b := testdiscovery.StartEcho(t)
	e.register(b.Instance("echo", "b", 100))
	waitServing(t, conn, a, b)
	if c.Endpoint() == first {
		t.Fatalf("client still on the killed node %s", first)
	}
}

// TestConcurrentPicksAndUpdates runs calls on every balancer while the
// instance set churns; the race detector checks the rest.
func TestConcurrentPicksAndUpdates(t *testing.T) {
	if testing.Short() {
		t.Skip("churn test")
	}
	e := newEnv(t)
	c := e.client(e.addrs())
	stable := testdiscovery.StartEcho(t)
	e.register(stable.Instance("echo", "stable", 100))
	var churn []*testdiscovery.Echo
	for range 3 {
		churn = append(churn, testdiscovery.StartEcho(t))
	}
	var conns []*grpc.ClientConn
	for _, policy := range balancer.Policies {
		conn := dial(t, "roster:///echo", policy, grpc.WithResolvers(resolver.NewBuilder(c)))
		waitServing(t, conn, stable)
		conns = append(conns, conn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, conn := range conns {
		for range 2 {
			wg.Go(func() {
				for ctx.Err() == nil {
					cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := echo.Call(cctx, conn, "hi")
					ccancel()
					if err != nil && ctx.Err() == nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
			})
		}
	}
	for round := range 20 {
		s := churn[round%len(churn)]
		id := fmt.Sprintf("churn%d", round%len(churn))
		e.register(s.Instance("echo", id, uint32(100+round)))
		if round%2 == 1 {
			e.deregister("echo", id)
		}
	}
	cancel()
	wg.Wait()
	// A call may fail only when its instance left while it was being sent;
	// the stable instance is always there.
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	if len(errs) > 0 {
		t.Logf("%d calls failed during churn, first: %v", len(errs), errs[0])
	}
	for _, conn := range conns {
		waitServing(t, conn, append([]*testdiscovery.Echo{stable}, churn[0])...)
	}
}

// BenchmarkRegistrationToFirstPick measures the time from a registration
// committing to the first call that reaches the new instance through a
// roster:/// channel: watch delivery, cache, resolver update, connection
// and picker. Run with -benchtime=20x; the result is ms/first-pick.
func BenchmarkRegistrationToFirstPick(b *testing.B) {
	e := newEnv(b)
	c := e.client(e.addrs())
	a, fresh := testdiscovery.StartEcho(b), testdiscovery.StartEcho(b)
	e.register(a.Instance("echo", "a", 100))
	conn := dial(b, "roster:///echo", balancer.RoundRobin, grpc.WithResolvers(resolver.NewBuilder(c)))
	waitServing(b, conn, a)
	var total time.Duration
	var all []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		waitServing(b, conn, a)
		b.StartTimer()
		start := time.Now()
		e.register(fresh.Instance("echo", "new", 100))
		testdiscovery.Eventually(b, "a pick of the new instance", waitLong, func() bool {
			return call(b, conn) == fresh.Addr
		})
		d := time.Since(start)
		total += d
		all = append(all, d)
		b.StopTimer()
		e.deregister("echo", "new")
		b.StartTimer()
	}
	slices.Sort(all)
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/first-pick")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
}

func TestZonePreferenceFallsBack(t *testing.T) {
	e := newEnv(t)
	near, far := testdiscovery.StartEcho(t), testdiscovery.StartEcho(t)
	in := near.Instance("echo", "near", 100)
	in.Zone = "z1"
	e.register(in)
	out := far.Instance("echo", "far", 100)
	out.Zone = "z2"
	e.register(out)
	c := e.client(e.addrs())
	conn, err := grpc.NewClient("roster:///echo",
		grpc.WithResolvers(resolver.NewBuilder(c)),
		grpc.WithDefaultServiceConfig(balancer.ServiceConfig(balancer.RoundRobin, "z1")),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitServing(t, conn, near)
	// No healthy instance left in the zone: every zone will do.
	e.drain("echo", "near")
	waitServing(t, conn, far)
}

// TestIPv6AddressTargets: registry nodes named by IPv6 address, one in a
// roster:// target, several in the form without slashes. The nodes listen
// on 127.0.0.1, reached through its IPv4-mapped IPv6 address.
func TestIPv6AddressTargets(t *testing.T) {
	e := newEnv(t)
	a := testdiscovery.StartEcho(t)
	e.register(a.Instance("echo", "a", 100))
	var v6 []string
	for _, addr := range e.addrs() {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		v6 = append(v6, net.JoinHostPort("::ffff:127.0.0.1", port))
	}
	for _, target := range []string{
		"roster://" + v6[0] + "/echo",
		"roster:" + strings.Join(v6, ",") + "/echo",
		"roster:" + strings.Join(v6, ",") + "/default/echo",
	} {
		t.Run(target, func(t *testing.T) {
			waitServing(t, dial(t, target, balancer.RoundRobin), a)
		})
	}
}

// rejectingCC is a gRPC ClientConn whose balancer rejects the first list
// it is given; it records every list.
type rejectingCC struct {
	grpcresolver.ClientConn
	mu      sync.Mutex
	updates [][]string
}

func (cc *rejectingCC) UpdateState(s grpcresolver.State) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var addrs []string
	for _, a := range s.Addresses {
		addrs = append(addrs, a.Addr)
	}
	cc.updates = append(cc.updates, addrs)
	if len(cc.updates) == 1 {
		return errors.New("rejected by the balancer")
	}
	return nil
}

func (cc *rejectingCC) ReportError(error) {}

func (cc *rejectingCC) count() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.updates)
}

// TestResolveNowPushesTheListAgain: when the balancer rejected a list,
// gRPC's ResolveNow gets it pushed again, without waiting for the list to
// change.
func TestResolveNowPushesTheListAgain(t *testing.T) {
	e := newEnv(t)
	s := testdiscovery.StartEcho(t)
	e.register(s.Instance("echo", "e0", 1))
	c := e.client(e.addrs())
	cc := &rejectingCC{}
	target := grpcresolver.Target{URL: url.URL{Scheme: "roster", Path: "/echo"}}
	r, err := resolver.NewBuilder(c).Build(target, cc, grpcresolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	testdiscovery.Eventually(t, "the first list", waitLong, func() bool { return cc.count() >= 1 })
	r.ResolveNow(grpcresolver.ResolveNowOptions{})
	testdiscovery.Eventually(t, "the list pushed again after ResolveNow", waitLong, func() bool { return cc.count() >= 2 })
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if !slices.Equal(cc.updates[0], []string{s.Addr}) || !slices.Equal(cc.updates[1], cc.updates[0]) {
		t.Fatalf("lists pushed: %v, want [%s] twice", cc.updates, s.Addr)
	}
}

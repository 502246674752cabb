package client_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/internal/testdiscovery"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

const waitLong = 15 * time.Second

// newCluster starts a 3-node cluster whose nodes all forward writes.
func newCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	tc := testcluster.New(t, 3, testcluster.Options{})
	tc.WaitMembersKnown()
	return tc
}

func addrsOf(tc *testcluster.Cluster) []string {
	var out []string
	for _, nd := range tc.Nodes {
		out = append(out, nd.Addr)
	}
	return out
}

func newClient(t *testing.T, addrs []string, opts ...client.Option) *client.Client {
	t.Helper()
	opts = append([]client.Option{
		client.WithConnectTimeout(500 * time.Millisecond),
		client.WithLogger(hclog.New(&hclog.LoggerOptions{Output: testLog{t}, Level: hclog.Info})),
	}, opts...)
	c, err := client.New(context.Background(), addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// register writes inst through a running node.
func register(t *testing.T, tc *testcluster.Cluster, inst *rosterv1.Instance) {
	t.Helper()
	if err := testdiscovery.Retry(t, func(ctx context.Context) error {
		_, err := tc.Running()[0].Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: inst})
		return err
	}); err != nil {
		t.Fatalf("register %s: %v", inst.GetId(), err)
	}
}

func deregister(t *testing.T, tc *testcluster.Cluster, service, id string) {
	t.Helper()
	retried := false
	if err := testdiscovery.Retry(t, func(ctx context.Context) error {
		_, err := tc.Running()[0].Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: service, Id: id})
		if status.Code(err) == codes.NotFound && retried {
			return nil // an earlier attempt took effect
		}
		retried = true
		return err
	}); err != nil {
		t.Fatalf("deregister %s: %v", id, err)
	}
}

// setCritical commits a health check failure of an instance on the leader.
func setCritical(t *testing.T, tc *testcluster.Cluster, service, id string) {
	t.Helper()
	k := store.Key{Namespace: client.DefaultNamespace, Service: service, ID: id}
	testdiscovery.Eventually(t, "a committed critical status", waitLong, func() bool {
		leader := tc.WaitLeader()
		inst, err := leader.Node.Store().View().Instance(nil, k)
		if err != nil || inst == nil {
			t.Fatalf("instance %s: %v", id, err)
		}
		_, err = leader.Node.SetHealth(testcluster.Ctx(t), k, inst.RegistrationRevision, store.HealthCritical, "test check failed")
		return err == nil
	})
}

func drain(t *testing.T, tc *testcluster.Cluster, service, id string) {
	t.Helper()
	if err := testdiscovery.Retry(t, func(ctx context.Context) error {
		_, err := tc.Running()[0].Registry().SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{Service: service, Id: id, Enabled: false, Reason: "test"})
		return err
	}); err != nil {
		t.Fatalf("drain %s: %v", id, err)
	}
}

func inst(service, id string) *rosterv1.Instance {
	return &rosterv1.Instance{Service: service, Id: id, Address: "127.0.0.1", Port: 9000, Ttl: durationMinute}
}

func ids(insts []*rosterv1.Instance) []string {
	var out []string
	for _, i := range insts {
		out = append(out, i.GetId())
	}
	return out
}

// cachedIDs reads the cache and returns the ids it serves.
func cachedIDs(t *testing.T, c *client.Client, service string, opts ...client.DiscoveryOption) []string {
	t.Helper()
	insts, err := c.Instances(testcluster.Ctx(t), service, opts...)
	if err != nil {
		t.Fatalf("instances: %v", err)
	}
	return ids(insts)
}

func waitIDs(t *testing.T, c *client.Client, service string, want []string, opts ...client.DiscoveryOption) {
	t.Helper()
	var got []string
	testdiscovery.Eventually(t, fmt.Sprintf("cached instances %v", want), waitLong, func() bool {
		got = cachedIDs(t, c, service, opts...)
		return slices.Equal(got, want)
	})
}

var durationMinute = durationpb.New(time.Minute)

// TestSubscribeToAnEndedWatchSignals: a subscription made after the
// service's watch has ended for good (an invalid service name) is told at
// once, as one made before it was; otherwise a resolver built on it waits
// for a signal that never comes.
func TestSubscribeToAnEndedWatchSignals(t *testing.T) {
	tc := newCluster(t)
	c := newClient(t, addrsOf(tc))
	for n := range 2 {
		sub, err := c.Subscribe("Not_A_Name")
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-sub.Changed():
		case <-time.After(waitLong):
			t.Fatalf("subscription %d was never told that the watch ended", n+1)
		}
		if status.Code(errors.Unwrap(sub.Err())) != codes.InvalidArgument {
			t.Fatalf("subscription %d: Err() = %v, want InvalidArgument", n+1, sub.Err())
		}
	}
}

func TestCacheFollowsServiceHealthyOnly(t *testing.T) {
	tc := newCluster(t)
	register(t, tc, inst("svc", "a"))
	register(t, tc, inst("svc", "b"))
	c := newClient(t, addrsOf(tc))

	if got := cachedIDs(t, c, "svc"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first lookup: %v", got)
	}
	register(t, tc, inst("svc", "c"))
	waitIDs(t, c, "svc", []string{"a", "b", "c"})

	setCritical(t, tc, "svc", "b")
	waitIDs(t, c, "svc", []string{"a", "c"})
	drain(t, tc, "svc", "c")
	waitIDs(t, c, "svc", []string{"a"})
	if got := cachedIDs(t, c, "svc", client.IncludeUnhealthy()); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("with unhealthy: %v", got)
	}
	deregister(t, tc, "svc", "b")
	waitIDs(t, c, "svc", []string{"a", "c"}, client.IncludeUnhealthy())

	// Another namespace is another service.
	other := inst("svc", "x")
	other.Namespace = "other"
	register(t, tc, other)
	waitIDs(t, c, "svc", []string{"x"}, client.InNamespace("other"))
}

// TestCacheFirstListIsLinearizable: an instance acknowledged before the
// first lookup is in the first list, whichever node serves the watch.
func TestCacheFirstListIsLinearizable(t *testing.T) {
	tc := newCluster(t)
	for round := range 3 {
		id := fmt.Sprintf("i%d", round)
		register(t, tc, inst("svc", id))
		// A new client each round, each on a different node first.
		addrs := addrsOf(tc)
		c := newClient(t, append(addrs[round:], addrs[:round]...))
		if got := cachedIDs(t, c, "svc"); !slices.Contains(got, id) {
			t.Fatalf("first lookup through %s after %s was acknowledged: %v", addrs[round], id, got)
		}
	}
}

// TestCachedServiceIsItsExportedFields: a real client's CachedService holds
// nothing but its exported fields, so callers may compare it with
// reflect.DeepEqual (or go-cmp) against a value they build.
func TestCachedServiceIsItsExportedFields(t *testing.T) {
	tc := newCluster(t)
	register(t, tc, inst("svc", "a"))
	c := newClient(t, addrsOf(tc))
	s, err := c.CachedService(testcluster.Ctx(t), "svc")
	if err != nil {
		t.Fatal(err)
	}
	want := client.CachedService{Namespace: s.Namespace, Service: s.Service, Instances: s.Instances, Revision: s.Revision,
		SyncedAt: s.SyncedAt, Stale: s.Stale, Held: s.Held}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("CachedService %+v differs from its exported fields %+v", s, want)
	}
}

// TestCacheStartsWithoutQuorum: with two of three nodes down no node can
// confirm a linearizable first list, so a new client's cache starts from
// the survivor's own state rather than from nothing.
func TestCacheStartsWithoutQuorum(t *testing.T) {
	tc := newCluster(t)
	register(t, tc, inst("svc", "a"))
	tc.EnsureSame()
	addrs := addrsOf(tc)
	tc.Stop(tc.Nodes[0])
	tc.Stop(tc.Nodes[1])
	c := newClient(t, addrs)
	if got := cachedIDs(t, c, "svc"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first lookup without quorum: %v", got)
	}
	// Only a node in touch with a leader confirms the list afterwards: the
	// survivor's own state, however fresh its bookmarks, does not.
	testdiscovery.Eventually(t, "the list from a node without a leader to turn stale", waitLong, func() bool {
		s, err := c.CachedService(testcluster.Ctx(t), "svc")
		return err == nil && s.Stale && slices.Equal(ids(s.Instances), []string{"a"})
	})
}

func TestCacheServesLastListThroughOutageAndCatchesUp(t *testing.T) {
	tc := newCluster(t)
	register(t, tc, inst("svc", "a"))
	var proxies []*testdiscovery.Proxy
	var addrs []string
	for _, nd := range tc.Nodes {
		p := testdiscovery.NewProxy(t, nd.Addr)
		proxies = append(proxies, p)
		addrs = append(addrs, p.Addr)
	}
	c := newClient(t, addrs)
	if got := cachedIDs(t, c, "svc"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first lookup: %v", got)
	}

	for _, p := range proxies {
		p.Cut()
	}
	// The cluster moves on without the client seeing it.
	register(t, tc, inst("svc", "b"))
	deregister(t, tc, "svc", "a")
	testdiscovery.Eventually(t, "the cache to notice the outage", waitLong, func() bool {
		s, err := c.CachedService(testcluster.Ctx(t), "svc")
		return err == nil && s.Stale
	})
	s, err := c.CachedService(testcluster.Ctx(t), "svc")
	if err != nil || !slices.Equal(ids(s.Instances), []string{"a"}) {
		t.Fatalf("during the outage: %v, %v; want the last known list [a]", ids(s.Instances), err)
	}
	if s.Age() <= 0 {
		t.Fatalf("age %s during the outage", s.Age())
	}

	for _, p := range proxies {
		p.Restore()
	}
	waitIDs(t, c, "svc", []string{"b"})
	testdiscovery.Eventually(t, "the cache to be fresh again", waitLong, func() bool {
		s, err := c.CachedService(testcluster.Ctx(t), "svc")
		return err == nil && !s.Stale
	})
}

func TestCacheDirStartsWithoutRegistry(t *testing.T) {
	tc := newCluster(t)
	register(t, tc, inst("svc", "a"))
	register(t, tc, inst("svc", "b"))
	dir := t.TempDir()

	c := newClient(t, addrsOf(tc), client.WithCacheDir(dir))
	waitIDs(t, c, "svc", []string{"a", "b"})
	_ = c.Close()

	tc.Shutdown()
	// Nothing listens at the old addresses any more.
	c2 := newClient(t, addrsOf(tc), client.WithCacheDir(dir))
	s, err := c2.CachedService(testcluster.Ctx(t), "svc")
	if err != nil {
		t.Fatalf("lookup without registry: %v", err)
	}
	if !slices.Equal(ids(s.Instances), []string{"a", "b"}) || !s.Stale {
		t.Fatalf("got %v stale=%v, want the persisted [a b], stale", ids(s.Instances), s.Stale)
	}
	// Only the first lookup waits for the cluster; later ones answer at
	// once, well inside a deadline shorter than that first wait.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if got, err := c2.Instances(ctx, "svc"); err != nil || len(got) != 2 {
		t.Fatalf("second lookup without registry: %v, %v", ids(got), err)
	}
}

func TestCacheHoldsEmptyUpdate(t *testing.T) {
	tc := newCluster(t)
	register(t, tc, inst("svc", "a"))
	// A grace period longer than any test: the update is held throughout.
	c := newClient(t, addrsOf(tc), client.WithEmptyListGrace(time.Hour))
	waitIDs(t, c, "svc", []string{"a"})

	deregister(t, tc, "svc", "a")
	testdiscovery.Eventually(t, "the empty update to be held", waitLong, func() bool {
		s, err := c.CachedService(testcluster.Ctx(t), "svc")
		return err == nil && s.Held
	})
	if got := cachedIDs(t, c, "svc"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("while held: %v, want [a]", got)
	}
	// A list with healthy instances ends the hold at once.
	register(t, tc, inst("svc", "b"))
	waitIDs(t, c, "svc", []string{"b"})

	// The end of the grace period, on the client's clock, is tested with
	// a fake one (TestCacheEmptyListGraceRunsOnTheClock).

	// Turned off, nothing is held.
	deregister(t, tc, "svc", "b")
	c3 := newClient(t, addrsOf(tc), client.WithEmptyListGrace(0))
	register(t, tc, inst("svc", "c"))
	waitIDs(t, c3, "svc", []string{"c"})
	deregister(t, tc, "svc", "c")
	waitIDs(t, c3, "svc", nil)
}

func TestCacheMovesOnWhenItsNodeIsKilled(t *testing.T) {
	tc := newCluster(t)
	register(t, tc, inst("svc", "a"))
	c := newClient(t, addrsOf(tc))
	waitIDs(t, c, "svc", []string{"a"})
	first := c.Endpoint()
	for _, nd := range tc.Nodes {
		if nd.Addr == first {
			tc.Stop(nd)
		}
	}
	tc.WaitLeader()
	register(t, tc, inst("svc", "b"))
	waitIDs(t, c, "svc", []string{"a", "b"})
	if c.Endpoint() == first {
		t.Fatalf("still on the killed node %s", first)
	}
}

package rpc_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// revision returns the leader's registry revision and instance count.
func revision(t *testing.T, c *testcluster.Cluster) (uint64, int) {
	t.Helper()
	v := c.WaitLeader().Node.Store().View()
	return v.Revision(), v.Count()
}

func TestOversizedAndMalformedRequestsChangeNothing(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{
		Configure: func(cfg *cluster.Config) { cfg.MaxEntrySize = 8 << 10 },
		Server:    func(o *rpc.Options) { o.Limits.MaxRequestBytes = 64 << 10 },
	})
	ctx := testcluster.Ctx(t)
	if _, err := c.Nodes[0].Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 80)}); err != nil {
		t.Fatal(err)
	}
	c.EnsureSame()
	rev, n := revision(t, c)

	big := func(mut func(*rosterv1.Instance)) *rosterv1.Instance {
		in := instance("web", "b", 81)
		mut(in)
		return in
	}
	meta := func(keys, valLen int) map[string]string {
		m := map[string]string{}
		for i := range keys {
			m[fmt.Sprintf("k%d", i)] = strings.Repeat("v", valLen)
		}
		return m
	}
	cases := []struct {
		name string
		in   *rosterv1.Instance
		code codes.Code
		msg  string
	}{
		{"metadata value over 512", big(func(i *rosterv1.Instance) { i.Metadata = meta(1, 513) }), codes.InvalidArgument, "limit is 512"},
		{"65 metadata keys", big(func(i *rosterv1.Instance) { i.Metadata = meta(65, 1) }), codes.InvalidArgument, "limit is 64"},
		{"metadata key over 128", big(func(i *rosterv1.Instance) { i.Metadata = map[string]string{strings.Repeat("k", 129): "v"} }), codes.InvalidArgument, "metadata key"},
		{"65 tags", big(func(i *rosterv1.Instance) { i.Tags = strings.Split(strings.Repeat("t,", 64)+"t", ",") }), codes.InvalidArgument, "limit is 64"},
		{"tag over 128", big(func(i *rosterv1.Instance) { i.Tags = []string{strings.Repeat("t", 129)} }), codes.InvalidArgument, "tag"},
		{"id over 128", big(func(i *rosterv1.Instance) { i.Id = strings.Repeat("i", 129) }), codes.InvalidArgument, "instance id"},
		{"service not a DNS label", big(func(i *rosterv1.Instance) { i.Service = "Web_1" }), codes.InvalidArgument, "DNS label"},
		{"service over 63", big(func(i *rosterv1.Instance) { i.Service = strings.Repeat("s", 64) }), codes.InvalidArgument, "DNS label"},
		{"namespace not a DNS label", big(func(i *rosterv1.Instance) { i.Namespace = "-ns" }), codes.InvalidArgument, "DNS label"},
		{"ttl under 1s", big(func(i *rosterv1.Instance) { i.Ttl = durationpb.New(1e8) }), codes.InvalidArgument, "ttl"},
		{"ttl over 24h", big(func(i *rosterv1.Instance) { i.Ttl = durationpb.New(25 * 3600e9) }), codes.InvalidArgument, "ttl"},
		{"check interval under 1s", big(func(i *rosterv1.Instance) {
			i.Check = &rosterv1.HealthCheck{Target: &rosterv1.HealthCheck_Tcp{Tcp: "10.0.0.1:80"}, Interval: durationpb.New(1e8)}
		}), codes.InvalidArgument, "interval"},
		{"check interval over 24h", big(func(i *rosterv1.Instance) {
			i.Check = &rosterv1.HealthCheck{Target: &rosterv1.HealthCheck_Tcp{Tcp: "10.0.0.1:80"}, Interval: durationpb.New(25 * 3600e9)}
		}), codes.InvalidArgument, "interval"},
		// Valid, but its Raft entry is over the cluster's 8 KiB entry limit.
		{"entry over the Raft limit", big(func(i *rosterv1.Instance) { i.Metadata = meta(20, 500) }), codes.InvalidArgument, "the limit is 8192"},
		// Over the 64 KiB message limit.
		{"message over max request bytes", big(func(i *rosterv1.Instance) { i.Address = strings.Repeat("a", 70<<10) }), codes.InvalidArgument, "the limit is 65536"},
		// Over the transport's 16 MiB: refused before it is read.
		{"message over 16 MiB", big(func(i *rosterv1.Instance) { i.Address = strings.Repeat("a", 17<<20) }), codes.ResourceExhausted, "larger than max"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, nd := range []*testcluster.Node{c.WaitLeader(), c.Followers()[0]} {
				_, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: tc.in})
				if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
					t.Fatalf("via %s: %v; want %s mentioning %q", nd.ID, err, tc.code, tc.msg)
				}
			}
		})
	}
	if r2, n2 := revision(t, c); r2 != rev || n2 != n {
		t.Fatalf("revision %d→%d, instances %d→%d after refused requests", rev, r2, n, n2)
	}
}

func TestInstanceLimitsHoldThroughAnyNode(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{
		Server: func(o *rpc.Options) { o.Limits.MaxInstancesPerService, o.Limits.MaxInstancesPerNamespace = 3, 5 },
	})
	ctx := testcluster.Ctx(t)
	reg := func(nd *testcluster.Node, ns, svc, id string) error {
		in := instance(svc, id, 80)
		in.Namespace = ns
		_, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: in})
		return err
	}
	follower := c.Followers()[0]
	for i := range 3 {
		if err := reg(follower, "", "web", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	rev, n := revision(t, c)
	for _, nd := range []*testcluster.Node{c.WaitLeader(), follower} {
		err := reg(nd, "", "web", "x")
		if status.Code(err) != codes.ResourceExhausted || rpc.Reason(err) != rpc.ReasonInstanceLimit ||
			!strings.Contains(err.Error(), "limit per service is 3") {
			t.Fatalf("4th instance of web via %s: %v", nd.ID, err)
		}
	}
	if r2, n2 := revision(t, c); r2 != rev || n2 != n {
		t.Fatalf("refused registration changed state: revision %d→%d, count %d→%d", rev, r2, n, n2)
	}
	// Re-registering an instance at the limit is allowed.
	if err := reg(follower, "", "web", "0"); err != nil {
		t.Fatalf("re-register at the limit: %v", err)
	}
	for i := range 2 {
		if err := reg(follower, "", "api", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg(follower, "", "db", "0"); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limit per namespace is 5") {
		t.Fatalf("6th instance of the namespace: %v", err)
	}
	if err := reg(follower, "other", "db", "0"); err != nil {
		t.Fatalf("another namespace: %v", err)
	}
	c.EnsureSame()
}

// TestConcurrentRegistrationsNeverPassTheLimit races more registrations
// than the limit allows: the leader's check sees none of them applied, so
// only the state machine's check can hold the line.
func TestConcurrentRegistrationsNeverPassTheLimit(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{
		Server: func(o *rpc.Options) { o.Limits.MaxInstancesPerService = 5 },
	})
	ctx := testcluster.Ctx(t)
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nd := c.Nodes[i%len(c.Nodes)]
			_, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", fmt.Sprint(i), 80)})
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.ResourceExhausted:
				refused.Add(1)
			default:
				t.Errorf("register %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 5 || refused.Load() != 35 {
		t.Fatalf("%d registered, %d refused; want 5 and 35", ok.Load(), refused.Load())
	}
	c.EnsureSame()
	for _, nd := range c.Nodes {
		if n := nd.Node.Store().View().ServiceCount("default", "web"); n != 5 {
			t.Fatalf("%s holds %d instances of web", nd.ID, n)
		}
	}
}

func TestWatchersPerConnection(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{
		Server: func(o *rpc.Options) { o.Limits.MaxWatchersPerConnection = 2 },
	})
	ctx, cancel := context.WithCancel(testcluster.Ctx(t))
	defer cancel()
	nd := c.Nodes[0]
	open := func(cc grpc.ClientConnInterface) error {
		st, err := rosterv1.NewRegistryClient(cc).Watch(ctx, &rosterv1.WatchRequest{})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	for i := range 2 {
		if err := open(nd.Conn); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	err := open(nd.Conn)
	if status.Code(err) != codes.ResourceExhausted || rpc.Reason(err) != rpc.ReasonWatcherLimit {
		t.Fatalf("third watch on one connection: %v", err)
	}
	other, err := grpc.NewClient(nd.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := open(other); err != nil {
		t.Fatalf("watch on another connection: %v", err)
	}
}

// dialFrom connects to addr from a local address of its own (any 127/8
// address is this host), so the server sees a distinct client.
func dialFrom(t *testing.T, local, addr string) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestFloodIsLimitedAndOthersGoOn floods the leader from one client while
// another, well-behaved one, keeps writing and reading: the flood is
// refused beyond its rate, the other client's calls all succeed, and
// leadership never changes.
func TestFloodIsLimitedAndOthersGoOn(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{
		// Raft's own timeouts, not the test cluster's fast ones: the
		// question is whether a flood costs an election in production.
		Configure: func(cfg *cluster.Config) {
			cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout, cfg.CommitTimeout = 0, 0, 0, 0
		},
		Server: func(o *rpc.Options) {
			o.Limits.Rate, o.Limits.Burst = 20, 50
			o.Limits.ReadRate, o.Limits.ReadBurst = 20, 50
		},
	})
	c.WaitMembersKnown()
	// A shared CI machine running every package under -race can stall
	// this for many seconds; a call that outlives a 20 s context then
	// counts as an error the flood did not cause.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	leader := c.WaitLeader()
	term := leader.Node.Status().Term

	flooder := rosterv1.NewRegistryClient(dialFrom(t, "127.0.0.2", leader.Addr))
	polite := rosterv1.NewRegistryClient(dialFrom(t, "127.0.0.3", leader.Addr))

	var floodOK, floodLimited, floodOther atomic.Int64
	var firstOther atomic.Value // the first other error, to say what it was
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 250 {
				var err error
				if i%2 == 0 {
					_, err = flooder.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("flood", fmt.Sprintf("%d-%d", g, i), 80)})
				} else {
					_, err = flooder.GetService(ctx, &rosterv1.GetServiceRequest{Service: "flood"})
				}
				switch {
				case err == nil:
					floodOK.Add(1)
				case status.Code(err) == codes.ResourceExhausted && rpc.Reason(err) == rpc.ReasonRateLimited:
					floodLimited.Add(1)
				default:
					floodOther.Add(1)
					firstOther.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	// The polite client stays inside its burst: 20 writes and 20 reads.
	var politeErrs []error
	for i := range 20 {
		if _, err := polite.Register(ctx, &rosterv1.RegisterRequest{Instance: instance("polite", fmt.Sprint(i), 80)}); err != nil {
			politeErrs = append(politeErrs, err)
		}
		if _, err := polite.GetService(ctx, &rosterv1.GetServiceRequest{Service: "polite"}); err != nil {
			politeErrs = append(politeErrs, err)
		}
	}
	wg.Wait()
	if len(politeErrs) > 0 {
		t.Fatalf("the well-behaved client failed %d of 40 calls, first: %v", len(politeErrs), politeErrs[0])
	}
	t.Logf("flood: %d served, %d rate-limited, %d other errors", floodOK.Load(), floodLimited.Load(), floodOther.Load())
	if floodLimited.Load() == 0 || floodOther.Load() != 0 {
		t.Fatalf("flood: %d limited, %d other errors (first: %v); want some limited and no other errors", floodLimited.Load(), floodOther.Load(), firstOther.Load())
	}
	// 2000 calls against two buckets of 50 refilling at 20/s.
	if floodLimited.Load() < 100 {
		t.Fatalf("only %d of 2000 flood calls were refused", floodLimited.Load())
	}
	if now := c.WaitLeader(); now.ID != leader.ID || now.Node.Status().Term != term {
		t.Fatalf("leadership changed during the flood: %s term %d → %s term %d", leader.ID, term, now.ID, now.Node.Status().Term)
	}
	got, err := polite.GetService(ctx, &rosterv1.GetServiceRequest{Service: "polite"})
	if err != nil || len(got.Instances) != 20 {
		t.Fatalf("polite service: %v %v", got, err)
	}
}

// TestKeepAliveBatchCostsATokenPerInstance: a batched renewal counts each
// of its instances against the read bucket, so batching is no way around
// the rate.
func TestKeepAliveBatchCostsATokenPerInstance(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
		o.Limits.ReadRate, o.Limits.ReadBurst = 0.01, 50
	}})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	cl := rosterv1.NewRegistryClient(dialFrom(t, "127.0.0.2", c.WaitLeader().Addr))
	st, err := cl.KeepAlive(ctx) // one token
	if err != nil {
		t.Fatal(err)
	}
	batch := &rosterv1.HeartbeatRequest{}
	for i := range 30 {
		batch.Instances = append(batch.Instances, &rosterv1.InstanceRef{Service: "web", Id: fmt.Sprint(i)})
	}
	if err := st.Send(batch); err != nil { // 30 tokens of the 49 left
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != nil || len(resp.Results) != 30 {
		t.Fatalf("first batch of 30 within a burst of 50: %v, %v", resp, err)
	}
	if err := st.Send(batch); err != nil { // 30 more of the 19 left
		t.Fatal(err)
	}
	_, err = st.Recv()
	if status.Code(err) != codes.ResourceExhausted || rpc.Reason(err) != rpc.ReasonRateLimited {
		t.Fatalf("second batch of 30 past the burst: %v, want ResourceExhausted, RATE_LIMITED", err)
	}
	// It says when to retry: 30 tokens wanted, about 19 held, 0.01 a
	// second come in (less than 1,100 s by what refilled meanwhile).
	if d := retryDelay(err); d <= 1000*time.Second || d > 1100*time.Second {
		t.Fatalf("second batch of 30 past the burst: retry in %v, want about 1100s (%v)", d, err)
	}
}

// retryDelay is the RetryInfo delay of err, 0 when it has none.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

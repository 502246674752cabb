package rpc_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// BenchmarkWatchDelivery measures the time from a write's acknowledgement
// to its receipt by every watcher of the service, on one node with many
// watchers, and how many event encodings the server made per write.
// Run with a fixed count, e.g. -benchtime=100x.
func BenchmarkWatchDelivery(b *testing.B) {
	for _, watchers := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("watchers=%d", watchers), func(b *testing.B) { benchDelivery(b, watchers, false) })
	}
	// The same with watchers that ask for no prev_instance, as the Go
	// SDK's cache does: an update's event about half the size.
	b.Run("watchers=1000/omit-prev", func(b *testing.B) { benchDelivery(b, 1000, true) })
	// The same 1,000 watches carried 50 to a WatchMany stream, as the Go
	// SDK's watches of one client share one: each write goes once to each
	// stream, naming every watch.
	b.Run("watchers=1000/many-50", func(b *testing.B) { benchDeliveryMany(b, 1000, 50) })
	b.Run("watchers=10000/many-50", func(b *testing.B) { benchDeliveryMany(b, 10000, 50) })
}

// expect is the write the watchers are waiting for.
type expect struct {
	rev uint64
	wg  sync.WaitGroup
}

// deliveryBench is one node, its watchers' connections, and the receipt
// times of each watcher.
type deliveryBench struct {
	nd       *testcluster.Node
	ctx      context.Context
	conns    []*grpc.ClientConn
	cur      atomic.Pointer[expect]
	received [][]int64 // per watcher: receipt times by write
	ready    sync.WaitGroup
	all      sync.WaitGroup
}

func newDeliveryBench(b *testing.B, ctx context.Context, watchers int) *deliveryBench {
	c := testcluster.New(b, 1, testcluster.Options{})
	d := &deliveryBench{nd: c.WaitLeader(), ctx: ctx, received: make([][]int64, watchers)}
	const streamsPerConn = 500
	for i := 0; i < (watchers+streamsPerConn-1)/streamsPerConn; i++ {
		cc, err := grpc.NewClient(d.nd.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		d.conns = append(d.conns, cc)
	}
	return d
}

func benchDelivery(b *testing.B, watchers int, omitPrev bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := newDeliveryBench(b, ctx, watchers)
	conns, received := d.conns, d.received
	cur, ready, all := &d.cur, &d.ready, &d.all
	for i := 0; i < watchers; i++ {
		ready.Add(1)
		all.Add(1)
		go func() {
			defer all.Done()
			stream, err := rosterv1.NewRegistryClient(conns[i%len(conns)]).Watch(ctx, &rosterv1.WatchRequest{Service: "bench", OmitPrevInstance: omitPrev})
			if err != nil {
				b.Error(err)
				ready.Done()
				return
			}
			if _, err := stream.Recv(); err != nil { // the reset
				b.Error(err)
				ready.Done()
				return
			}
			ready.Done()
			for {
				m, err := stream.Recv()
				if err != nil {
					return
				}
				t := time.Now().UnixNano()
				if e := cur.Load(); e != nil && len(m.Events) > 0 && m.Events[len(m.Events)-1].Revision >= e.rev {
					received[i] = append(received[i], t)
					e.wg.Done()
				}
			}
		}()
	}
	ready.Wait()
	if b.Failed() {
		return
	}
	d.measure(b, watchers, cancel)
}

// benchDeliveryMany is benchDelivery with the watches carried perStream to
// a WatchMany stream.
func benchDeliveryMany(b *testing.B, watchers, perStream int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := newDeliveryBench(b, ctx, watchers)
	for first := 0; first < watchers; first += perStream {
		n := min(perStream, watchers-first)
		d.ready.Add(1)
		d.all.Add(1)
		go func() {
			defer d.all.Done()
			stream, err := rosterv1.NewRegistryClient(d.conns[(first/perStream)%len(d.conns)]).WatchMany(ctx)
			if err != nil {
				b.Error(err)
				d.ready.Done()
				return
			}
			for id := range n {
				if err := stream.Send(&rosterv1.WatchManyRequest{Action: &rosterv1.WatchManyRequest_Create{Create: &rosterv1.WatchCreate{
					WatchId: uint64(id + 1), Request: &rosterv1.WatchRequest{Service: "bench", OmitPrevInstance: true}}}}); err != nil {
					b.Error(err)
					d.ready.Done()
					return
				}
			}
			for resets := 0; resets < n; {
				m, err := stream.Recv()
				if err != nil {
					b.Error(err)
					d.ready.Done()
					return
				}
				resets += len(m.WatchIds)
			}
			d.ready.Done()
			for {
				m, err := stream.Recv()
				if err != nil {
					return
				}
				t := time.Now().UnixNano()
				evs := m.Response.GetEvents()
				if e := d.cur.Load(); e != nil && len(evs) > 0 && evs[len(evs)-1].Revision >= e.rev {
					for _, id := range m.WatchIds {
						w := first + int(id) - 1
						d.received[w] = append(d.received[w], t)
						e.wg.Done()
					}
				}
			}
		}()
	}
	d.ready.Wait()
	if b.Failed() {
		return
	}
	d.measure(b, watchers, cancel)
}

// measure runs b.N writes, each awaited by every watcher, and reports the
// delivery latencies and the encodings per write.
func (d *deliveryBench) measure(b *testing.B, watchers int, cancel func()) {
	nd, ctx, cur, received := d.nd, d.ctx, &d.cur, d.received
	reg := nd.Registry()
	encBefore := nd.Server.WatchStats().Encodings
	acks := make([]int64, 0, b.N)
	calls := make([]int64, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The revision is not known before the ack; every message after the
		// previous write's revision is this write's.
		e := &expect{rev: nd.Node.Store().Revision() + 1}
		e.wg.Add(watchers)
		cur.Store(e)
		calls = append(calls, time.Now().UnixNano())
		_, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
			Service: "bench", Id: fmt.Sprintf("i%d", i%100), Address: "10.0.0.1", Port: uint32(i%60000 + 1)}})
		if err != nil {
			b.Fatal(err)
		}
		acks = append(acks, time.Now().UnixNano())
		e.wg.Wait()
	}
	b.StopTimer()
	encodings := nd.Server.WatchStats().Encodings - encBefore
	cancel()
	d.all.Wait()

	// From the acknowledgement (a watcher may receive the event before the
	// writer hears the ack: that counts as 0) and from the call.
	var fromAck, fromCall []time.Duration
	for _, times := range received {
		for j, t := range times {
			fromAck = append(fromAck, max(0, time.Duration(t-acks[j])))
			fromCall = append(fromCall, time.Duration(t-calls[j]))
		}
	}
	if len(fromAck) == 0 {
		b.Fatal("no deliveries measured")
	}
	pct := func(lat []time.Duration, p float64) float64 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(fromAck, 0.50), "ack-p50-ms")
	b.ReportMetric(pct(fromAck, 0.99), "ack-p99-ms")
	b.ReportMetric(pct(fromCall, 0.50), "call-p50-ms")
	b.ReportMetric(pct(fromCall, 0.99), "call-p99-ms")
	lat := fromAck
	b.ReportMetric(float64(encodings)/float64(b.N), "encodings/write")
	b.ReportMetric(float64(len(lat))/float64(b.N), "deliveries/write")
}

// BenchmarkReads measures GetService throughput at each consistency on the
// leader and on a follower of a three-node cluster, with 32 concurrent
// callers per CPU.
func BenchmarkReads(b *testing.B) {
	c := testcluster.New(b, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(b)
	leader := c.WaitLeader()
	for i := 0; i < 10; i++ {
		if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", fmt.Sprintf("i%d", i), 80)}); err != nil {
			b.Fatal(err)
		}
	}
	nodes := map[string]*testcluster.Node{"leader": leader, "follower": c.Followers()[0]}
	for _, consistency := range []rosterv1.Consistency{rosterv1.Consistency_CONSISTENCY_LINEARIZABLE, rosterv1.Consistency_CONSISTENCY_STALE} {
		for _, role := range []string{"leader", "follower"} {
			nd := nodes[role]
			name := fmt.Sprintf("%s/%s", consistency.String()[len("CONSISTENCY_"):], role)
			b.Run(name, func(b *testing.B) {
				req := &rosterv1.GetServiceRequest{Service: "web", Read: &rosterv1.ReadOptions{Consistency: consistency}}
				rounds := nd.Server.ReadIndexRounds()
				b.SetParallelism(32)
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := nd.Registry().GetService(ctx, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reads/s")
				if role == "follower" {
					b.ReportMetric(float64(nd.Server.ReadIndexRounds()-rounds)/float64(b.N), "leader-rounds/read")
				}
			})
		}
	}
}

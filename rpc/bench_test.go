package rpc_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// BenchmarkRegister3Node measures a register round trip through gRPC on a
// 3-node in-process cluster (in-memory Raft transport and log, so it measures
// Roster's own path, not disk). Run with -cpu to vary client concurrency via
// b.SetParallelism; the raft-entries/op metric shows group commit at work.
func BenchmarkRegister3Node(b *testing.B) {
	for _, par := range []int{1, 16, 128} {
		for _, target := range []string{"leader", "follower"} {
			b.Run(fmt.Sprintf("clients=%dx%s/via=%s", par, "GOMAXPROCS", target), func(b *testing.B) {
				c := testcluster.New(b, 3, testcluster.Options{Configure: func(cfg *cluster.Config) {
					// Benchmarks must not stall on leader changes.
					cfg.HeartbeatTimeout *= 5
					cfg.ElectionTimeout *= 5
					cfg.LeaderLeaseTimeout *= 5
				}})
				c.WaitMembersKnown()
				nd := c.WaitLeader()
				if target == "follower" {
					nd = c.Followers()[0]
				}
				reg := nd.Registry()
				startIndex := c.WaitLeader().Node.LastIndex()
				var seq atomic.Int64
				b.SetParallelism(par)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					for pb.Next() {
						n := seq.Add(1)
						_, err := reg.Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
							Service: "bench", Id: fmt.Sprintf("i%d", n%1000), Address: "10.0.0.1", Port: uint32(n%60000 + 1),
						}})
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				entries := c.WaitLeader().Node.LastIndex() - startIndex
				b.ReportMetric(float64(entries)/float64(b.N), "raft-entries/op")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registers/s")
			})
		}
	}
}

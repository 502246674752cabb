package rpc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// BenchmarkKeepAlive measures renewals per second through one KeepAlive
// stream, pipelined (a sender and a receiver), on the leader and through a
// follower that relays to it, over real gRPC on loopback. raft-entries is
// the number of Raft log entries the renewals caused: it must be 0.
func BenchmarkKeepAlive(b *testing.B) {
	for _, via := range []string{"leader", "follower"} {
		b.Run("via="+via, func(b *testing.B) {
			c := testcluster.New(b, 3, testcluster.Options{Configure: func(cfg *cluster.Config) {
				cfg.HeartbeatTimeout *= 5
				cfg.ElectionTimeout *= 5
				cfg.LeaderLeaseTimeout *= 5
			}})
			c.WaitMembersKnown()
			ctx := context.Background()
			leader := c.Leader()
			nd := leader
			if via == "follower" {
				nd = c.Followers()[0]
			}
			const instances = 1000
			for i := 0; i < instances; i++ {
				if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("bench", fmt.Sprintf("i%d", i), time.Hour, 0)}); err != nil {
					b.Fatal(err)
				}
			}
			st, err := nd.Registry().KeepAlive(ctx)
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]*rosterv1.HeartbeatRequest, instances)
			for i := range reqs {
				reqs[i] = &rosterv1.HeartbeatRequest{Service: "bench", Id: fmt.Sprintf("i%d", i)}
			}
			startIndex := leader.Node.LastIndex()
			b.ReportAllocs()
			b.ResetTimer()
			sendErr := make(chan error, 1)
			go func() {
				for i := 0; i < b.N; i++ {
					if err := st.Send(reqs[i%instances]); err != nil {
						sendErr <- err
						return
					}
				}
				sendErr <- st.CloseSend()
			}()
			for i := 0; i < b.N; i++ {
				resp, err := st.Recv()
				if err != nil {
					b.Fatal(err)
				}
				if resp.Code != 0 || resp.Id != reqs[i%instances].Id {
					b.Fatalf("renewal %d: %s %q (code %d)", i, resp.Id, resp.Error, resp.Code)
				}
			}
			b.StopTimer()
			if err := <-sendErr; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
			b.ReportMetric(float64(leader.Node.LastIndex()-startIndex), "raft-entries")
		})
	}
}

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
// follower that relays to it, over real gRPC on loopback, one instance a
// message and 100 a message. raft-entries is the number of Raft log
// entries the renewals caused: it must be 0.
func BenchmarkKeepAlive(b *testing.B) {
	for _, tc := range []struct {
		via   string
		batch int
	}{{"leader", 1}, {"follower", 1}, {"leader", 100}, {"follower", 100}} {
		via := tc.via
		b.Run(fmt.Sprintf("via=%s/batch=%d", via, tc.batch), func(b *testing.B) {
			c := testcluster.New(b, 3, testcluster.Options{Configure: func(cfg *cluster.Config) {
				cfg.HeartbeatTimeout *= 5
				cfg.ElectionTimeout *= 5
				cfg.LeaderLeaseTimeout *= 5
			}})
			c.WaitMembersKnown()
			ctx := context.Background()
			leader := c.WaitLeader()
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
			// Message m renews instances m*batch, m*batch+1, ... (mod
			// instances); b.N renewals round up to whole messages.
			batch := tc.batch
			msgs := (b.N + batch - 1) / batch
			keyOf := func(j int) (string, string) { return "bench", fmt.Sprintf("i%d", j%instances) }
			reqs := make([]*rosterv1.HeartbeatRequest, instances)
			for m := range reqs {
				if batch == 1 {
					svc, id := keyOf(m)
					reqs[m] = &rosterv1.HeartbeatRequest{Service: svc, Id: id}
					continue
				}
				req := &rosterv1.HeartbeatRequest{}
				for j := m * batch; j < (m+1)*batch; j++ {
					svc, id := keyOf(j)
					req.Instances = append(req.Instances, &rosterv1.InstanceRef{Service: svc, Id: id})
				}
				reqs[m] = req
			}
			startIndex := leader.Node.LastIndex()
			b.ReportAllocs()
			b.ResetTimer()
			sendErr := make(chan error, 1)
			go func() {
				for m := 0; m < msgs; m++ {
					if err := st.Send(reqs[m%instances]); err != nil {
						sendErr <- err
						return
					}
				}
				sendErr <- st.CloseSend()
			}()
			for m := 0; m < msgs; m++ {
				resp, err := st.Recv()
				if err != nil {
					b.Fatal(err)
				}
				req := reqs[m%instances]
				if batch == 1 {
					if resp.Code != 0 || resp.Id != req.Id {
						b.Fatalf("renewal %d: %s %q (code %d)", m, resp.Id, resp.Error, resp.Code)
					}
					continue
				}
				if resp.Code != 0 || len(resp.Results) != batch {
					b.Fatalf("batch %d: %d results for %d, %q (code %d)", m, len(resp.Results), batch, resp.Error, resp.Code)
				}
				for j, r := range resp.Results {
					if r.Code != 0 || r.Ttl.AsDuration() != time.Hour {
						b.Fatalf("batch %d, instance %d: ttl %v, %q (code %d)", m, j, r.Ttl.AsDuration(), r.Error, r.Code)
					}
				}
			}
			b.StopTimer()
			if err := <-sendErr; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(msgs*batch)/b.Elapsed().Seconds(), "heartbeats/s")
			b.ReportMetric(float64(leader.Node.LastIndex()-startIndex), "raft-entries")
		})
	}
}

package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roster-registry/roster/store"
)

// BenchmarkHeartbeat renews leases on the leader: the path every heartbeat
// takes after the gRPC layer. It never writes to Raft.
func BenchmarkHeartbeat(b *testing.B) {
	n := newReadyLeader(b)
	const instances = 1000
	var keys []store.Key
	for i := range instances {
		in := &store.Instance{Namespace: "default", Service: "web", ID: fmt.Sprintf("i%d", i), Address: "10.0.0.1", Port: 80,
			Weight: 100, TTL: 30 * time.Second}
		if _, err := n.Register(context.Background(), in, ""); err != nil {
			b.Fatal(err)
		}
		keys = append(keys, in.Key())
	}
	before := n.Applied()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := n.Heartbeat(context.Background(), keys[i%instances]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if after := n.Applied(); after != before {
		b.Fatalf("heartbeats moved the applied index from %d to %d", before, after)
	}
}

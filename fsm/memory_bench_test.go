package fsm

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/roster-registry/roster/internal/liveheap"
	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// BenchmarkMemoryPerRequest measures what a write's remembered request
// result costs the Go heap: 50,000 registers of new instances (3 tags, 4
// metadata entries) applied one an entry, each wrapped in a request with a
// 32-character id as the server makes them, against the same registers
// bare. request-B/write is the difference (the result, its id, its place
// in the map and the pruning order); write-B/write is a bare register's
// cost (the instance, its index entry, its history event).
func BenchmarkMemoryPerRequest(b *testing.B) {
	const n = 50_000
	perWrite := func(withID bool) float64 {
		f := newFSM()
		h0 := liveheap.Here()
		for k := range n {
			m := &raftcmdv1.Register{Instance: &raftcmdv1.Instance{Namespace: "default", Service: "bench",
				Id: fmt.Sprintf("bench-%08d", k), Address: "10.1.1.1", Port: 80, Weight: 100,
				Tags:     []string{"v2", "http", "canary=false"},
				Metadata: map[string]string{"version": "2.14.3", "commit": "4f9c2e1d7a", "region": "eu-west-1", "team": "payments"}},
				NowUnixNs: 1000}
			data, err := Encode(RegisterType, m)
			if withID {
				data, err = EncodeRequest(fmt.Sprintf("%032x", k*7919+1), 1000, RegisterType, m)
			}
			if err != nil {
				b.Fatal(err)
			}
			if r, ok := apply(f, uint64(k+1), data).(Result); !ok || r.Err != nil {
				b.Fatalf("apply %d: %v", k, r.Err)
			}
		}
		h1 := liveheap.Here()
		if got := f.Store().View().Count(); got != n {
			b.Fatalf("store holds %d instances, want %d", got, n)
		}
		runtime.KeepAlive(f)
		return float64(h1-h0) / n
	}
	var bare, wrapped float64
	for range b.N {
		bare, wrapped = perWrite(false), perWrite(true)
	}
	b.ReportMetric(bare, "write-B/write")
	b.ReportMetric(wrapped-bare, "request-B/write")
}

package store

import (
	"fmt"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/roster-registry/roster/internal/liveheap"
	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// BenchmarkMemoryPerInstance measures what an instance costs the Go heap:
// record-B/instance for the instance decoded from its log record as the
// state machine decodes it (3 tags, 4 metadata entries, zone), and
// store-B/instance for the whole store holding them (records, the index,
// the service rows, the retained history), registered 64 to a
// transaction and then each looked up once, as a lease renewal does.
// reregistered-B/instance is the store's heap once every instance has been
// registered again at a new port. Each iteration measures 100,000
// instances.
func BenchmarkMemoryPerInstance(b *testing.B) {
	const n = 100_000
	record := func(k int) *Instance {
		i := &Instance{Namespace: DefaultNamespace, Service: "bench", ID: fmt.Sprintf("bench-%08d", k),
			Address: fmt.Sprintf("10.%d.%d.%d", (k>>16)&255, (k>>8)&255, k&255), Port: 8080,
			Weight: 100, Labels: &Labels{
				Tags:     []string{"v2", "http", "canary=false"},
				Metadata: map[string]string{"version": "2.14.3", "commit": "4f9c2e1d7a", "region": "eu-west-1", "team": "payments"},
				Zone:     fmt.Sprintf("eu-west-1%c", 'a'+k%3)}}
		raw, err := proto.Marshal(InstanceToRecord(i))
		if err != nil {
			b.Fatal(err)
		}
		var r raftcmdv1.Instance
		if err := proto.Unmarshal(raw, &r); err != nil {
			b.Fatal(err)
		}
		return InstanceFromRecord(&r)
	}
	var recordB, storeB, againB float64
	for range b.N {
		h0 := liveheap.Here()
		keep := make([]*Instance, n)
		for k := range keep {
			keep[k] = record(k)
		}
		h1 := liveheap.Here()
		runtime.KeepAlive(keep)
		keep = nil
		recordB = float64(h1-h0) / n

		h0 = liveheap.Here()
		s := New(DefaultOptions())
		for k := 0; k < n; k += 64 {
			w := s.Begin(uint64(k + 1))
			for j := k; j < min(k+64, n); j++ {
				if _, err := w.Register(record(j), int64(k)); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		// Lease renewals and health checks look every instance up.
		v := s.View()
		for k := range n {
			if _, err := v.Instance(nil, Key{DefaultNamespace, "bench", fmt.Sprintf("bench-%08d", k)}); err != nil {
				b.Fatal(err)
			}
		}
		h1 = liveheap.Here()
		if got := s.View().Count(); got != n {
			b.Fatalf("store holds %d instances, want %d", got, n)
		}
		storeB = float64(h1-h0) / n

		// Then every instance registered again at a new port, 64 to a
		// transaction, as a redeployment does: what the store holds
		// afterwards, from the same baseline, with the history full of
		// the second round's events.
		for k := 0; k < n; k += 64 {
			w := s.Begin(uint64(n + k + 1))
			for j := k; j < min(k+64, n); j++ {
				i := record(j)
				i.Port = 8081
				if _, err := w.Register(i, int64(n+k)); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		h2 := liveheap.Here()
		runtime.KeepAlive(s)
		againB = float64(h2-h0) / n
	}
	b.ReportMetric(recordB, "record-B/instance")
	b.ReportMetric(storeB, "store-B/instance")
	b.ReportMetric(againB, "reregistered-B/instance")
}

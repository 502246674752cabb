package fsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// BenchmarkSnapshot writes and reads back a snapshot of 100,000 instances
// with realistic metadata, in memory: the CPU a snapshot and a restore cost
// a node, without the disk. It reports each per instance.
func BenchmarkSnapshot(b *testing.B) {
	const n = 100_000
	f := newFSM()
	for k := 0; k < n; k += 64 {
		entries := make([][]byte, 0, 64)
		for j := k; j < min(k+64, n); j++ {
			entries = append(entries, mustEncode(b, RegisterType, &raftcmdv1.Register{
				Instance: &raftcmdv1.Instance{Namespace: "default", Service: "bench", Id: fmt.Sprintf("bench-%08d", j),
					Address: fmt.Sprintf("10.%d.%d.%d", (j>>16)&255, (j>>8)&255, j&255), Port: 8080,
					Tags:     []string{"v2", "http", "canary=false"},
					Metadata: map[string]string{"version": "2.14.3", "commit": "4f9c2e1d7a", "region": "eu-west-1", "team": "payments"},
					Weight:   100, Zone: fmt.Sprintf("eu-west-1%c", 'a'+j%3)},
				NowUnixNs: 1000,
			}))
		}
		batch, err := EncodeBatch(entries)
		if err != nil {
			b.Fatal(err)
		}
		if r, ok := apply(f, uint64(k+1), batch).(error); ok && r != nil {
			b.Fatal(r)
		}
	}
	var buf bytes.Buffer
	var persist, restore float64
	b.ResetTimer()
	for range b.N {
		buf.Reset()
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := snap.(*snapshot).write(&buf); err != nil {
			b.Fatal(err)
		}
		persist += float64(time.Since(start))
		start = time.Now()
		g := newFSM()
		if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
			b.Fatal(err)
		}
		restore += float64(time.Since(start))
		if got := g.Store().View().Count(); got != n {
			b.Fatalf("restored %d instances, want %d", got, n)
		}
	}
	b.ReportMetric(persist/float64(b.N)/n, "persist-ns/instance")
	b.ReportMetric(restore/float64(b.N)/n, "restore-ns/instance")
	b.ReportMetric(float64(buf.Len())/n, "snapshot-B/instance")
}

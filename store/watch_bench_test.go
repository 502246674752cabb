package store

import (
	"sync"
	"testing"
)

// BenchmarkWatchFanout: one register wakes 1,000 watchers waiting on the
// history, each of which reads the new revision, as the watch streams do.
func BenchmarkWatchFanout(b *testing.B) {
	const watchers = 1000
	s := New(DefaultOptions())
	b.ReportAllocs()
	for n := 0; n < b.N; n++ {
		rev := uint64(n + 1)
		_, _, wake, err := s.History().Since(rev-1, 500)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(watchers)
		for range watchers {
			go func() {
				defer wg.Done()
				<-wake
				revs, _, _, err := s.History().Since(rev-1, 500)
				if err != nil || len(revs) == 0 {
					b.Error("watcher found no new revision", err)
				}
			}()
		}
		w := s.Begin(rev)
		if _, err := w.Register(inst("web", "a", uint16(n%60000+1)), int64(n)); err != nil {
			b.Fatal(err)
		}
		_ = w.Commit()
		wg.Wait()
	}
}

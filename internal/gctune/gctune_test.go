package gctune

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		live, headroom uint64
		want           int
	}{
		{live: 64 * mib, headroom: 256 * mib, want: 400},
		{live: 100 * mib, headroom: 256 * mib, want: 256},
		{live: 256 * mib, headroom: 256 * mib, want: 100},
		{live: 4 << 30, headroom: 256 * mib, want: 100},
		// Before the first collection the live heap reads 0: the first
		// collection still comes after about headroom bytes.
		{live: 0, headroom: 128 * mib, want: 3200},
		{live: 1, headroom: 128 * mib, want: 3200},
		{live: 12 * mib, headroom: 40 * mib, want: 333},
		{live: 10 * mib, headroom: 0, want: 100},
		{live: 1, headroom: math.MaxUint64, want: math.MaxInt32 / 2},
	} {
		if got := Percent(tt.live, tt.headroom); got != tt.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", tt.live, tt.headroom, got, tt.want)
		}
	}
}

// gogc reads the GOGC percentage in force.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestTunerFollowsTheLiveHeap: with a headroom far above the live heap
// GOGC rises, a collection after the live heap grew past the headroom
// brings it back to 100, and Stop restores what was there before.
func TestTunerFollowsTheLiveHeap(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	debug.SetGCPercent(150)

	tu := Start(1 << 30)
	runtime.GC()
	runtime.GC() // a cleanup runs after the collection that found its sentinel
	waitFor(t, func() bool { return gogc() > 1000 })
	if got := tu.Current(); got != gogc() {
		t.Fatalf("Current() = %d, GOGC in force %d", got, gogc())
	}

	// Grow the live heap past a small headroom: the next rounds set 100.
	tu.Stop()
	if got := gogc(); got != 150 {
		t.Fatalf("after Stop GOGC = %d, want the 150 in force before", got)
	}
	tu = Start(1 << 20)
	defer tu.Stop()
	live := make([][]byte, 0, 64)
	for range 64 {
		live = append(live, make([]byte, 64<<10))
	}
	runtime.GC()
	runtime.GC()
	waitFor(t, func() bool { return gogc() == 100 })
	runtime.KeepAlive(live)
}

// waitFor runs collections until cond holds: the tuner's cleanup runs on
// the runtime's cleanup goroutine after a collection, not inside it.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		runtime.GC()
		runtime.Gosched()
	}
	t.Fatalf("GOGC is %d after 1,000 collections", gogc())
}

// TestCollectsOnItsOwn: with the tuner on, garbage far beyond the headroom
// is collected without anyone calling runtime.GC.
func TestCollectsOnItsOwn(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	const headroom = 32 << 20
	tu := Start(headroom)
	defer tu.Stop()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gcs := ms.NumGC
	var sink []byte
	for range 16 * headroom / (64 << 10) {
		sink = make([]byte, 64<<10)
	}
	runtime.KeepAlive(sink)
	runtime.ReadMemStats(&ms)
	if ms.NumGC < gcs+4 {
		t.Fatalf("%d collections while %d MiB of garbage was made with %d MiB of headroom (GOGC %d)",
			ms.NumGC-gcs, 16*headroom>>20, headroom>>20, gogc())
	}
}

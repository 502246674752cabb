package liveheap

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// server serves what rosterd serves with --enable-pprof: Go's profiles and
// a registry with the Go collector.
func server(t *testing.T) *httptest.Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("/debug/pprof/heap", pprof.Handler("heap"))
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

var keep [][]byte

// TestMeasureSeesWhatIsKeptAndNotWhatIsGarbage: 64 MiB kept alive raises
// the figure by about that much; 64 MiB dropped does not.
func TestMeasureSeesWhatIsKeptAndNotWhatIsGarbage(t *testing.T) {
	s := server(t)
	ctx := context.Background()
	before, err := Measure(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	for range 64 {
		keep = append(keep, make([]byte, mib))
	}
	for range 64 {
		_ = make([]byte, mib)
	}
	after, err := Measure(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(keep)
	grew := after - before
	if grew < 60*mib || grew > 72*mib {
		t.Fatalf("the live heap grew by %d MiB with 64 MiB kept and 64 MiB dropped", grew/mib)
	}
	keep = nil
}

func TestMeasureSaysWhatIsMissing(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/debug/pprof/heap", pprof.Handler("heap"))
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("up 1\n")) })
	s := httptest.NewServer(mux)
	defer s.Close()
	if _, err := Measure(context.Background(), s.URL); err == nil || !strings.Contains(err.Error(), "no go_memstats_heap_alloc_bytes") {
		t.Fatalf("got %v, want an error naming the missing metric", err)
	}
	if _, err := Measure(context.Background(), s.URL+"/nowhere"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("got %v, want the 404", err)
	}
}

// Package liveheap reads how much a Go server's heap holds once its
// garbage is collected, through the two HTTP paths both rosterd (with
// --http-addr and --enable-pprof) and etcd (with pprof enabled) serve.
//
// A Go process's resident memory says as much about when it last collected
// as about what it keeps: with GOGC=100 its heap grows to twice what is
// live before a collection, and freed pages go back to the system slowly.
// The live heap does not depend on that timing, so benchmarks compare it.
package liveheap

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Measure makes the Go process serving base (http://HOST:PORT) collect its
// garbage, then returns the bytes its heap holds: net/http/pprof's heap
// profile runs runtime.GC first when asked with gc=1, and
// go_memstats_heap_alloc_bytes on /metrics (the Prometheus Go collector)
// is then the live objects plus what was allocated since.
func Measure(ctx context.Context, base string) (int64, error) {
	if _, err := get(ctx, base+"/debug/pprof/heap?gc=1"); err != nil {
		return 0, err
	}
	b, err := get(ctx, base+"/metrics")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "go_memstats_heap_alloc_bytes "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return 0, fmt.Errorf("GET %s/metrics: go_memstats_heap_alloc_bytes %q: %w", base, rest, err)
			}
			return int64(v), nil
		}
	}
	return 0, fmt.Errorf("GET %s/metrics: no go_memstats_heap_alloc_bytes", base)
}

func get(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}

// Here collects this process's garbage twice (objects with finalizers are
// freed by the second pass) and returns the bytes its heap then holds: the
// in-process counterpart of Measure, for Go benchmarks.
func Here() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

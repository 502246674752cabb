package httpapi

import (
	"fmt"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprometheus "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// mountMetrics serves /metrics from cfg.Metrics when the daemon gave one.
func (h *Handler) mountMetrics() {
	if h.cfg.Metrics == nil {
		return
	}
	h.mux.Handle("GET /metrics", promhttp.HandlerFor(h.cfg.Metrics, promhttp.HandlerOpts{
		ErrorLog:      metricsErrorLog{h},
		ErrorHandling: promhttp.ContinueOnError,
	}))
}

type metricsErrorLog struct{ h *Handler }

func (l metricsErrorLog) Println(v ...any) {
	l.h.logger.Warn("gathering metrics", "error", fmt.Sprint(v...))
}

var raftMetrics struct {
	once sync.Once
	sink prometheus.Collector
	err  error
}

// RaftMetrics routes hashicorp/raft's (and raft-boltdb's) go-metrics into a
// Prometheus collector and returns it, for the registry served on /metrics.
//
// go-metrics keeps one global sink per process, and raft emits to it
// without naming the node, so every node of a process feeds the same
// series: a daemon runs one node, and tests running several see their sum.
// The first call installs the sink (later calls return the same one); call
// it before the node starts so leadership changes at startup are counted.
// raft emits through go-metrics' compat package, which goes to armon's
// global by default and to hashicorp's with the hashicorpmetrics build tag;
// the sink comes from the same compat package, so it is the one raft feeds
// under either tag. Series are named roster_raft_<go-metrics key>, e.g.
// roster_raft_commitTime; timers are in seconds.
func RaftMetrics() (prometheus.Collector, error) {
	raftMetrics.once.Do(func() {
		sink, err := gmprometheus.NewPrometheusSinkFrom(gmprometheus.PrometheusOpts{
			// Raft's keys are a bounded set; a series that vanished after a
			// quiet minute would read as a gap, not as zero.
			Expiration: 0,
			// Registered by each caller in its own registry.
			Registerer: prometheus.NewRegistry(),
			Name:       "roster_raft_go_metrics",
		})
		if err != nil {
			raftMetrics.err = fmt.Errorf("go-metrics prometheus sink: %w", err)
			return
		}
		conf := gometrics.DefaultConfig("roster")
		conf.EnableHostname = false
		conf.EnableRuntimeMetrics = false // the Go collector covers the runtime
		conf.TimerGranularity = time.Second
		if _, err := gometrics.NewGlobal(conf, sink); err != nil {
			raftMetrics.err = fmt.Errorf("go-metrics global: %w", err)
			return
		}
		raftMetrics.sink = sink
	})
	return raftMetrics.sink, raftMetrics.err
}

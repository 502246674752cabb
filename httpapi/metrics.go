package httpapi

import (
	"fmt"
	"strings"
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
// roster_raft_commitTime; durations are in seconds, the ones raft emits in
// milliseconds included (see millisecondKeys).
func RaftMetrics() (prometheus.Collector, error) {
	raftMetrics.once.Do(func() {
		sink, conf, err := newRaftSink()
		if err != nil {
			raftMetrics.err = err
			return
		}
		if _, err := gometrics.NewGlobal(conf, sink); err != nil {
			raftMetrics.err = fmt.Errorf("go-metrics global: %w", err)
			return
		}
		raftMetrics.sink = sink
	})
	return raftMetrics.sink, raftMetrics.err
}

// metricsService is the go-metrics service name, the first part of every
// key a sink receives and the prefix of every series.
const metricsService = "roster"

// newRaftSink returns the Prometheus sink raft's go-metrics go to, and the
// go-metrics configuration to install it with.
func newRaftSink() (*secondsSink, *gometrics.Config, error) {
	sink, err := gmprometheus.NewPrometheusSinkFrom(gmprometheus.PrometheusOpts{
		// Raft's keys are a bounded set; a series that vanished after a
		// quiet minute would read as a gap, not as zero.
		Expiration: 0,
		// Registered by each caller in its own registry.
		Registerer: prometheus.NewRegistry(),
		Name:       "roster_raft_go_metrics",
	})
	if err != nil {
		return nil, nil, fmt.Errorf("go-metrics prometheus sink: %w", err)
	}
	conf := gometrics.DefaultConfig(metricsService)
	conf.EnableHostname = false
	conf.EnableRuntimeMetrics = false // the Go collector covers the runtime
	// Timers (MeasureSince) in seconds.
	conf.TimerGranularity = time.Second
	return &secondsSink{sink}, conf, nil
}

// millisecondKeys are the go-metrics keys (without the service name) that
// raft and raft-boltdb emit as plain samples or gauges counted in
// milliseconds, which TimerGranularity does not scale as it scales
// MeasureSince timers. secondsSink turns them into seconds, the unit of
// every other duration.
var millisecondKeys = map[string]bool{
	"raft.leader.lastContact":           true, // raft.go: AddSample(diff/time.Millisecond)
	"raft.leader.oldestLogAge":          true, // log.go: SetGauge(age in ms)
	"raft.boltdb.txstats.rebalanceTime": true, // raft-boltdb metrics.go: AddSample(ns/1e6)
	"raft.boltdb.txstats.spillTime":     true,
	"raft.boltdb.txstats.writeTime":     true,
}

// secondsSink is the Prometheus sink, with the samples and gauges of
// millisecondKeys divided by 1,000.
type secondsSink struct {
	*gmprometheus.PrometheusSink
}

// scale returns val in seconds when key is one of millisecondKeys.
func (s *secondsSink) scale(key []string, val float32) float32 {
	if len(key) > 0 && key[0] == metricsService {
		key = key[1:]
	}
	if millisecondKeys[strings.Join(key, ".")] {
		return val / 1000
	}
	return val
}

func (s *secondsSink) SetGauge(key []string, val float32) {
	s.PrometheusSink.SetGauge(key, s.scale(key, val))
}

func (s *secondsSink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.PrometheusSink.SetGaugeWithLabels(key, s.scale(key, val), labels)
}

func (s *secondsSink) AddSample(key []string, val float32) {
	s.PrometheusSink.AddSample(key, s.scale(key, val))
}

func (s *secondsSink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.PrometheusSink.AddSampleWithLabels(key, s.scale(key, val), labels)
}

package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/roster-registry/roster/httpapi"
)

// newMetrics returns the registry served on /metrics: the Go runtime and
// process, and Raft's go-metrics; the node's own collector is added once
// its server exists. Without --http-addr nothing serves it, and Raft's
// go-metrics are left on their no-op default.
func newMetrics(f *flags) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	if f.httpAddr == "" {
		return reg, nil
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	raft, err := httpapi.RaftMetrics()
	if err != nil {
		return nil, err
	}
	reg.MustRegister(raft)
	return reg, nil
}

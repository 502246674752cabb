package httpapi

import (
	"math"
	"testing"

	gometrics "github.com/hashicorp/go-metrics/compat"
	"github.com/prometheus/client_golang/prometheus"
)

// TestRaftMetricsInSeconds: the samples and gauges raft emits in
// milliseconds (leader.lastContact, leader.oldestLogAge) reach Prometheus
// in seconds, as the timers do; other values are left as they are.
func TestRaftMetricsInSeconds(t *testing.T) {
	sink, conf, err := newRaftSink()
	if err != nil {
		t.Fatal(err)
	}
	// A go-metrics instance of its own, not the process's global one that
	// raft nodes of other tests feed.
	m, err := gometrics.New(conf, sink)
	if err != nil {
		t.Fatal(err)
	}
	m.AddSample([]string{"raft", "leader", "lastContact"}, 1500)
	m.AddSample([]string{"raft", "leader", "lastContact"}, 500)
	m.SetGauge([]string{"raft", "leader", "oldestLogAge"}, 2500)
	m.AddSample([]string{"raft", "fsm", "applyBatchNum"}, 7)
	m.SetGauge([]string{"raft", "peers"}, 3)

	reg := prometheus.NewRegistry()
	reg.MustRegister(sink)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			switch {
			case m.Summary != nil:
				got[mf.GetName()+"_sum"] = m.Summary.GetSampleSum()
				got[mf.GetName()+"_count"] = float64(m.Summary.GetSampleCount())
			case m.Gauge != nil:
				got[mf.GetName()] = m.Gauge.GetValue()
			}
		}
	}
	for name, want := range map[string]float64{
		"roster_raft_leader_lastContact_sum":   2, // 1.5 s + 0.5 s
		"roster_raft_leader_lastContact_count": 2,
		"roster_raft_leader_oldestLogAge":      2.5,
		"roster_raft_fsm_applyBatchNum_sum":    7,
		"roster_raft_peers":                    3,
	} {
		v, ok := got[name]
		if !ok || math.Abs(v-want) > 1e-6 {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}

package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// The bench modes run briefly against real processes; the tests check that
// each prints a result that parses and holds positive figures, never how
// large they are.

func TestBenchWatchAndKeepAliveOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := StartCluster(t, 3)
	c.Leader()
	addrs := c.Addrs()

	var w struct {
		Ops           int64              `json:"ops"`
		OpsPerS       float64            `json:"ops_per_s"`
		Deliveries    int64              `json:"deliveries"`
		LatencyMS     map[string]float64 `json:"latency_ms"`
		LastWatcherMS map[string]float64 `json:"last_watcher_ms"`
	}
	c.MustJSON(&w, "--addr", addrs, "bench", "watch", "--watchers", "6", "--count", "10", "--duration", "0")
	if w.Ops != 10 || w.OpsPerS <= 0 || w.Deliveries != 60 || w.LastWatcherMS["p99"] <= 0 || w.LatencyMS["max"] <= 0 {
		t.Fatalf("watch result %+v", w)
	}

	var pids []string
	for _, p := range c.Procs {
		pids = append(pids, fmt.Sprint(p.PID()))
	}

	// Paced: every instance renewed once a second, the window longer than
	// the TTL, so an instance whose renewals were missed would expire and
	// leave the count.
	var paced struct {
		Ops             int64   `json:"ops"`
		Errors          int64   `json:"errors"`
		IntervalS       float64 `json:"interval_s"`
		InstancesBefore uint64  `json:"instances_before"`
		InstancesAfter  uint64  `json:"instances_after"`
	}
	c.MustJSON(&paced, "--addr", addrs, "bench", "keepalive", "--service", "paced", "--instances", "200", "--streams", "4",
		"--ttl", "5s", "--interval", "1s", "--duration", "8s", "--pids", strings.Join(pids, ","))
	if paced.IntervalS != 1 || paced.Ops < 200*6 || paced.Errors != 0 || paced.InstancesBefore < 200 || paced.InstancesAfter != paced.InstancesBefore {
		t.Fatalf("paced keepalive result %+v", paced)
	}
	var k struct {
		Ops         int64   `json:"ops"`
		OpsPerS     float64 `json:"ops_per_s"`
		RaftEntries *uint64 `json:"raft_entries"`
		LeaderCPU   float64 `json:"leader_cpu_cores"`
		LeaderPID   int     `json:"leader_pid"`
	}
	c.MustJSON(&k, "--addr", addrs, "bench", "keepalive", "--instances", "50", "--streams", "3", "--count", "500", "--duration", "0",
		"--pids", strings.Join(pids, ","))
	if k.Ops < 500 || k.OpsPerS <= 0 || k.RaftEntries == nil || k.LeaderPID == 0 || k.LeaderCPU < 0 {
		t.Fatalf("keepalive result %+v", k)
	}
}

// benchOwnCluster returns the rosterd binary and a Cluster with no nodes
// of its own, for bench modes that start their own (--local, failover).
func benchOwnCluster(t *testing.T) (string, *Cluster) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	rosterd, roster := Binaries(t)
	return rosterd, &Cluster{T: t, Roster: roster}
}

func TestBenchFailoverAndMemoryStartTheirOwnCluster(t *testing.T) {
	rosterd, c := benchOwnCluster(t)

	var f struct {
		Rounds    int                `json:"rounds"`
		RoundsMS  []float64          `json:"rounds_ms"`
		LatencyMS map[string]float64 `json:"latency_ms"`
	}
	c.MustJSON(&f, "bench", "failover", "--rosterd", rosterd, "--rounds", "2")
	if f.Rounds != 2 || len(f.RoundsMS) != 2 || f.LatencyMS["p50"] <= 0 || f.LatencyMS["max"] < f.LatencyMS["p50"] {
		t.Fatalf("failover result %+v", f)
	}

	var m struct {
		Instances int `json:"instances"`
		Nodes     []struct {
			PID   int `json:"pid"`
			After struct {
				Anon int64 `json:"anon_rss_bytes"`
			} `json:"after"`
			HeapBefore int64 `json:"live_heap_before_bytes"`
			HeapAfter  int64 `json:"live_heap_after_bytes"`
		} `json:"nodes"`
		OpsPerS         float64 `json:"ops_per_s"`
		RestoreMS       float64 `json:"restore_ms"`
		RestoredAnonRSS int64   `json:"restored_anon_rss_bytes"`
	}
	c.MustJSON(&m, "bench", "memory", "--local", "--rosterd", rosterd, "--instances", "300", "--clients", "8")
	if m.Instances != 300 || len(m.Nodes) != 3 || m.OpsPerS <= 0 || m.RestoreMS <= 0 || m.RestoredAnonRSS <= 0 {
		t.Fatalf("memory result %+v", m)
	}
	for _, n := range m.Nodes {
		// A local cluster also reports each node's live heap, read after
		// a collection forced over its HTTP address.
		if n.PID <= 0 || n.After.Anon <= 0 || n.HeapBefore <= 0 || n.HeapAfter <= 0 {
			t.Fatalf("memory of a node %+v", n)
		}
	}
}

// TestBenchWatchStartsReadReplicas: bench watch --local --replicas starts
// the voters and the read replicas itself, waits until the replicas have
// caught up (a replica's own join is committed but never applied to the
// registry, so a wait for the commit index would wait for ever), and puts
// the watchers on the replicas.
func TestBenchWatchStartsReadReplicas(t *testing.T) {
	rosterd, c := benchOwnCluster(t)
	var w struct {
		Ops        int64  `json:"ops"`
		Deliveries int64  `json:"deliveries"`
		Voters     int    `json:"voters"`
		Replicas   int    `json:"replicas"`
		WatchOn    string `json:"watch_on"`
		Layout     []struct {
			Role     string `json:"role"`
			Watchers int    `json:"watchers"`
		} `json:"layout"`
		WatchersFailed int `json:"watchers_failed"`
	}
	c.MustJSON(&w, "bench", "watch", "--local", "--rosterd", rosterd, "--replicas", "2", "--watchers", "20", "--conns", "2",
		"--count", "5", "--duration", "0")
	if w.Ops != 5 || w.Deliveries != 100 || w.Voters != 3 || w.Replicas != 2 || w.WatchOn != "replicas" || w.WatchersFailed != 0 {
		t.Fatalf("watch result %+v", w)
	}
	onReplicas := 0
	for _, n := range w.Layout {
		if n.Role == "replica" {
			onReplicas += n.Watchers
		} else if n.Watchers != 0 {
			t.Fatalf("watchers on a %s: %+v", n.Role, w.Layout)
		}
	}
	if onReplicas != 20 {
		t.Fatalf("%d watchers on the replicas, want 20: %+v", onReplicas, w.Layout)
	}
}

package rpc

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/store"
)

// serverMetrics are the metrics a Server records as calls happen. Each
// Server has its own, so several nodes in one process never share a
// series; everything else is read from the node when scraped.
type serverMetrics struct {
	calls     *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	forwarded *prometheus.CounterVec

	// watchers holds the position of every live watch stream: the last
	// revision its reader has handed on (sent, or skipped by its filter).
	watchers sync.Map // *atomic.Uint64 → struct{}
}

func newServerMetrics() *serverMetrics {
	return &serverMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roster_grpc_requests_total",
			Help: "gRPC calls this node answered, by method and status code; a stream counts when it ends.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "roster_grpc_request_duration_seconds",
			Help:    "Time to answer a unary gRPC call, by method and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "code"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roster_forwarded_calls_total",
			Help: "Calls this follower relayed to the leader, by method and the status code of the attempt; KeepAlive counts the upstream streams opened.",
		}, []string{"method", "code"}),
	}
}

// methodName is the label of a full gRPC method: "roster.v1.Registry/Register".
func methodName(full string) string { return strings.TrimPrefix(full, "/") }

func (s *Server) metricsUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m, code := methodName(info.FullMethod), status.Code(err).String()
	s.metrics.calls.WithLabelValues(m, code).Inc()
	s.metrics.latency.WithLabelValues(m, code).Observe(time.Since(start).Seconds())
	return resp, err
}

func (s *Server) metricsStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	s.metrics.calls.WithLabelValues(methodName(info.FullMethod), status.Code(err).String()).Inc()
	return err
}

// countForward records one relayed attempt of method (as called on the
// leader), or, when that is not known, of the call whose server context is
// ctx.
func (s *Server) countForward(ctx context.Context, method string, err error) {
	if method == "" {
		method, _ = grpc.Method(ctx)
	}
	s.metrics.forwarded.WithLabelValues(methodName(method), status.Code(err).String()).Inc()
}

// trackWatcher registers a watch stream's position for the lag metric;
// call the func when the stream ends.
func (s *Server) trackWatcher(pos *atomic.Uint64) func() {
	s.metrics.watchers.Store(pos, struct{}{})
	return func() { s.metrics.watchers.Delete(pos) }
}

// Collector returns this node's metrics: the calls it answered and relayed,
// and, read when scraped, its Raft role and indexes, FSM apply times,
// instances, leases and watch streams. Register it in the registry the
// daemon serves on /metrics (one per node).
func (s *Server) Collector() prometheus.Collector { return &nodeCollector{s: s} }

type nodeCollector struct{ s *Server }

var (
	descLeader = prometheus.NewDesc("roster_raft_leader",
		"1 while this node is the Raft leader, else 0.", nil, nil)
	descLeadership = prometheus.NewDesc("roster_raft_leadership_changes_total",
		"Leadership changes this node has seen since it started: gained or lost.", []string{"change"}, nil)
	descTerm = prometheus.NewDesc("roster_raft_term",
		"This node's current Raft term.", nil, nil)
	descCommit = prometheus.NewDesc("roster_raft_commit_index",
		"The Raft commit index this node knows.", nil, nil)
	descApplied = prometheus.NewDesc("roster_raft_applied_index",
		"The last Raft index this node's state machine applied.", nil, nil)
	descLastContact = prometheus.NewDesc("roster_raft_last_contact_seconds",
		"Time since this follower last heard from the leader (0 on the leader).", nil, nil)
	descRevision = prometheus.NewDesc("roster_store_revision",
		"The registry revision of this node's state.", nil, nil)
	descApply = prometheus.NewDesc("roster_fsm_apply_duration_seconds",
		"Time the state machine took to apply one command, by command type.", []string{"type"}, nil)
	descInstances = prometheus.NewDesc("roster_instances",
		"Registered instances in this node's state, by status: passing, warning, critical, or maintenance (disabled, whatever its health).", []string{"status"}, nil)
	descLeases = prometheus.NewDesc("roster_leases",
		"TTL leases this node runs: all of them on a ready leader, 0 elsewhere.", nil, nil)
	descHeld = prometheus.NewDesc("roster_lease_expiries_held",
		"Leases past their deadline whose expiry self-preservation holds (leader only).", nil, nil)
	descHeartbeats = prometheus.NewDesc("roster_heartbeats_total",
		"Lease renewals this node acknowledged as leader: Heartbeat, KeepAlive and ReportHealth.", nil, nil)
	descExpirations = prometheus.NewDesc("roster_lease_expirations_total",
		"Lease expiries this node committed as leader.", nil, nil)
	descAPHealthy = prometheus.NewDesc("roster_autopilot_healthy",
		"1 when autopilot on this leader finds every voter healthy (only the leader reports it).", nil, nil)
	descAPTolerance = prometheus.NewDesc("roster_autopilot_failure_tolerance",
		"Voters that may fail with the cluster still able to elect a leader, by autopilot on this leader.", nil, nil)
	descAPServer = prometheus.NewDesc("roster_autopilot_server_healthy",
		"1 when autopilot on this leader finds the server healthy; state is leader, voter, staging, non-voter or read-replica.", []string{"node_id", "state"}, nil)
	descAPRemoved = prometheus.NewDesc("roster_autopilot_servers_removed_total",
		"Failed servers autopilot removed while this node led.", nil, nil)
	descWatchers = prometheus.NewDesc("roster_watch_streams",
		"Watch and WatchMany streams open on this node.", nil, nil)
	descWatches = prometheus.NewDesc("roster_watches",
		"Watches open on this node: one per Watch stream, plus those WatchMany streams carry.", nil, nil)
	descCutoffs = prometheus.NewDesc("roster_watch_cutoffs_total",
		"Watch streams ended because their consumer fell too far behind.", nil, nil)
	descEncodings = prometheus.NewDesc("roster_watch_event_encodings_total",
		"Events encoded for watch streams (shared by every watcher receiving one).", nil, nil)
	descWatchLag = prometheus.NewDesc("roster_watch_lag_revisions",
		"How many revisions the slowest watch stream on this node trails this node's state.", nil, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	c.s.metrics.calls.Describe(ch)
	c.s.metrics.latency.Describe(ch)
	c.s.metrics.forwarded.Describe(ch)
	for _, d := range []*prometheus.Desc{descLeader, descLeadership, descTerm, descCommit, descApplied, descLastContact,
		descRevision, descApply, descInstances, descLeases, descHeld, descHeartbeats, descExpirations,
		descAPHealthy, descAPTolerance, descAPServer, descAPRemoved,
		descWatchers, descWatches, descCutoffs, descEncodings, descWatchLag} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.metrics.calls.Collect(ch)
	s.metrics.latency.Collect(ch)
	s.metrics.forwarded.Collect(ch)

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	node := s.node
	st := node.Status()
	leader := 0.0
	if node.IsLeader() {
		leader = 1
	}
	gauge(descLeader, leader)
	gauge(descTerm, float64(st.Term))
	gauge(descCommit, float64(st.CommitIndex))
	gauge(descApplied, float64(st.Applied))
	gauge(descLastContact, st.LastContact.Seconds())
	gauge(descRevision, float64(st.Revision))
	ns := node.Stats()
	counter(descLeadership, float64(ns.LeadershipGained), "gained")
	counter(descLeadership, float64(ns.LeadershipLost), "lost")
	gauge(descLeases, float64(ns.Leases))
	gauge(descHeld, float64(ns.HeldExpiries))
	counter(descHeartbeats, float64(ns.Heartbeats))
	counter(descExpirations, float64(ns.Expirations))
	counter(descAPRemoved, float64(ns.AutopilotRemovals))
	if ap, ok := node.AutopilotState(); ok {
		gauge(descAPHealthy, boolGauge(ap.Healthy))
		gauge(descAPTolerance, float64(ap.FailureTolerance))
		for id, srv := range ap.Servers {
			gauge(descAPServer, boolGauge(srv.Healthy), id, srv.State)
		}
	}

	for _, a := range node.ApplyStats() {
		buckets := make(map[float64]uint64, len(cluster.ApplyBuckets))
		for i, b := range cluster.ApplyBuckets {
			buckets[b] = a.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(descApply, a.Count, a.Sum, buckets, a.Type.String())
	}

	counts := map[string]int{"passing": 0, "warning": 0, "critical": 0, "maintenance": 0}
	_ = node.Store().View().Instances(func(inst *store.Instance) bool {
		counts[instanceStatus(inst)]++
		return true
	})
	for k, v := range counts {
		gauge(descInstances, float64(v), k)
	}

	ws := s.WatchStats()
	gauge(descWatchers, float64(ws.Streams))
	gauge(descWatches, float64(ws.Active))
	counter(descCutoffs, float64(ws.CutOff))
	counter(descEncodings, float64(ws.Encodings))
	head := st.Revision
	var lag uint64
	s.metrics.watchers.Range(func(k, _ any) bool {
		if p := k.(*atomic.Uint64).Load(); p < head {
			lag = max(lag, head-p)
		}
		return true
	})
	gauge(descWatchLag, float64(lag))
}

// instanceStatus is the status label of an instance.
func instanceStatus(inst *store.Instance) string {
	if !inst.Enabled {
		return "maintenance"
	}
	switch inst.Status {
	case store.HealthPassing:
		return "passing"
	case store.HealthWarning:
		return "warning"
	}
	return "critical"
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

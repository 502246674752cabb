package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/httpapi"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// serveMetrics starts nd's HTTP front end with a registry of its own, as
// the daemon builds one per node.
func serveMetrics(t *testing.T, nd *testcluster.Node) *httptest.Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(nd.Server.Collector())
	raft, err := httpapi.RaftMetrics()
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(raft)
	h, err := httpapi.New(httpapi.Config{Conn: nd.Conn, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// scrape parses GET url/metrics with Prometheus's text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// value returns the value of the series of family name whose labels
// include every pair of labels (name, value, ...), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// TestMetricsAfterTraffic registers, heartbeats, drains and watches through
// a follower, then checks every node's /metrics against what was done.
func TestMetricsAfterTraffic(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	leader := c.Leader()
	f := c.Followers()[0]
	srvs := map[*testcluster.Node]*httptest.Server{}
	for _, nd := range c.Nodes {
		srvs[nd] = serveMetrics(t, nd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A watcher on the follower, reading everything.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	stream, err := f.Registry().Watch(wctx, &rosterv1.WatchRequest{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()

	const registers = 6
	var rev uint64
	for i := range registers {
		resp, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
			Service: "web", Id: fmt.Sprintf("i%d", i), Address: "10.0.0.1", Port: uint32(8000 + i),
			Ttl: durationpb.New(time.Minute),
		}})
		if err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
		rev = resp.Header.Revision
	}
	const heartbeats = 4
	for range heartbeats {
		if _, err := f.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: "web", Id: "i0"}); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	mresp, err := f.Registry().SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{Service: "web", Id: "i1", Enabled: false, Reason: "drain"})
	if err != nil {
		t.Fatal(err)
	}
	rev = max(rev, mresp.Header.Revision)
	// A bad request, to see a non-OK code.
	if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{Service: "Bad Name", Id: "x"}}); err == nil {
		t.Fatal("a bad service name was accepted")
	}
	for _, nd := range c.Nodes {
		c.Eventually(nd.ID+" applies every write", 10*time.Second, func() bool { return nd.Node.Store().Revision() >= rev })
	}

	for _, nd := range c.Nodes {
		mfs := scrape(t, srvs[nd].URL)
		want := func(name string, v float64, labels ...string) {
			t.Helper()
			got, ok := value(mfs, name, labels...)
			if !ok || got != v {
				t.Errorf("%s: %s%v = %v (present %v), want %v", nd.ID, name, labels, got, ok, v)
			}
		}
		atLeast := func(name string, v float64, labels ...string) {
			t.Helper()
			got, ok := value(mfs, name, labels...)
			if !ok || got < v {
				t.Errorf("%s: %s%v = %v (present %v), want at least %v", nd.ID, name, labels, got, ok, v)
			}
		}
		isLeader := 0.0
		if nd == leader {
			isLeader = 1
		}
		want("roster_raft_leader", isLeader)
		want("roster_instances", registers-1, "status", "passing")
		want("roster_instances", 1, "status", "maintenance")
		want("roster_instances", 0, "status", "critical")
		atLeast("roster_fsm_apply_duration_seconds", registers, "type", "register")
		atLeast("roster_fsm_apply_duration_seconds", 1, "type", "set_maintenance")
		atLeast("roster_raft_applied_index", float64(rev))
		atLeast("roster_store_revision", float64(rev))
		for _, name := range []string{"roster_raft_term", "roster_raft_commit_index", "roster_raft_leadership_changes_total",
			"roster_leases", "roster_lease_expiries_held", "roster_heartbeats_total", "roster_lease_expirations_total",
			"roster_watch_streams", "roster_watches", "roster_watch_cutoffs_total", "roster_watch_lag_revisions"} {
			if mfs[name] == nil {
				t.Errorf("%s: no %s", nd.ID, name)
			}
		}
		switch nd {
		case leader:
			atLeast("roster_raft_leadership_changes_total", 1, "change", "gained")
			want("roster_leases", registers)
			want("roster_heartbeats_total", heartbeats)
			want("roster_lease_expirations_total", 0)
			// Forwarded writes arrive here.
			atLeast("roster_grpc_requests_total", registers, "method", "roster.v1.Registry/Register", "code", "OK")
			atLeast("roster_grpc_request_duration_seconds", registers, "method", "roster.v1.Registry/Register", "code", "OK")
		case f:
			want("roster_leases", 0)
			atLeast("roster_grpc_requests_total", registers, "method", "roster.v1.Registry/Register", "code", "OK")
			want("roster_grpc_requests_total", 1, "method", "roster.v1.Registry/Register", "code", "InvalidArgument")
			atLeast("roster_grpc_requests_total", heartbeats, "method", "roster.v1.Registry/Heartbeat", "code", "OK")
			atLeast("roster_forwarded_calls_total", registers, "method", "roster.v1.Registry/Register", "code", "OK")
			atLeast("roster_forwarded_calls_total", heartbeats, "method", "roster.v1.Registry/Heartbeat", "code", "OK")
			want("roster_watch_streams", 1)
			want("roster_watches", 1)
		}
		// Raft's own go-metrics, through the process-wide sink: commits
		// happened after it was installed, on the leader of this process.
		atLeast("roster_raft_commitTime", 1)
		atLeast("roster_raft_fsm_apply", 1)
	}

	// The watcher on the follower catches up: its lag returns to 0.
	c.Eventually("the watcher catches up", 10*time.Second, func() bool {
		v, ok := value(scrape(t, srvs[f].URL), "roster_watch_lag_revisions")
		return ok && v == 0
	})
}

// TestNoMetricsWithoutRegistry: a handler built without a registry serves
// no /metrics.
func TestNoMetricsWithoutRegistry(t *testing.T) {
	h, err := httpapi.New(httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("/metrics without a registry: %d", rec.Code)
	}
}

// TestPprofOnlyWhenAskedFor: /debug/pprof/ is served with Pprof set, and
// is the JSON 404 of an unknown path without it.
func TestPprofOnlyWhenAskedFor(t *testing.T) {
	for _, on := range []bool{false, true} {
		h, err := httpapi.New(httpapi.Config{Pprof: on})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			if rec.Code != want {
				t.Fatalf("Pprof %v: GET %s = %d, want %d", on, path, rec.Code, want)
			}
			if on && path == "/debug/pprof/goroutine?debug=1" && !strings.Contains(rec.Body.String(), "goroutine profile:") {
				t.Fatalf("goroutine profile body %.200q", rec.Body.String())
			}
		}
	}
}

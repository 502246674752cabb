package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestRosterdMetricsAndDNS runs a real rosterd --dev with HTTP and DNS on
// free ports: /metrics parses and counts what was done, Raft's own
// go-metrics reach it (its first election included), DNS answers over UDP
// and TCP, and SIGTERM still ends the process cleanly.
func TestRosterdMetricsAndDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	rosterd, roster := Binaries(t)
	ports := FreePorts(t, 3)
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	p := &Proc{ID: "dev", GRPC: grpcAddr, LogPath: t.TempDir() + "/dev.log", rosterd: rosterd, t: t,
		args: []string{"--dev", "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--dns-addr", dnsAddr}}
	p.Start()
	c := &Cluster{T: t, Roster: roster, Procs: []*Proc{p}}
	c.killOnCleanup(40)
	c.Leader()

	for i, ip := range []string{"10.9.0.1", "10.9.0.2"} {
		var out struct{ Revision uint64 }
		c.MustJSON(&out, "--addr", grpcAddr, "register", "api", fmt.Sprintf("a%d", i), ip+":7000")
	}

	for _, network := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion("api.service.roster.", dns.TypeA)
		r, _, err := (&dns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(m, dnsAddr)
		if err != nil {
			t.Fatalf("DNS over %s: %v", network, err)
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
			t.Fatalf("DNS over %s: %s %v", network, dns.RcodeToString[r.Rcode], r.Answer)
		}
	}

	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	p2 := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p2.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	get := func(name string, labels ...string) float64 {
		t.Helper()
		mf := mfs[name]
		if mf == nil {
			t.Fatalf("/metrics has no %s", name)
		}
	next:
		for _, m := range mf.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Summary != nil:
				return float64(m.Summary.GetSampleCount())
			}
		}
		t.Fatalf("/metrics has no %s%v", name, labels)
		return 0
	}
	if v := get("roster_raft_leader"); v != 1 {
		t.Fatalf("roster_raft_leader = %v on the only node", v)
	}
	if v := get("roster_raft_state_leader"); v < 1 {
		t.Fatalf("raft's go-metrics counted %v elections won", v)
	}
	if v := get("roster_raft_commitTime"); v < 2 {
		t.Fatalf("raft's commitTime has %v samples after two writes", v)
	}
	if v := get("roster_grpc_requests_total", "method", "roster.v1.Registry/Register", "code", "OK"); v != 2 {
		t.Fatalf("Register calls = %v, want 2", v)
	}
	// DNS queries are GetService calls on the in-process connection.
	if v := get("roster_grpc_requests_total", "method", "roster.v1.Registry/GetService", "code", "OK"); v < 2 {
		t.Fatalf("GetService calls = %v, want at least the 2 DNS queries", v)
	}
	if v := get("roster_instances", "status", "passing"); v != 2 {
		t.Fatalf("passing instances = %v, want 2", v)
	}
	get("go_goroutines")
	get("process_open_fds")

	// A dev node has no Raft listener; what reports a Raft address gives
	// its gRPC address, which a client can reach.
	for path, want := range map[string]string{"/v1/status/leader": `"` + grpcAddr + `"`, "/v1/status/peers": `["` + grpcAddr + `"]`} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != want {
			t.Fatalf("GET %s: %d %q %v; want 200 %s", path, resp.StatusCode, body, err, want)
		}
	}

	if err := p.Terminate(15 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, lp := range m.Label {
		if lp.GetName() == name && lp.GetValue() == value {
			return true
		}
	}
	return false
}

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// promTargets is the part of Prometheus' /api/v1/targets answer we read.
type promTargets struct {
	Data struct {
		ActiveTargets []struct {
			DiscoveredLabels map[string]string `json:"discoveredLabels"`
			Labels           map[string]string `json:"labels"`
			ScrapePool       string            `json:"scrapePool"`
			Health           string            `json:"health"`
			LastError        string            `json:"lastError"`
		} `json:"activeTargets"`
	} `json:"data"`
}

// prometheusWithConsulSD returns a Prometheus server binary that supports
// consul_sd_configs: $ROSTER_PROMETHEUS, else prometheus on the PATH. The
// test is skipped, saying why, when there is none. Debian's package
// (bookworm, 2.42.0+ds) is built with Consul SD disabled; its promtool
// refuses the config, which is how this tells.
func prometheusWithConsulSD(t *testing.T) string {
	t.Helper()
	prom := os.Getenv("ROSTER_PROMETHEUS")
	if prom == "" {
		var err error
		if prom, err = exec.LookPath("prometheus"); err != nil {
			t.Skip("SKIP: no prometheus binary (Debian: apt-get install prometheus; scripts/test.sh installs it when it can; or set ROSTER_PROMETHEUS)")
		}
	}
	promtool := filepath.Join(filepath.Dir(prom), "promtool")
	if _, err := os.Stat(promtool); err != nil {
		return prom // nothing to ask; the test reports what Prometheus says
	}
	cfg := filepath.Join(t.TempDir(), "probe.yml")
	probe := "scrape_configs:\n  - job_name: probe\n    consul_sd_configs:\n      - server: 127.0.0.1:8500\n"
	if err := os.WriteFile(cfg, []byte(probe), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "config", cfg).CombinedOutput()
	if err != nil && strings.Contains(string(out), "consul_sd_configs") {
		v, _ := exec.Command(prom, "--version").CombinedOutput()
		first, _, _ := strings.Cut(string(v), "\n")
		t.Skipf("SKIP: %s (%s) is built without Consul service discovery (Debian disables it); "+
			"set ROSTER_PROMETHEUS to an upstream build, e.g. go install github.com/prometheus/prometheus/cmd/prometheus@v0.316.0", prom, first)
	}
	return prom
}

// TestPrometheusConsulSD runs a real Prometheus server whose
// consul_sd_configs point at a follower's HTTP front end: the instances
// registered through the Consul API become scrape targets (and go away
// when deregistered). It also scrapes every node's /metrics.
func TestPrometheusConsulSD(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	prom := prometheusWithConsulSD(t)
	c, httpAddrs := httpCluster(t)
	fi := c.follower()
	cc := consulClientAt(t, httpAddrs[fi])

	// Two real targets with something to scrape.
	var targets []string
	for i := range 2 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "# TYPE demo_up gauge\ndemo_up{instance_no=\"%d\"} 1\n", i)
		}))
		t.Cleanup(srv.Close)
		addr := strings.TrimPrefix(srv.URL, "http://")
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		if err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{
			ID: fmt.Sprintf("demo-%d", i), Name: "demo", Address: host, Port: p, Tags: []string{"prom"},
			Meta: map[string]string{"team": "core"},
		}); err != nil {
			t.Fatal(err)
		}
		targets = append(targets, addr)
	}
	demo1 := targets[1]

	// Every node serves /metrics; Prometheus scrapes it too.
	for _, a := range httpAddrs {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET http://%s/metrics: %s", a, resp.Status)
		}
	}

	dir := t.TempDir()
	promAddr := "127.0.0.1:" + strconv.Itoa(FreePorts(t, 1)[0])
	quoted := make([]string, len(httpAddrs))
	for i, a := range httpAddrs {
		quoted[i] = strconv.Quote(a)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: consul-sd
    consul_sd_configs:
      - server: %q
        services: [demo]
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_consul_service_metadata_team]
        target_label: team
  - job_name: roster
    static_configs:
      - targets: [%s]
`, httpAddrs[fi], strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(prom, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("--- last lines of prometheus' log:\n%s", strings.Join(lines, "\n"))
		}
	})

	read := func() (promTargets, bool) {
		var pt promTargets
		resp, err := http.Get("http://" + promAddr + "/api/v1/targets")
		if err != nil {
			return pt, false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return pt, resp.StatusCode == http.StatusOK && json.Unmarshal(b, &pt) == nil
	}
	// up returns the addresses of job's targets that Prometheus scraped.
	up := func(pt promTargets, job string) []string {
		var out []string
		for _, at := range pt.Data.ActiveTargets {
			if at.ScrapePool == job && at.Health == "up" {
				out = append(out, at.Labels["instance"])
			}
		}
		slices.Sort(out)
		return out
	}
	slices.Sort(targets)
	var last promTargets
	c.Eventually("Prometheus to discover and scrape both registered targets", 90*time.Second, func() bool {
		pt, ok := read()
		last = pt
		return ok && slices.Equal(up(pt, "consul-sd"), targets)
	})
	for _, at := range last.Data.ActiveTargets {
		if at.ScrapePool != "consul-sd" {
			continue
		}
		d := at.DiscoveredLabels
		if d["__meta_consul_service"] != "demo" || !strings.Contains(d["__meta_consul_tags"], ",prom,") ||
			at.Labels["team"] != "core" || d["__meta_consul_dc"] != "dc1" || d["__meta_consul_health"] != "passing" {
			t.Fatalf("target labels: discovered %v, labels %v", d, at.Labels)
		}
	}
	want := slices.Clone(httpAddrs)
	slices.Sort(want)
	c.Eventually("Prometheus to scrape every node's /metrics", 60*time.Second, func() bool {
		pt, ok := read()
		return ok && slices.Equal(up(pt, "roster"), want)
	})

	// A deregistered instance leaves the targets.
	if err := cc.Agent().ServiceDeregister("demo-0"); err != nil {
		t.Fatal(err)
	}
	c.Eventually("the deregistered target to go", 90*time.Second, func() bool {
		pt, ok := read()
		return ok && slices.Equal(up(pt, "consul-sd"), []string{demo1})
	})
}

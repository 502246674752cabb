package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromiumPath finds a Chromium to drive: $ROSTER_CHROMIUM, or Debian's
// chromium on the PATH.
func chromiumPath() string {
	if p := os.Getenv("ROSTER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser drives one headless Chromium tab against the console.
type browser struct {
	t   *testing.T
	c   *Cluster
	ctx context.Context
	art string
}

// run runs actions with a bound, failing the test on error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// until waits (bounded, generously) until the JavaScript expression js is
// true in the page. On a timeout it logs what the page shows and saves a
// screenshot of it.
func (b *browser) until(what string, timeout time.Duration, js string) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Logf("page text:\n%s", b.text("body"))
			b.screenshot("failed")
			b.t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// text returns the text of the element sel ("" when absent).
func (b *browser) text(sel string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q)||{}).textContent||""`, sel)))
	return strings.TrimSpace(s)
}

// screenshot saves the viewport as name.png in the artefact directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.art, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// startHTTPCluster starts three rosterd processes with --http-addr and
// extra flags, and returns them with each node's HTTP base URL.
func startHTTPCluster(t *testing.T, extra ...string) (*Cluster, map[string]string) {
	t.Helper()
	rosterd, roster := Binaries(t)
	ports := FreePorts(t, 9)
	base := t.TempDir()
	c := &Cluster{T: t, Roster: roster}
	var initial []string
	httpAddr := map[string]string{}
	for i := 0; i < 3; i++ {
		p := newProc(t, rosterd, base, ports, i)
		httpAddr[p.ID] = fmt.Sprintf("http://127.0.0.1:%d", ports[6+i])
		initial = append(initial, p.ID+"="+p.Raft)
		c.Procs = append(c.Procs, p)
	}
	for _, p := range c.Procs {
		p.args = append([]string{"--node-id", p.ID, "--data-dir", p.DataDir, "--grpc-addr", p.GRPC, "--raft-addr", p.Raft,
			"--initial-cluster", strings.Join(initial, ","), "--http-addr", strings.TrimPrefix(httpAddr[p.ID], "http://")}, extra...)
		p.Start()
	}
	c.killOnCleanup(40)
	return c, httpAddr
}

// newBrowser starts headless Chromium, or skips the test (saying why)
// when there is none. Screenshots go to $ROSTER_ARTIFACTS, or a directory
// under the test's temp dir.
func newBrowser(t *testing.T, c *Cluster) *browser {
	t.Helper()
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("SKIP: no chromium binary (Debian: apt-get install chromium; scripts/test.sh installs it when it can; or set ROSTER_CHROMIUM)")
	}
	art := os.Getenv("ROSTER_ARTIFACTS")
	if art == "" {
		art = filepath.Join(t.TempDir(), "artifacts")
	}
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1440, 900))...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first action starts the browser, tied to the context it runs
	// with: run it on ctx itself, not on a context with a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium (%s): %v", chrome, err)
	}
	return &browser{t: t, c: c, ctx: ctx, art: art}
}

// TestConsoleInChromium drives the web console in headless Chromium
// against three rosterd processes: opened on a follower it shows the
// leader; an instance registered through the API appears without a
// reload; draining it from the console takes it out of the healthy list;
// when its node is down it says it is reconnecting and then resumes; after
// the leader is killed the console shows the new one. Screenshots
// go to $ROSTER_ARTIFACTS, or a directory under the test's temp dir.
func TestConsoleInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and a browser")
	}
	if chromiumPath() == "" {
		t.Skip("SKIP: no chromium binary (Debian: apt-get install chromium; scripts/test.sh installs it when it can; or set ROSTER_CHROMIUM)")
	}
	c, httpAddr := startHTTPCluster(t)
	leader := c.Leader()
	var follower, other *Proc
	for _, p := range c.Procs {
		if p != leader && follower == nil {
			follower = p
		} else if p != leader {
			other = p
		}
	}
	api := httpAddr[other.ID]
	c.Eventually("every node to know every member's API address", 30*time.Second, func() bool {
		code, body, _, ok := httpJSON("GET", httpAddr[follower.ID]+"/api/v1/members?include_status=true", "")
		if !ok || code != http.StatusOK {
			return false
		}
		ms, _ := body["members"].([]any)
		for _, m := range ms {
			if m.(map[string]any)["status"] == nil {
				return false
			}
		}
		return len(ms) == 3
	})

	// Some services to look at: a few instances each, some unhealthy.
	register := func(ns, svc, id string, port int, extra string) {
		t.Helper()
		body := fmt.Sprintf(`{"instance": {"namespace": %q, "service": %q, "id": %q, "address": "10.0.%d.%d", "port": %d, "zone": "zone-%c", "tags": ["v2", "http"], "metadata": {"version": "1.4.%d"}, "ttl": "600s"%s}}`,
			ns, svc, id, port%7, port%200, port, 'a'+rune(port%3), port%5, extra)
		if code, _, raw, ok := httpJSON("POST", api+"/api/v1/instances", body); !ok || code != http.StatusOK {
			t.Fatalf("register %s/%s/%s: %d %s", ns, svc, id, code, raw)
		}
	}
	for i, svc := range []string{"web", "api", "payments", "search", "auth", "billing", "mail", "images"} {
		for j := 0; j < 2+i%3; j++ {
			register("default", svc, fmt.Sprintf("%s-%d", svc, j+1), 8000+10*i+j, "")
		}
	}
	register("staging", "web", "web-1", 9000, "")
	register("staging", "api", "api-1", 9001, "")
	health := func(svc, id, status, reason string) {
		body := fmt.Sprintf(`{"status": %q, "reason": %q}`, status, reason)
		if code, _, raw, ok := httpJSON("PUT", api+"/api/v1/services/default/"+svc+"/instances/"+id+"/health", body); !ok || code != http.StatusOK {
			t.Fatalf("report health of %s: %d %s", id, code, raw)
		}
	}
	health("payments", "payments-2", "HEALTH_STATUS_CRITICAL", "connection refused on :8021")
	health("web", "web-2", "HEALTH_STATUS_WARNING", "p99 latency 870ms")

	b := newBrowser(t, c)
	ui := httpAddr[follower.ID] + "/ui/"

	// 1. The cluster page on a follower shows the leader.
	b.run("open the cluster page", chromedp.Navigate(ui+"#/cluster"))
	b.until("the cluster page to show leader "+leader.ID, 60*time.Second,
		fmt.Sprintf(`(document.querySelector("#leader-id")||{}).textContent === %q && document.querySelectorAll("#members tr[data-node]").length === 3`, leader.ID))
	if got := b.text("#node-id"); got != follower.ID {
		t.Fatalf("the console on %s says it is node %q", follower.ID, got)
	}
	b.until("the leader history to list the leader", 30*time.Second,
		fmt.Sprintf(`(document.querySelector("#leader-changes")||{textContent:""}).textContent.includes(%q)`, leader.ID))
	b.screenshot("console-cluster")

	// 2. The services page lists every service with its counts.
	b.run("open the services page", chromedp.Navigate(ui+"#/services"))
	b.until("the services list, live", 30*time.Second, `!!document.querySelector('.vrow[data-key="default/payments"]') && !!document.querySelector('.vrow[data-key="staging/api"]') && document.querySelector("#feed-state").dataset.state === "live"`)
	b.screenshot("console-services")
	// Search narrows the list.
	b.run("search", chromedp.SendKeys(chromedp.CSS("#svc-search"), "pay"))
	b.until("the search to leave one service", 30*time.Second, `document.querySelectorAll(".vrow").length === 1 && !!document.querySelector('.vrow[data-key="default/payments"]')`)

	// 3. The service page: an instance registered through the API appears
	// without a reload.
	b.run("open the service page", chromedp.Navigate(ui+"#/service/default/web"))
	b.until("the web instances", 30*time.Second, `!!document.querySelector('.vrow[data-key="web-1"]') && document.querySelector("#feed-state").dataset.state === "live"`)
	b.until("the page to take a mark", 10*time.Second, `window.__sameDocument = true`)
	register("default", "web", "web-new", 8100, "")
	b.until("web-new to appear live", 30*time.Second, `!!document.querySelector('.vrow[data-key="web-new"]') && window.__sameDocument === true`)
	b.screenshot("console-service")

	// 4. Draining it from the console takes it out of the healthy list.
	b.run("drain web-new", chromedp.Click(chromedp.CSS(`.vrow[data-key="web-new"] button[data-action="drain"]`)))
	b.until("web-new to show drained", 30*time.Second, `(document.querySelector('.vrow[data-key="web-new"]')||{dataset:{}}).dataset.enabled === "false"`)
	b.run("show healthy only", chromedp.Click(chromedp.CSS(`#filter-healthy`)))
	b.until("web-new to leave the healthy list", 30*time.Second,
		`!document.querySelector('.vrow[data-key="web-new"]') && !!document.querySelector('.vrow[data-key="web-1"]') && document.querySelector("#count-healthy").textContent === "1"`)
	code, body, raw, _ := httpJSON("GET", api+"/api/v1/services/default/web?healthy_only=true", "")
	if code != http.StatusOK || strings.Contains(raw, "web-new") {
		t.Fatalf("the API still lists web-new as healthy after the console drained it: %d %v", code, body)
	}

	// 5. The node the console talks to goes away: the page says it is
	// reconnecting; once the node is back the feed resumes where it
	// stopped and shows what changed meanwhile.
	b.run("show every instance", chromedp.Click(chromedp.CSS(`#filter-all`)))
	follower.Kill()
	b.until("the console to say it is reconnecting", 30*time.Second, `document.querySelector("#feed-state").dataset.state === "reconnecting" && document.querySelector("#feed-state").textContent.includes("reconnecting")`)
	b.screenshot("console-reconnecting")
	register("default", "web", "web-while-away", 8101, "")
	follower.Start()
	b.until("the feed to resume and show web-while-away", 60*time.Second,
		`document.querySelector("#feed-state").dataset.state === "live" && !!document.querySelector('.vrow[data-key="web-while-away"]') && window.__sameDocument === true`)

	// 6. Kill the leader: the cluster page on the follower shows the new one.
	b.run("open the cluster page", chromedp.Navigate(ui+"#/cluster"))
	b.until("the cluster page", 30*time.Second, fmt.Sprintf(`(document.querySelector("#leader-id")||{}).textContent === %q`, leader.ID))
	leader.Kill()
	b.until("the console to show a new leader", 60*time.Second, fmt.Sprintf(
		`(function(){ const t = (document.querySelector("#leader-id")||{}).textContent || ""; return t !== "" && t !== %q && t !== "none"; })()`, leader.ID))
	newLeader := b.text("#leader-id")
	if newLeader != follower.ID && newLeader != other.ID {
		t.Fatalf("the console shows leader %q, not a live node", newLeader)
	}
	b.until("the leader history to list the new leader", 30*time.Second,
		fmt.Sprintf(`(document.querySelector("#leader-changes")||{textContent:""}).textContent.includes(%q)`, newLeader))
	b.screenshot("console-cluster-after-failover")
	t.Logf("leader %s killed; the console on %s shows %s; screenshots in %s", leader.ID, follower.ID, newLeader, b.art)
}

// httpWithToken sends method url with body and Authorization: Bearer
// secret, and returns the status and body.
func httpWithToken(method, url, secret, body string) (int, string, bool) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", false
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), true
}

// TestConsoleTokens: with --acl, the console without a token shows the
// server's refusal; a token entered once is sent on every call, the watch
// feed included; an action the token may not do shows the server's
// message and changes nothing.
func TestConsoleTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and a browser")
	}
	if chromiumPath() == "" {
		t.Skip("SKIP: no chromium binary (Debian: apt-get install chromium; scripts/test.sh installs it when it can; or set ROSTER_CHROMIUM)")
	}
	const mgmt = "console-test-management-secret"
	c, httpAddr := startHTTPCluster(t, "--acl", "--acl-bootstrap-token", mgmt)
	leader := c.Leader()
	var follower *Proc
	for _, p := range c.Procs {
		if p != leader {
			follower = p
			break
		}
	}
	var tok struct {
		SecretID string `json:"secret_id"`
	}
	c.Eventually("the management token to work", 30*time.Second, func() bool {
		stdout, _, code := c.CLI("--addr", leader.GRPC, "--token", mgmt, "acl", "token", "create", "--rule", "service::read", "-o", "json")
		return code == 0 && json.Unmarshal([]byte(stdout), &tok) == nil && tok.SecretID != ""
	})
	api := httpAddr[follower.ID]
	reg := `{"instance": {"service": "web", "id": "web-1", "address": "10.0.0.1", "port": 80}}`
	if code, raw, ok := httpWithToken("POST", api+"/api/v1/instances", mgmt, reg); !ok || code != http.StatusOK {
		t.Fatalf("register with the management token: %d %s", code, raw)
	}
	c.Eventually("the read token to reach the follower", 30*time.Second, func() bool {
		code, _, ok := httpWithToken("GET", api+"/api/v1/services/default/web", tok.SecretID, "")
		return ok && code == http.StatusOK
	})

	b := newBrowser(t, c)
	b.run("open the service page", chromedp.Navigate(api+"/ui/#/service/default/web"))
	// The refusal takes the list's place: an empty list would read as "no
	// instances".
	b.until("the refusal of an anonymous watch", 30*time.Second,
		`!!document.querySelector("#inst-refused") && document.querySelector("#inst-refused").textContent.includes("permission denied")`)

	b.run("enter the token",
		chromedp.Click(chromedp.CSS("#token-button")),
		chromedp.SendKeys(chromedp.CSS("#token-input"), tok.SecretID),
		chromedp.Click(chromedp.CSS("#token-save")))
	b.until("the instances, live, with the token", 30*time.Second,
		`!!document.querySelector('.vrow[data-key="web-1"]') && document.querySelector("#feed-state").dataset.state === "live" && sessionStorage.getItem("roster-token") !== ""`)

	b.run("try to drain web-1", chromedp.Click(chromedp.CSS(`.vrow[data-key="web-1"] button[data-action="drain"]`)))
	b.until("the server's refusal", 30*time.Second,
		`!document.querySelector("#alert").hidden && document.querySelector("#alert-text").textContent.includes("lacks service:web:write")`)
	b.screenshot("console-denied")
	if code, raw, _ := httpWithToken("GET", api+"/api/v1/services/default/web", mgmt, ""); code != http.StatusOK || !strings.Contains(raw, `"enabled":true`) {
		t.Fatalf("web-1 after a refused drain: %d %s", code, raw)
	}
}

// TestConsoleAtScale: with 10,000 services and a service of 10,000
// instances the pages hold only the rows in view, and scrolling (or End)
// reaches the last one.
func TestConsoleAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and a browser")
	}
	if chromiumPath() == "" {
		t.Skip("SKIP: no chromium binary (Debian: apt-get install chromium; scripts/test.sh installs it when it can; or set ROSTER_CHROMIUM)")
	}
	const n = 10000
	// 20,000 registrations from one client as fast as the cluster takes
	// them: the per-client write limit (1,000/s, burst 2,000) is not what
	// this test is about.
	c, httpAddr := startHTTPCluster(t, "--rate-limit=0")
	leader := c.Leader()
	api := httpAddr[leader.ID]
	jobs := make(chan string)
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		go func() {
			var err error
			for body := range jobs {
				if err != nil {
					continue
				}
				if code, _, raw, ok := httpJSON("POST", api+"/api/v1/instances", body); !ok || code != http.StatusOK {
					err = fmt.Errorf("register: %d %s", code, raw)
				}
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- fmt.Sprintf(`{"instance": {"service": "svc-%05d", "id": "a", "address": "10.1.%d.%d", "port": 80}}`, i, i/250, i%250)
		jobs <- fmt.Sprintf(`{"instance": {"service": "big", "id": "i-%05d", "address": "10.2.%d.%d", "port": 80, "tags": ["t%d"]}}`, i, i/250, i%250, i%10)
	}
	close(jobs)
	for w := 0; w < 32; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	b := newBrowser(t, c)
	ui := api + "/ui/"
	b.run("open the services page", chromedp.Navigate(ui+"#/services"))
	b.until("10,001 services listed", 60*time.Second, `document.querySelector("#svc-count").textContent.startsWith("10001 of 10001")`)
	b.until("only the rows in view rendered", 10*time.Second, `document.querySelectorAll(".vrow").length > 5 && document.querySelectorAll(".vrow").length < 200`)
	b.run("jump to the end", chromedp.Focus(chromedp.CSS(".vlist")), chromedp.KeyEvent(kb.End))
	b.until("the last service in view", 30*time.Second, `!!document.querySelector('.vrow[data-key="default/svc-09999"]') && document.querySelectorAll(".vrow").length < 200`)

	b.run("open the big service", chromedp.Navigate(ui+"#/service/default/big"))
	b.until("10,000 instances", 60*time.Second, `document.querySelector("#count-all").textContent === "10000" && document.querySelector("#feed-state").dataset.state === "live"`)
	b.until("only the rows in view rendered", 10*time.Second, `document.querySelectorAll(".vrow").length > 3 && document.querySelectorAll(".vrow").length < 100`)
	b.until("the list to scroll to the end", 10*time.Second, `(function(){ const l = document.querySelector(".vlist"); l.scrollTop = l.scrollHeight; return true; })()`)
	b.until("the last instance in view", 30*time.Second, `!!document.querySelector('.vrow[data-key="i-09999"]') && document.querySelectorAll(".vrow").length < 100`)
	b.run("search", chromedp.SendKeys(chromedp.CSS("#inst-search"), "i-0424"))
	b.until("the search to narrow the list", 30*time.Second, `document.querySelectorAll(".vrow").length === 10 && !!document.querySelector('.vrow[data-key="i-04240"]')`)
	b.screenshot("console-service-10000")
}

package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/roster-registry/roster/httpapi"
	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/rpc"
)

// The console driven in headless Chromium against the in-memory cluster,
// for what only a browser shows: its connections and what the page says.
// The tests skip without a chromium binary ($ROSTER_CHROMIUM, or chromium
// on the PATH); internal/e2e drives it against real processes.

// console is one headless Chromium tab.
type console struct {
	t     *testing.T
	ctx   context.Context
	close func()
}

// newConsole starts headless Chromium, or skips the test when there is none.
func newConsole(t *testing.T) *console {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a browser")
	}
	chrome := os.Getenv("ROSTER_CHROMIUM")
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if chrome != "" {
			break
		}
		chrome, _ = exec.LookPath(name)
	}
	if chrome == "" {
		t.Skip("SKIP: no chromium binary (apt-get install chromium, or set ROSTER_CHROMIUM)")
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU)...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	closeBrowser := func() { cancelCtx(); cancelAlloc() }
	t.Cleanup(closeBrowser)
	// The first action starts the browser, tied to the context it runs
	// with: run it on ctx itself, not on a context with a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium (%s): %v", chrome, err)
	}
	return &console{t: t, ctx: ctx, close: closeBrowser}
}

// open loads url with token (if any) in the tab's session storage. The
// browser closes before what the test started after newConsole (the
// server it talks to would otherwise wait for its open streams).
func (c *console) open(url, token string) {
	c.t.Helper()
	c.t.Cleanup(c.close)
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		c.t.Fatalf("open %s: %v", url, err)
	}
	if token != "" {
		c.eval(fmt.Sprintf(`sessionStorage.setItem("roster-token", %q); route(); true`, token))
	}
}

// eval evaluates js in the page.
func (c *console) eval(js string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
	if err != nil {
		c.t.Fatalf("evaluate %s: %v", js, err)
	}
	return fmt.Sprint(v)
}

// until polls, with a deadline, until the expression js is true in the page.
func (c *console) until(what, js string) {
	c.t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			c.t.Fatalf("timed out waiting for %s (%v); the page shows:\n%s", what, err, c.eval(`document.body.innerText`))
		}
	}
}

// watchCounter counts the watch streams open on a handler and the most
// open at once.
type watchCounter struct {
	h http.Handler

	mu        sync.Mutex
	open, top int
}

func (w *watchCounter) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, httpapi.APIPrefix+"watch") {
		w.h.ServeHTTP(rw, r)
		return
	}
	w.mu.Lock()
	w.open++
	w.top = max(w.top, w.open)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.open--
		w.mu.Unlock()
	}()
	w.h.ServeHTTP(rw, r)
}

func (w *watchCounter) counts() (open, top int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.open, w.top
}

// TestConsoleServicesPageHoldsOneStream: with more namespaces than a
// browser's six HTTP/1.1 connections per host, the services page watches
// them all over one stream: the page's other calls still answer, a change
// in any namespace shows without a reload, and no more than one watch
// stream is ever open.
func TestConsoleServicesPageHoldsOneStream(t *testing.T) {
	b := newConsole(t)
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitLeader()
	f := c.Followers()[0]
	h, err := httpapi.New(httpapi.Config{Conn: f.Conn})
	if err != nil {
		t.Fatal(err)
	}
	wc := &watchCounter{h: h}
	srv := httptest.NewServer(wc)
	t.Cleanup(srv.Close)
	register := func(ns, svc string) {
		t.Helper()
		call(t, "POST", srv.URL+"/api/v1/instances", `{"instance": {"namespace": "`+ns+`", "service": "`+svc+`", "id": "i-1", "address": "10.0.0.1", "port": 80}}`).must(t, http.StatusOK)
	}
	for i := 1; i <= 9; i++ {
		register(fmt.Sprintf("ns%d", i), "svc")
	}
	b.open(srv.URL+"/ui/#/services", "")
	b.until("the services listed and the feed live", `document.querySelector("#svc-count").textContent === "9 of 9 services" && document.querySelector("#feed-state").dataset.state === "live"`)
	b.eval(`window.statusAnswer = ""; api("GET", "/status").then(s => { window.statusAnswer = "ok " + s.node_id }, e => { window.statusAnswer = e.message }); true`)
	b.until("the page's /status call to answer", `window.statusAnswer.startsWith("ok ")`)
	register("ns3", "other")
	b.until("a change in ns3 to show without a reload", `document.querySelector("#svc-count").textContent === "10 of 10 services"`)
	if open, top := wc.counts(); open != 1 || top > 1 {
		t.Fatalf("%d watch streams open (at most %d at once), want 1", open, top)
	}
	if note := b.eval(`document.querySelector("#svc-live").hidden`); note != "true" {
		t.Fatalf("the page says some namespaces are not live: %s", b.eval(`document.querySelector("#svc-live").textContent`))
	}
}

// TestConsoleRefusedServiceWatch: a token that may not read the service
// gets the refusal in place of the list, not "reconnecting…" above an
// empty "No instances match.", and the page stops asking.
func TestConsoleRefusedServiceWatch(t *testing.T) {
	b := newConsole(t)
	_, _, ro, base := aclAPI(t)
	b.open(base+"/ui/#/service/default/secret", ro)
	b.until("the refusal shown", `!!document.querySelector("#inst-refused") && document.querySelector("#inst-refused").textContent.includes("403")`)
	if got := b.eval(`[document.querySelector(".vlist").hidden, document.querySelector("#feed-state").dataset.state, feeds.size].join(" ")`); got != "true idle 0" {
		t.Fatalf("list hidden, header state, feeds open: %q, want %q", got, "true idle 0")
	}
	if txt := b.eval(`document.querySelector("#main").innerText`); strings.Contains(txt, "No instances match") {
		t.Fatalf("the page shows an empty list: %s", txt)
	}
}

// TestConsoleSaysNoLeader: the service page's watch requires a leader, so
// on a node cut off from the others the header says "no leader" instead
// of "live", and "live" again once the node is back.
func TestConsoleSaysNoLeader(t *testing.T) {
	b := newConsole(t)
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
		o.Watch.LeaderlessTimeout = 300 * time.Millisecond
	}})
	c.WaitLeader()
	f := c.Followers()[0]
	base := serve(t, f).URL
	b.open(base+"/ui/#/service/default/web", "")
	b.until("the feed live", `document.querySelector("#feed-state").dataset.state === "live"`)
	c.Partition(f)
	b.until("the header to say no leader", `document.querySelector("#feed-state").dataset.state === "no-leader" && document.querySelector("#feed-state").textContent.includes("no leader")`)
	c.Heal()
	b.until("the feed live again", `document.querySelector("#feed-state").dataset.state === "live"`)
}

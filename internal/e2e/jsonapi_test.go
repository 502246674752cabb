package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// httpJSON sends method url with body (none when empty) and returns the
// status and the decoded JSON answer; ok is false when no answer came.
func httpJSON(method, url, body string) (code int, out map[string]any, raw string, ok bool) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, "", false
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, "", false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, "", false
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return resp.StatusCode, nil, string(b), true
	}
	return resp.StatusCode, out, string(b), true
}

// TestHTTPReadyAndJSONAPI starts three rosterd processes with --http-addr:
// while only one of the three --initial-cluster nodes runs there is no
// leader and /ready answers 503 with a reason; once the others start it
// answers 200; then an instance registered through one follower's JSON
// API is read back through the other follower's.
func TestHTTPReadyAndJSONAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
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
		p.args = []string{"--node-id", p.ID, "--data-dir", p.DataDir, "--grpc-addr", p.GRPC, "--raft-addr", p.Raft,
			"--initial-cluster", strings.Join(initial, ","), "--http-addr", strings.TrimPrefix(httpAddr[p.ID], "http://")}
	}
	c.killOnCleanup(40)

	n1 := c.Procs[0]
	n1.Start()
	var code int
	var body map[string]any
	c.Eventually("n1 to answer /ready", 30*time.Second, func() bool {
		var ok bool
		code, body, _, ok = httpJSON("GET", httpAddr["n1"]+"/ready", "")
		return ok
	})
	if code != http.StatusServiceUnavailable || body["ready"] != false || body["reason"] == "" {
		t.Fatalf("/ready of a lone node of three: %d %v", code, body)
	}
	if code, body, _, _ := httpJSON("GET", httpAddr["n1"]+"/health", ""); code != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("/health: %d %v", code, body)
	}
	// A write without a quorum fails with a reason instead of hanging.
	code, body, raw, ok := httpJSON("POST", httpAddr["n1"]+"/api/v1/instances",
		`{"instance": {"service": "web", "id": "early", "address": "10.0.0.9", "port": 80}}`)
	if !ok || code != http.StatusServiceUnavailable || body["status"] != "UNAVAILABLE" {
		t.Fatalf("write without a leader: %d %s", code, raw)
	}

	c.Procs[1].Start()
	c.Procs[2].Start()
	for _, p := range c.Procs {
		c.Eventually(p.ID+"'s /ready to answer 200", 30*time.Second, func() bool {
			code, _, _, _ := httpJSON("GET", httpAddr[p.ID]+"/ready", "")
			return code == http.StatusOK
		})
	}
	leader := c.Leader()
	var followers []string
	for _, p := range c.Procs {
		if p != leader {
			followers = append(followers, httpAddr[p.ID])
		}
	}

	code, body, raw, _ = httpJSON("PUT", followers[0]+"/api/v1/services/default/web/instances/web-1",
		`{"address": "10.0.0.1", "port": 8080, "tags": ["v1"], "ttl": "30s"}`)
	if code != http.StatusOK || body["revision"] == nil {
		t.Fatalf("register through follower %s: %d %s", followers[0], code, raw)
	}
	rev := body["revision"].(string)
	code, body, raw, _ = httpJSON("GET", followers[1]+"/api/v1/services/default/web?consistency=stale&min_revision="+rev, "")
	if code != http.StatusOK {
		t.Fatalf("get through follower %s: %d %s", followers[1], code, raw)
	}
	insts, _ := body["instances"].([]any)
	if len(insts) != 1 || insts[0].(map[string]any)["id"] != "web-1" || insts[0].(map[string]any)["address"] != "10.0.0.1" {
		t.Fatalf("get through follower %s: %s", followers[1], raw)
	}
	code, body, raw, _ = httpJSON("GET", followers[1]+"/api/v1/status", "")
	if code != http.StatusOK || body["state"] != "follower" || body["leader_id"] != leader.ID {
		t.Fatalf("status of a follower: %d %s", code, raw)
	}
	if code, _, raw, _ := httpJSON("DELETE", followers[1]+"/api/v1/services/default/web/instances/web-1", ""); code != http.StatusOK {
		t.Fatalf("deregister through follower: %d %s", code, raw)
	}
}

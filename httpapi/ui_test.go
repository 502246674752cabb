package httpapi_test

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/roster-registry/roster/internal/testcluster"
)

// TestUIServed: the console's files are served from the binary under /ui/
// with their content types, /ui redirects there, an unknown file is 404,
// and the JSON API it relies on still answers beside it.
func TestUIServed(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	srv := serve(t, c.Followers()[0])

	for _, tc := range []struct {
		path, file, contentType string
	}{
		{"/ui/", "ui/index.html", "text/html"},
		{"/ui/index.html", "", ""}, // FileServer redirects index.html to the directory
		{"/ui/app.js", "ui/app.js", "text/javascript"},
		{"/ui/app.css", "ui/app.css", "text/css"},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.file == "" {
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", tc.path, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
			t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.contentType)
		}
		if resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: headers %v", tc.path, resp.Header)
		}
		// What is served is the file in the tree, embedded in the binary.
		want, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		if string(body) != string(want) {
			t.Errorf("GET %s: body differs from %s", tc.path, tc.file)
		}
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(srv.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET /ui: %d to %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = http.Get(srv.URL + "/ui/no-such-file.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /ui/no-such-file.js: %d, want 404", resp.StatusCode)
	}
	resp, err = http.Post(srv.URL+"/ui/app.js", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("POST /ui/app.js: 200, want a refusal")
	}
}

// TestConsoleEndpoints: what the console reads beyond the plain API: the
// members' own statuses, the leader history, and counts by status.
func TestConsoleEndpoints(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	leader := c.WaitLeader()
	srv := serve(t, c.Followers()[0])

	code, body := get(t, srv.URL+"/api/v1/members?include_status=true")
	if code != http.StatusOK {
		t.Fatalf("members: %d %v", code, body)
	}
	ms, _ := body["members"].([]any)
	if len(ms) != 3 {
		t.Fatalf("members: %v", body)
	}
	for _, m := range ms {
		m := m.(map[string]any)
		st, _ := m["status"].(map[string]any)
		if st == nil || st["node_id"] != m["node_id"] || st["leader_id"] != leader.ID {
			t.Fatalf("member %v: status %v", m["node_id"], m["status"])
		}
	}
	code, body = get(t, srv.URL+"/api/v1/status")
	lcs, _ := body["leader_changes"].([]any)
	if code != http.StatusOK || len(lcs) == 0 || body["started_at"] == nil {
		t.Fatalf("status: %d %v", code, body)
	}
	if last := lcs[len(lcs)-1].(map[string]any); last["leader_id"] != leader.ID {
		t.Fatalf("last leader change %v, want %s", last, leader.ID)
	}

	reg := `{"instance": {"service": "web", "id": "a", "address": "10.0.0.1", "port": 80}}`
	for _, id := range []string{"a", "b"} {
		resp, err := http.Post(srv.URL+"/api/v1/instances", "application/json", strings.NewReader(strings.Replace(reg, `"a"`, `"`+id+`"`, 1)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("register %s: %d", id, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("PUT", srv.URL+"/api/v1/services/default/web/instances/b/maintenance", strings.NewReader(`{"enabled": false}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, body = get(t, srv.URL+"/api/v1/services")
	svcs, _ := body["services"].([]any)
	if code != http.StatusOK || len(svcs) != 1 {
		t.Fatalf("services: %d %v", code, body)
	}
	s := svcs[0].(map[string]any)
	if s["instances"] != 2.0 || s["passing"] != 1.0 || s["drained"] != 1.0 || s["warning"] != 0.0 || s["critical"] != 0.0 {
		t.Fatalf("summary %v, want 2 instances, 1 passing, 1 drained", s)
	}
}

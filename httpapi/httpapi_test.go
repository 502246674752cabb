package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/roster-registry/roster/httpapi"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// serve starts nd's HTTP front end on a loopback port.
func serve(t *testing.T, nd *testcluster.Node) *httptest.Server {
	t.Helper()
	h, err := httpapi.New(httpapi.Config{Conn: nd.Conn, ReadyTimeout: 500 * time.Millisecond, Draining: nd.Server.Draining()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// get returns the status code and the decoded JSON body of GET url.
func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("GET %s: %d, body %q is not JSON: %v", url, resp.StatusCode, b, err)
	}
	return resp.StatusCode, body
}

// TestReadyFollowsTheLeader: /ready is 200 on a follower while the
// cluster has a leader, and 503 with a reason once it has none; /health
// stays 200 throughout.
func TestReadyFollowsTheLeader(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	f := c.Followers()[0]
	srv := serve(t, f)
	c.Eventually("the follower is ready", 10*time.Second, func() bool {
		code, _ := get(t, srv.URL+"/ready")
		return code == http.StatusOK
	})
	code, body := get(t, srv.URL+"/ready")
	if code != http.StatusOK || body["ready"] != true || body["leader_id"] == "" {
		t.Fatalf("/ready: %d %v", code, body)
	}
	for _, nd := range c.Nodes {
		if nd != f {
			c.Stop(nd)
		}
	}
	// Once its leader is gone for good, the reason says so (while the
	// follower still believes in it, that the leader did not confirm).
	c.Eventually("the follower stops being ready, for want of a leader", 20*time.Second, func() bool {
		code, body := get(t, srv.URL+"/ready")
		return code == http.StatusServiceUnavailable && body["reason"] == "no leader known"
	})
	code, body = get(t, srv.URL+"/ready")
	if code != http.StatusServiceUnavailable || body["ready"] != false || body["reason"] != "no leader known" {
		t.Fatalf("/ready without a leader: %d %v", code, body)
	}
	if code, body := get(t, srv.URL+"/health"); code != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("/health: %d %v", code, body)
	}
}

// TestUnknownPathIsAJSON404: a path no front end serves gets a JSON 404
// that says where the APIs are.
func TestUnknownPathIsAJSON404(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	srv := serve(t, c.Nodes[0])
	code, body := get(t, srv.URL+"/nope")
	if code != http.StatusNotFound || body["status"] != "NOT_FOUND" || !strings.Contains(body["message"].(string), "/nope") {
		t.Fatalf("GET /nope: %d %v", code, body)
	}
}

// TestARemovedFollowerIsNeitherHealthyNorReady: once a follower knows it
// was removed from the cluster (roster remove-node), /health and /ready
// answer 503 saying so: it serves nothing until it is restarted and joins
// again. The leader stays healthy and ready.
func TestARemovedFollowerIsNeitherHealthyNorReady(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	leader, gone := c.WaitLeader(), c.Followers()[0]
	srv, leaderSrv := serve(t, gone), serve(t, leader)
	if code, body := get(t, srv.URL+"/health"); code != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("/health before the removal: %d %v", code, body)
	}
	if _, err := leader.Cluster().RemoveNode(testcluster.Ctx(t), &rosterv1.RemoveNodeRequest{NodeId: gone.ID}); err != nil {
		t.Fatal(err)
	}
	// It knows once it has the configuration without it and, no longer
	// hearing from the leader, knows no leader.
	c.Eventually("the removed follower to learn its removal", 10*time.Second, func() bool { return gone.Node.Status().State == "removed" })
	const reason = "this node was removed from the cluster; restart it with --join to rejoin"
	if code, body := get(t, srv.URL+"/health"); code != http.StatusServiceUnavailable || body["status"] != "removed" || body["reason"] != reason {
		t.Fatalf("/health of the removed follower: %d %v; want 503, status removed, reason %q", code, body, reason)
	}
	if code, body := get(t, srv.URL+"/ready"); code != http.StatusServiceUnavailable || body["ready"] != false || body["reason"] != reason {
		t.Fatalf("/ready of the removed follower: %d %v; want 503, reason %q", code, body, reason)
	}
	if code, body := get(t, leaderSrv.URL+"/health"); code != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("/health of the leader: %d %v", code, body)
	}
	if code, body := get(t, leaderSrv.URL+"/ready"); code != http.StatusOK || body["ready"] != true {
		t.Fatalf("/ready of the leader: %d %v", code, body)
	}
}

package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// reply is one HTTP answer of the JSON API.
type reply struct {
	code int
	body map[string]any
	raw  string
}

// call sends method url with body (JSON text, or none when empty) and
// decodes the JSON answer; an answer that is not JSON fails the test.
func call(t *testing.T, method, url, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{code: resp.StatusCode, raw: string(b)}
	if err := json.Unmarshal(b, &r.body); err != nil {
		t.Fatalf("%s %s: %d, body %q is not JSON: %v", method, url, resp.StatusCode, b, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: Content-Type %q", method, url, ct)
	}
	return r
}

// must requires code and returns the body.
func (r reply) must(t *testing.T, code int) map[string]any {
	t.Helper()
	if r.code != code {
		t.Fatalf("want HTTP %d, got %d: %s", code, r.code, r.raw)
	}
	return r.body
}

// num reads a protojson number, which 64-bit fields carry as a string.
func num(t *testing.T, v any) uint64 {
	t.Helper()
	switch n := v.(type) {
	case string:
		u, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			t.Fatalf("not a number: %q", n)
		}
		return u
	case float64:
		return uint64(n)
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}

// instances returns the instances of a GetService body by id.
func instances(t *testing.T, body map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	list, _ := body["instances"].([]any)
	for _, v := range list {
		inst := v.(map[string]any)
		out[inst["id"].(string)] = inst
	}
	return out
}

// TestJSONAPIThroughFollowers drives every JSON endpoint through the HTTP
// front ends of the two followers (writes are forwarded to the leader) and
// checks each effect on the leader's own state.
func TestJSONAPIThroughFollowers(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	leader := c.WaitLeader()
	fs := c.Followers()
	a, b := serve(t, fs[0]).URL+"/api/v1", serve(t, fs[1]).URL+"/api/v1"
	ctx := testcluster.Ctx(t)

	// Register with the whole request in the body.
	r := call(t, "POST", a+"/instances", `{"instance": {"namespace": "default", "service": "web", "id": "web-1",
		"address": "10.0.0.1", "port": 8080, "tags": ["v1"], "metadata": {"env": "prod"}, "ttl": "30s"},
		"request_id": "reg-web-1"}`).must(t, http.StatusOK)
	rev1 := num(t, r["revision"])
	if rev1 == 0 {
		t.Fatalf("register: no revision: %v", r)
	}
	// The write was forwarded: the header is the leader's.
	if h := r["header"].(map[string]any); h["leader_id"] != leader.ID {
		t.Fatalf("register header: %v", h)
	}
	// Register with the key in the path and the instance as the body.
	r = call(t, "PUT", b+"/services/default/web/instances/web-2?request_id=reg-web-2",
		`{"address": "10.0.0.2", "port": 8080, "zone": "b"}`).must(t, http.StatusOK)
	rev2 := num(t, r["revision"])
	if rev2 <= rev1 {
		t.Fatalf("second register revision %d after %d", rev2, rev1)
	}
	// A repeated request id is answered with the first result.
	r = call(t, "PUT", b+"/services/default/web/instances/web-2?request_id=reg-web-2",
		`{"address": "10.0.0.2", "port": 8080, "zone": "b"}`).must(t, http.StatusOK)
	if got := num(t, r["revision"]); got != rev2 {
		t.Fatalf("repeated request id: revision %d, want %d", got, rev2)
	}

	st, err := leader.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Namespace: "default", Service: "web"})
	if err != nil || len(st.Instances) != 2 {
		t.Fatalf("leader's view: %v %v", st, err)
	}

	// Get, on the other follower, at least at the revision written.
	r = call(t, "GET", a+"/services/default/web?min_revision="+strconv.FormatUint(rev2, 10)+"&consistency=stale", "").must(t, http.StatusOK)
	got := instances(t, r)
	if len(got) != 2 || got["web-1"]["address"] != "10.0.0.1" || got["web-2"]["zone"] != "b" ||
		got["web-1"]["ttl"] != "30s" || got["web-1"]["metadata"].(map[string]any)["env"] != "prod" {
		t.Fatalf("get: %v", r)
	}
	// Filters: tags, zone, metadata.
	if got := instances(t, call(t, "GET", b+"/services/default/web?tags=v1", "").must(t, http.StatusOK)); len(got) != 1 || got["web-1"] == nil {
		t.Fatalf("tags=v1: %v", got)
	}
	if got := instances(t, call(t, "GET", b+"/services/default/web?zone=b", "").must(t, http.StatusOK)); len(got) != 1 || got["web-2"] == nil {
		t.Fatalf("zone=b: %v", got)
	}
	if got := instances(t, call(t, "GET", b+"/services/default/web?metadata%5Benv%5D=prod", "").must(t, http.StatusOK)); len(got) != 1 || got["web-1"] == nil {
		t.Fatalf("metadata[env]=prod: %v", got)
	}

	// List: every namespace, and one.
	for _, url := range []string{a + "/services", a + "/services/default", b + "/services?namespace=default"} {
		r = call(t, "GET", url, "").must(t, http.StatusOK)
		svcs := r["services"].([]any)
		if len(svcs) != 1 || svcs[0].(map[string]any)["service"] != "web" || num(t, svcs[0].(map[string]any)["instances"]) != 2 {
			t.Fatalf("list %s: %v", url, r)
		}
	}
	if r := call(t, "GET", a+"/services/other", "").must(t, http.StatusOK); len(r["services"].([]any)) != 0 {
		t.Fatalf("list of an empty namespace: %v", r)
	}

	// Heartbeat, by POST and by PUT, renews the TTL lease.
	for _, m := range []string{"POST", "PUT"} {
		r = call(t, m, b+"/services/default/web/instances/web-1/heartbeat", "").must(t, http.StatusOK)
		if r["ttl"] != "30s" || r["id"] != "web-1" {
			t.Fatalf("heartbeat %s: %v", m, r)
		}
	}
	// web-2 has no lease: FailedPrecondition is 400 with the reason.
	r = call(t, "POST", b+"/services/default/web/instances/web-2/heartbeat", "").must(t, http.StatusBadRequest)
	if r["status"] != "FAILED_PRECONDITION" || r["message"] == "" {
		t.Fatalf("heartbeat without a lease: %v", r)
	}

	// ReportHealth: the instance's own verdict, through a follower.
	r = call(t, "PUT", b+"/services/default/web/instances/web-1/health",
		`{"status": "HEALTH_STATUS_WARNING", "reason": "disk 91% full"}`).must(t, http.StatusOK)
	revH := num(t, r["revision"])
	r = call(t, "GET", a+"/services/default/web?min_revision="+strconv.FormatUint(revH, 10), "").must(t, http.StatusOK)
	if w1 := instances(t, r)["web-1"]; w1["status"] != "HEALTH_STATUS_WARNING" || w1["status_reason"] != "disk 91% full" {
		t.Fatalf("after a reported warning: %v", w1)
	}
	r = call(t, "POST", b+"/services/default/web/instances/web-1/health", `{"status": "HEALTH_STATUS_PASSING"}`).must(t, http.StatusOK)
	if num(t, r["revision"]) <= revH {
		t.Fatalf("reported passing wrote no change: %v", r)
	}
	r = call(t, "PUT", b+"/services/default/web/instances/web-2/health", `{"status": "HEALTH_STATUS_CRITICAL"}`).must(t, http.StatusBadRequest)
	if r["status"] != "FAILED_PRECONDITION" {
		t.Fatalf("health of an instance without a lease: %v", r)
	}

	// Maintenance drains an instance; healthy_only then leaves it out.
	r = call(t, "PUT", a+"/services/default/web/instances/web-1/maintenance",
		`{"enabled": false, "reason": "deploy"}`).must(t, http.StatusOK)
	revM := num(t, r["revision"])
	r = call(t, "GET", b+"/services/default/web?min_revision="+strconv.FormatUint(revM, 10), "").must(t, http.StatusOK)
	if w1 := instances(t, r)["web-1"]; w1["enabled"] != false || w1["maintenance_reason"] != "deploy" {
		t.Fatalf("after maintenance: %v", w1)
	}
	if got := instances(t, call(t, "GET", b+"/services/default/web?healthy_only=true", "").must(t, http.StatusOK)); len(got) != 1 || got["web-2"] == nil {
		t.Fatalf("healthy_only during maintenance: %v", got)
	}
	call(t, "POST", b+"/services/default/web/instances/web-1/maintenance", `{"enabled": true}`).must(t, http.StatusOK)
	if got := instances(t, call(t, "GET", a+"/services/default/web?healthy_only=true", "").must(t, http.StatusOK)); len(got) != 2 {
		t.Fatalf("healthy_only after maintenance: %v", got)
	}

	// Deregister; a second time it is NotFound, with the reason.
	r = call(t, "DELETE", b+"/services/default/web/instances/web-2?request_id=dereg-web-2", "").must(t, http.StatusOK)
	revD := num(t, r["revision"])
	if got := instances(t, call(t, "GET", a+"/services/default/web", "").must(t, http.StatusOK)); len(got) != 1 || got["web-2"] != nil {
		t.Fatalf("after deregister: %v", got)
	}
	r = call(t, "DELETE", a+"/services/default/web/instances/web-2", "").must(t, http.StatusNotFound)
	if r["code"] != float64(5) || r["status"] != "NOT_FOUND" || !strings.Contains(r["message"].(string), "not found") ||
		!strings.Contains(mustJSON(t, r["details"]), `"reason":"NOT_FOUND"`) {
		t.Fatalf("second deregister: %v", r)
	}
	if got, err := leader.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Namespace: "default", Service: "web"}); err != nil ||
		len(got.Instances) != 1 || got.Header.Revision < revD {
		t.Fatalf("leader after deregister: %v %v", got, err)
	}

	// Status and members.
	r = call(t, "GET", a+"/status?consistency=linearizable", "").must(t, http.StatusOK)
	if r["node_id"] != fs[0].ID || r["leader_id"] != leader.ID || r["state"] != "follower" || num(t, r["revision"]) < revD {
		t.Fatalf("status: %v", r)
	}
	c.WaitMembersKnown()
	r = call(t, "GET", b+"/members", "").must(t, http.StatusOK)
	ms := r["members"].([]any)
	leaders := 0
	for _, m := range ms {
		if m.(map[string]any)["leader"] == true {
			leaders++
			if m.(map[string]any)["node_id"] != leader.ID {
				t.Fatalf("members: wrong leader: %v", m)
			}
		}
	}
	if len(ms) != 3 || leaders != 1 {
		t.Fatalf("members: %v", r)
	}
}

// TestJSONAPIBadInput: every malformed or invalid request is answered
// with a 4xx status and a JSON body that says what is wrong, and changes
// nothing.
func TestJSONAPIBadInput(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	leader := c.WaitLeader()
	f := c.Followers()[0]
	api := serve(t, f).URL + "/api/v1"
	ctx := testcluster.Ctx(t)
	call(t, "POST", api+"/instances", `{"instance": {"service": "web", "id": "keep", "address": "10.0.0.9", "port": 1}}`).must(t, http.StatusOK)
	before, err := leader.Cluster().Status(ctx, &rosterv1.StatusRequest{Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE}})
	if err != nil {
		t.Fatal(err)
	}

	big := `{"instance": {"service": "web", "id": "big", "address": "10.0.0.1", "port": 1, "metadata": {"x": "` +
		strings.Repeat("a", 5<<20) + `"}}}`
	cases := []struct {
		name, method, path, body string
		code                     int
		status, want             string
	}{
		{"truncated JSON", "POST", "/instances", `{"instance": {"service": "web"`, 400, "INVALID_ARGUMENT", "invalid JSON body for RegisterRequest"},
		{"not JSON", "POST", "/instances", `service=web`, 400, "INVALID_ARGUMENT", "invalid JSON body"},
		{"unknown field", "POST", "/instances", `{"instance": {"service": "web", "id": "x", "adress": "10.0.0.1"}}`, 400, "INVALID_ARGUMENT", `unknown field "adress"`},
		{"wrong type", "POST", "/instances", `{"instance": {"service": "web", "id": "x", "port": "eighty"}}`, 400, "INVALID_ARGUMENT", "invalid JSON body"},
		{"no instance", "POST", "/instances", `{}`, 400, "INVALID_ARGUMENT", "instance"},
		{"bad service name", "POST", "/instances", `{"instance": {"service": "Web_1", "id": "x", "address": "10.0.0.1", "port": 1}}`, 400, "INVALID_ARGUMENT", "lowercase DNS label"},
		{"bad name in path", "PUT", "/services/default/Web_1/instances/x", `{"address": "10.0.0.1", "port": 1}`, 400, "INVALID_ARGUMENT", "lowercase DNS label"},
		{"bad ttl", "PUT", "/services/default/web/instances/x", `{"address": "10.0.0.1", "port": 1, "ttl": "soon"}`, 400, "INVALID_ARGUMENT", "invalid JSON body"},
		{"body too large", "POST", "/instances", big, 413, "INVALID_ARGUMENT", "request body larger than"},
		{"unknown query parameter", "GET", "/services/default/web?healty_only=true", "", 400, "INVALID_ARGUMENT", `unknown query parameter "healty_only"`},
		{"bad consistency", "GET", "/services/default/web?consistency=eventual", "", 400, "INVALID_ARGUMENT", "want linearizable or stale"},
		{"bad min_revision", "GET", "/services/default/web?min_revision=latest", "", 400, "INVALID_ARGUMENT", "min_revision"},
		{"bad request id", "DELETE", "/services/default/web/instances/keep?request_id=%01", "", 400, "INVALID_ARGUMENT", "request id"},
		{"heartbeat unknown", "POST", "/services/default/web/instances/nobody/heartbeat", "", 404, "NOT_FOUND", "not found"},
		{"maintenance unknown", "PUT", "/services/default/web/instances/nobody/maintenance", `{"enabled": false}`, 404, "NOT_FOUND", "not found"},
		{"deregister unknown", "DELETE", "/services/default/web/instances/nobody", "", 404, "NOT_FOUND", "not found"},
		{"unknown path", "GET", "/nothing/here", "", 404, "NOT_FOUND", "no such endpoint: GET /api/v1/nothing/here"},
		{"wrong method", "PATCH", "/services/default/web", "", 405, "UNIMPLEMENTED", "method PATCH not allowed"},
		{"watch by POST", "POST", "/watch", "", 405, "UNIMPLEMENTED", "method POST not allowed"},
		{"watch bad name", "GET", "/watch?service=Web_1", "", 400, "INVALID_ARGUMENT", "lowercase DNS label"},
		{"watch unknown parameter", "GET", "/watch?servce=web", "", 400, "INVALID_ARGUMENT", `unknown query parameter "servce"`},
		{"watch bad start_revision", "GET", "/watch?start_revision=-1", "", 400, "INVALID_ARGUMENT", "start_revision"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, tc.method, api+tc.path, tc.body)
			if r.code != tc.code || r.body["status"] != tc.status || !strings.Contains(r.body["message"].(string), tc.want) {
				t.Fatalf("want %d %s with %q, got %d: %.500s", tc.code, tc.status, tc.want, r.code, r.raw)
			}
			if _, ok := r.body["details"].([]any); !ok {
				t.Fatalf("no details list: %.500s", r.raw)
			}
		})
	}
	t.Run("bad Last-Event-ID", func(t *testing.T) {
		req, _ := http.NewRequest("GET", api+"/watch?service=web", nil)
		req.Header.Set("Last-Event-ID", "yesterday")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !bytes.Contains(b, []byte("Last-Event-ID")) {
			t.Fatalf("got %d %s", resp.StatusCode, b)
		}
	})

	after, err := leader.Cluster().Status(ctx, &rosterv1.StatusRequest{Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE}})
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision != before.Revision || after.Instances != 1 {
		t.Fatalf("bad requests changed the registry: revision %d -> %d, %d instances", before.Revision, after.Revision, after.Instances)
	}
}

// TestJSONAPIReadConsistency: on a follower cut off from the cluster, a
// default (linearizable) read fails with 503 or 504 and a reason, while
// consistency=stale, in either spelling, answers from its own state.
func TestJSONAPIReadConsistency(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitLeader()
	f := c.Followers()[0]
	api := serve(t, f).URL + "/api/v1"
	r := call(t, "POST", api+"/instances", `{"instance": {"service": "web", "id": "a", "address": "10.0.0.1", "port": 1}}`).must(t, http.StatusOK)
	rev := strconv.FormatUint(num(t, r["revision"]), 10)
	call(t, "GET", api+"/services/default/web?min_revision="+rev, "").must(t, http.StatusOK)

	c.Partition(f)
	// The majority's leader may step down and be elected again under load;
	// the write is the same registration each time, so it is retried.
	deadline := time.Now().Add(30 * time.Second)
	for {
		other := serve(t, c.WaitLeader()).URL + "/api/v1"
		r := call(t, "POST", other+"/instances", `{"instance": {"service": "web", "id": "b", "address": "10.0.0.2", "port": 1}}`)
		if r.code == http.StatusOK {
			break
		}
		if r.code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("write to the majority: %d %s", r.code, r.raw)
		}
	}

	for _, q := range []string{"", "?consistency=linearizable", "?read.consistency=CONSISTENCY_LINEARIZABLE"} {
		r := call(t, "GET", api+"/services/default/web"+q, "")
		if (r.code != http.StatusServiceUnavailable && r.code != http.StatusGatewayTimeout) || r.body["message"] == "" {
			t.Fatalf("linearizable read %q on a cut-off follower: %d %s", q, r.code, r.raw)
		}
	}
	for _, q := range []string{"?consistency=stale", "?consistency=STALE", "?read.consistency=CONSISTENCY_STALE", "?read.consistency=2"} {
		r := call(t, "GET", api+"/services/default/web"+q, "").must(t, http.StatusOK)
		if got := instances(t, r); len(got) != 1 || got["a"] == nil {
			t.Fatalf("stale read %q: %v", q, got)
		}
	}
	c.Heal(f)
	r = call(t, "GET", api+"/services/default/web", "").must(t, http.StatusOK)
	if got := instances(t, r); len(got) != 2 {
		t.Fatalf("linearizable read after healing: %v", got)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

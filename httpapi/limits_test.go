package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/roster-registry/roster/httpapi"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// inProcess returns nd's HTTP front end on an in-process connection, as
// rosterd serves it: its calls name the HTTP client to the limits.
func inProcess(t *testing.T, nd *testcluster.Node) http.Handler {
	t.Helper()
	conn, err := rpc.InProcess(nd.GRPC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h, err := httpapi.New(httpapi.Config{Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// serveFrom serves one request from remote through h.
func serveFrom(h http.Handler, remote, method, path, body string) (int, string) {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func TestHTTPOversizedAndMalformedBodiesChangeNothing(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.Nodes[0]
	h := inProcess(t, nd)
	const from = "192.0.2.1:4000"
	big := `{"Name":"web","Address":"10.0.0.1","Port":80,"Meta":{"k":"` + strings.Repeat("v", 2<<20) + `"}}`
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"PUT", "/v1/agent/service/register", big, http.StatusRequestEntityTooLarge, "larger than"},
		{"PUT", "/v1/agent/service/register", `{"Name":"web","Address":"10.0.0.1","Port":80} {"Name":"x"}`, http.StatusBadRequest, "after the JSON value"},
		{"PUT", "/v1/agent/service/register", `{"Name":"web","Address":"10.0.0.1","Port":80,"Meta":{"k":"` + strings.Repeat("v", 513) + `"}}`, http.StatusBadRequest, "limit is 512"},
		{"PUT", "/v1/agent/check/update/service:x", `{"Status":"passing","Output":"` + strings.Repeat("o", 2<<20) + `"}`, http.StatusRequestEntityTooLarge, "larger than"},
		{"POST", "/api/v1/instances", `{"instance":{"service":"web","id":"a","address":"10.0.0.1","port":80,"metadata":{"k":"` + strings.Repeat("v", 5<<20) + `"}}}`, http.StatusRequestEntityTooLarge, "larger than"},
		{"POST", "/api/v1/instances", `{"instance":{"service":"web",`, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"POST", "/api/v1/instances", `{"instance":{"service":"web","id":"a","address":"10.0.0.1","port":80,"tags":["` + strings.Repeat("t", 129) + `"]}}`, http.StatusBadRequest, "tag"},
		{"POST", "/api/v1/instances", `{"instance":{"service":"web","id":"a","address":"10.0.0.1","port":80,"bogus":1}}`, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"POST", "/api/v1/instances", `{"instance":{"service":"trail","id":"t1","address":"10.0.0.1","port":80}} junk`, http.StatusBadRequest, "after the JSON value"},
		{"POST", "/api/v1/instances", `{"instance":{"service":"trail","id":"t1","address":"10.0.0.1","port":80}}{}`, http.StatusBadRequest, "after the JSON value"},
		{"PUT", "/api/v1/services/default/trail/instances/t1", `{"address":"10.0.0.1","port":80}}`, http.StatusBadRequest, "after the JSON value"},
	} {
		code, body := serveFrom(h, from, tc.method, tc.path, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s (%d bytes): %d %.200s; want %d with %q", tc.method, tc.path, len(tc.body), code, body, tc.code, tc.want)
		}
	}
	list, err := nd.Registry().ListServices(testcluster.Ctx(t), &rosterv1.ListServicesRequest{})
	if err != nil || len(list.Services) != 0 || nd.Node.Store().View().Revision() != 0 {
		t.Fatalf("bad input changed something: %v %v", list, err)
	}
}

func TestHTTPRateLimitIs429PerClient(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{
		Server: func(o *rpc.Options) { o.Limits.Rate, o.Limits.Burst = 0.001, 2 },
	})
	h := inProcess(t, c.Nodes[0])
	reg := func(remote, id string) (int, string) {
		return serveFrom(h, remote, "PUT", "/v1/agent/service/register",
			fmt.Sprintf(`{"Name":"web","ID":%q,"Address":"10.0.0.1","Port":80}`, id))
	}
	for i := range 2 {
		if code, body := reg("192.0.2.1:4000", fmt.Sprint("a", i)); code != http.StatusOK {
			t.Fatalf("write %d within the burst: %d %s", i, code, body)
		}
	}
	// The same client from another port is the same client. Every 429
	// says when to retry.
	for _, tc := range []struct{ api, path, body, want string }{
		{"Consul API", "/v1/agent/service/register", `{"Name":"web","ID":"a2","Address":"10.0.0.1","Port":80}`, "rate limit"},
		{"JSON API", "/api/v1/instances", `{"instance":{"service":"web","id":"a3","address":"10.0.0.1","port":80}}`, "RATE_LIMITED"},
	} {
		method := "PUT"
		if tc.api == "JSON API" {
			method = "POST"
		}
		r := httptest.NewRequest(method, tc.path, strings.NewReader(tc.body))
		r.RemoteAddr = "192.0.2.1:4001"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		// One token at 0.001 a second: 1,000 s (less what refilled).
		after, err := strconv.Atoi(w.Header().Get("Retry-After"))
		if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), tc.want) || err != nil || after <= 900 || after > 1000 {
			t.Fatalf("write beyond the burst (%s): %d Retry-After %q %s; want 429 with Retry-After about 1000",
				tc.api, w.Code, w.Header().Get("Retry-After"), w.Body.String())
		}
	}
	// A client naming itself in a header is not believed.
	r := httptest.NewRequest("POST", "/api/v1/instances", strings.NewReader(`{"instance":{"service":"web","id":"a4","address":"10.0.0.1","port":80}}`))
	r.RemoteAddr = "192.0.2.1:4003"
	r.Header.Set("Grpc-Metadata-"+rpc.ClientAddrKey, "198.51.100.7:1")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("spoofed client address: %d %s", w.Code, w.Body.String())
	}
	// Reads are counted apart, and another client has its own bucket.
	if code, body := serveFrom(h, "192.0.2.1:4000", "GET", "/v1/health/service/web", ""); code != http.StatusOK {
		t.Fatalf("read of a write-limited client: %d %s", code, body)
	}
	if code, body := reg("192.0.2.2:4000", "b0"); code != http.StatusOK {
		t.Fatalf("another client: %d %s", code, body)
	}
	if n := c.Nodes[0].Node.Store().View().ServiceCount("default", "web"); n != 3 {
		t.Fatalf("web has %d instances, want 3", n)
	}
}

package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/roster-registry/roster/internal/testcluster"
)

// TestInvalidUTF8IsA400: a path segment or query value that is not UTF-8
// cannot become a protobuf string; every API refuses it with a 400 in its
// own error shape (the JSON API's INVALID_ARGUMENT, Consul's {"error"}),
// never a 500 from marshalling the in-process call.
func TestInvalidUTF8IsA400(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	h := inProcess(t, c.Nodes[0])
	const from = "192.0.2.1:4000"
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/health/service/%FF"},
		{"GET", "/v1/catalog/service/%FF"},
		{"GET", "/v1/catalog/services?ns=%FF"},
		{"GET", "/v1/health/service/web?ns=%FF"},
		{"GET", "/v1/health/service/web?tag=%C3%28"},
		{"GET", "/v1/health/service/web?filter=Service.ID%3D%3D%FF"},
		{"PUT", "/v1/agent/service/deregister/%FF"},
		{"PUT", "/v1/agent/service/maintenance/web?enable=true&reason=%FF"},
		{"PUT", "/v1/agent/check/pass/service:%FF"},
		{"PUT", "/v1/agent/check/pass/service:web?note=%FE"},
		{"PUT", "/v1/agent/service/register?ns=%FF"},
		{"GET", "/api/v1/services/default/%FF"},
		{"GET", "/api/v1/services/default/web?tags=%FF"},
		{"GET", "/api/v1/services/%FF/web"},
		{"GET", "/api/v1/watch?service=%FF"},
		{"GET", "/api/v1/watch/namespaces?namespaces=%FF"},
		{"PUT", "/api/v1/services/default/web/instances/%FF/heartbeat"},
		{"PUT", "/api/v1/services/default/web/instances/%FF"},
		{"DELETE", "/api/v1/services/default/web/instances/a?request_id=%FF"},
		{"GET", "/api/v1/services?%FF=1"},
	} {
		body := ""
		if tc.method == "PUT" && strings.HasSuffix(tc.path, "%FF") {
			body = `{"address":"10.0.0.1","port":80}`
		}
		code, raw := serveFrom(h, from, tc.method, tc.path, body)
		if code != http.StatusBadRequest || !strings.Contains(raw, "not valid UTF-8") {
			t.Errorf("%s %s: %d %s; want 400 saying it is not valid UTF-8", tc.method, tc.path, code, raw)
			continue
		}
		var shape map[string]any
		if err := json.Unmarshal([]byte(raw), &shape); err != nil {
			t.Errorf("%s %s: body %q is not JSON", tc.method, tc.path, raw)
			continue
		}
		if strings.HasPrefix(tc.path, "/v1/") {
			if _, ok := shape["error"].(string); !ok || len(shape) != 1 {
				t.Errorf("%s %s: %s; want Consul's {\"error\": ...}", tc.method, tc.path, raw)
			}
		} else if shape["status"] != "INVALID_ARGUMENT" || shape["code"] != float64(3) {
			t.Errorf("%s %s: %s; want the JSON API's INVALID_ARGUMENT", tc.method, tc.path, raw)
		}
	}
}

// TestUnprintableHeadersAndTokens: a token travels as gRPC metadata, which
// must be printable ASCII: one that is not is a 400 naming where it came
// from, never a 500; other headers in UTF-8 (a cookie, a language) are not
// passed on to the call and change nothing.
func TestUnprintableHeadersAndTokens(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	h := inProcess(t, c.Nodes[0])
	do := func(method, path string, header map[string]string) (int, string) {
		r := httptest.NewRequest(method, path, nil)
		r.RemoteAddr = "192.0.2.1:4000"
		for k, v := range header {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	for _, tc := range []struct {
		path   string
		header map[string]string
		want   string
	}{
		{"/v1/health/service/web?token=%C3%A9", nil, "the token query parameter"},
		{"/v1/health/service/web?token=%01", nil, "the token query parameter"},
		{"/v1/health/service/web", map[string]string{"X-Consul-Token": "é"}, "the X-Consul-Token header"},
		{"/v1/health/service/web", map[string]string{"Authorization": "Bearer é"}, "the Authorization header"},
		{"/api/v1/services/default/web", map[string]string{"Authorization": "Bearer \x01"}, "the Authorization header"},
		{"/api/v1/watch?service=web", map[string]string{"Authorization": "Bearer é"}, "the Authorization header"},
	} {
		code, raw := do("GET", tc.path, tc.header)
		if code != http.StatusBadRequest || !strings.Contains(raw, tc.want) {
			t.Errorf("GET %s %v: %d %s; want 400 naming %s", tc.path, tc.header, code, raw, tc.want)
		}
	}
	for _, path := range []string{"/api/v1/services/default/web", "/v1/health/service/web", "/api/v1/services"} {
		code, raw := do("GET", path, map[string]string{"Cookie": "name=Zoë", "Accept-Language": "fr-CH, fr;q=0.9, é", "Grpc-Metadata-X": "é"})
		if code != http.StatusOK {
			t.Errorf("GET %s with UTF-8 in other headers: %d %s; want 200", path, code, raw)
		}
	}
}

package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestJSONAPIBodyKeysMustAgreeWithThePath: PUT .../instances/{id} takes
// the instance's namespace, service and id from its path; a body that
// names others is refused with a 400 naming the conflict and nothing is
// stored, while a body that repeats the path's values is fine.
func TestJSONAPIBodyKeysMustAgreeWithThePath(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.Nodes[0]
	api := serve(t, nd).URL + "/api/v1"
	for _, tc := range []struct{ body, want string }{
		{`{"address":"1.2.3.4","port":1,"service":"api"}`, `body field service is "api" but the path names service "web"`},
		{`{"address":"1.2.3.4","port":1,"id":"zzz"}`, `body field id is "zzz" but the path names id "j2"`},
		{`{"address":"1.2.3.4","port":1,"namespace":"other"}`, `body field namespace is "other" but the path names namespace "default"`},
		{`{"address":"1.2.3.4","port":1,"service":"web","id":"zzz"}`, `body field id is "zzz"`},
	} {
		r := call(t, "PUT", api+"/services/default/web/instances/j2", tc.body)
		if r.code != http.StatusBadRequest || r.body["status"] != "INVALID_ARGUMENT" || !strings.Contains(r.body["message"].(string), tc.want) {
			t.Errorf("PUT %s: %d %s; want 400 INVALID_ARGUMENT with %q", tc.body, r.code, r.raw, tc.want)
		}
	}
	if n := nd.Node.Store().View().Revision(); n != 0 {
		t.Fatalf("refused PUTs changed the registry: revision %d", n)
	}
	call(t, "PUT", api+"/services/default/web/instances/j2",
		`{"address":"1.2.3.4","port":1,"namespace":"default","service":"web","id":"j2"}`).must(t, http.StatusOK)
	call(t, "PUT", api+"/services/default/web/instances/j3", `{"address":"1.2.3.4","port":1}`).must(t, http.StatusOK)
	resp, err := nd.Registry().GetService(testcluster.Ctx(t), &rosterv1.GetServiceRequest{Service: "web"})
	if err != nil || len(resp.Instances) != 2 || resp.Instances[0].Id != "j2" || resp.Instances[1].Id != "j3" {
		t.Fatalf("web: %v %v", resp, err)
	}
	// A malformed body is still the gateway's to refuse, as before.
	r := call(t, "PUT", api+"/services/default/web/instances/j4", `{"address":`)
	if r.code != http.StatusBadRequest || !strings.Contains(r.body["message"].(string), "invalid JSON body") {
		t.Fatalf("malformed body: %d %s", r.code, r.raw)
	}
}

package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/testcluster"
)

// TestJSONLeases: GET .../leases on a follower's front end lists the
// leader's TTL leases of the service, with the last renewal and deadline.
func TestJSONLeases(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	leader := c.WaitLeader()
	api := serve(t, c.Followers()[0]).URL + "/api/v1"

	call(t, "PUT", api+"/services/default/web/instances/web-1",
		`{"address": "10.0.0.1", "port": 8080, "ttl": "30s"}`).must(t, http.StatusOK)
	call(t, "PUT", api+"/services/default/web/instances/web-2",
		`{"address": "10.0.0.2", "port": 8080}`).must(t, http.StatusOK)
	before := time.Now()
	call(t, "POST", api+"/services/default/web/instances/web-1/heartbeat", "").must(t, http.StatusOK)
	after := time.Now()

	r := call(t, "GET", api+"/services/default/web/leases", "").must(t, http.StatusOK)
	if h := r["header"].(map[string]any); h["node_id"] != leader.ID {
		t.Fatalf("leases answered by %v, want the leader %s", h["node_id"], leader.ID)
	}
	list, _ := r["leases"].([]any)
	if len(list) != 1 {
		t.Fatalf("leases = %v, want web-1 only", r["leases"])
	}
	l := list[0].(map[string]any)
	if l["id"] != "web-1" || l["ttl"] != "30s" {
		t.Fatalf("lease = %v", l)
	}
	renewed, err := time.Parse(time.RFC3339Nano, l["last_renewed_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Before(before) || renewed.After(after) {
		t.Fatalf("last_renewed_at %s outside the heartbeat call [%s, %s]", renewed, before, after)
	}
	if _, err := time.Parse(time.RFC3339Nano, l["deadline"].(string)); err != nil {
		t.Fatalf("deadline: %v", err)
	}
	call(t, "GET", api+"/services/default/Bad_Name/leases", "").must(t, http.StatusBadRequest)
}

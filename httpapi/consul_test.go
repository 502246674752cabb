package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/httpapi"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// consulClient is the real Consul client pointed at srv.
func consulClient(t *testing.T, srv *httptest.Server) *consul.Client {
	t.Helper()
	cfg := consul.DefaultConfig()
	cfg.Address = strings.TrimPrefix(srv.URL, "http://")
	c, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// followerAPI starts a 3-node cluster and the HTTP front end of a follower.
func followerAPI(t *testing.T) (*testcluster.Cluster, *testcluster.Node, *consul.Client, *httptest.Server) {
	t.Helper()
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	f := c.Followers()[0]
	srv := serve(t, f)
	return c, f, consulClient(t, srv), srv
}

func ttlRegistration(id string, port int) *consul.AgentServiceRegistration {
	return &consul.AgentServiceRegistration{
		ID: id, Name: "web", Address: "10.0.0.1", Port: port,
		Tags: []string{"v1", "primary"}, Meta: map[string]string{"version": "1.2"},
		Weights: &consul.AgentWeights{Passing: 10, Warning: 1},
		Check:   &consul.AgentServiceCheck{TTL: "30s", DeregisterCriticalServiceAfter: "1m"},
	}
}

// TestConsulAgentLifecycle: through a follower, the real client registers
// a TTL service, passes, warns and fails its check, drains it, finds it in
// the catalog and health endpoints, and deregisters it.
func TestConsulAgentLifecycle(t *testing.T) {
	_, f, cc, _ := followerAPI(t)
	agent := cc.Agent()
	if err := agent.ServiceRegister(ttlRegistration("web-1", 8080)); err != nil {
		t.Fatal(err)
	}
	// What was registered is the Registry's instance, field by field.
	resp, err := f.Registry().GetService(testcluster.Ctx(t), &rosterv1.GetServiceRequest{Service: "web"})
	if err != nil || len(resp.Instances) != 1 {
		t.Fatalf("registry: %v %v", resp, err)
	}
	in := resp.Instances[0]
	if in.Id != "web-1" || in.Address != "10.0.0.1" || in.Port != 8080 || in.Weight != 10 ||
		in.Ttl.AsDuration() != 30*time.Second || in.DeregisterCriticalAfter.AsDuration() != time.Minute ||
		in.Metadata["version"] != "1.2" || !slices.Equal(in.Tags, []string{"v1", "primary"}) || in.Namespace != "default" {
		t.Fatalf("registered instance %v", in)
	}

	if err := agent.PassTTL("service:web-1", "all good"); err != nil {
		t.Fatal(err)
	}
	entries, meta, err := cc.Health().Service("web", "", true, nil)
	if err != nil || len(entries) != 1 {
		t.Fatalf("health passing: %v %v", entries, err)
	}
	e := entries[0]
	if e.Service.ID != "web-1" || e.Service.Service != "web" || e.Service.Port != 8080 || e.Service.Address != "10.0.0.1" ||
		e.Service.Weights.Passing != 10 || e.Service.Meta["version"] != "1.2" || e.Node.Address != "10.0.0.1" ||
		e.Node.Datacenter != "dc1" || e.Checks.AggregatedStatus() != consul.HealthPassing {
		t.Fatalf("health entry %+v %+v %+v", e.Node, e.Service, e.Checks)
	}
	if meta.LastIndex != in.ModRevision || !meta.KnownLeader {
		t.Fatalf("query meta %+v; want index %d (the service's revision) and a known leader", meta, in.ModRevision)
	}
	cat, _, err := cc.Catalog().Service("web", "primary", nil)
	if err != nil || len(cat) != 1 || cat[0].ServiceID != "web-1" || cat[0].ServicePort != 8080 ||
		cat[0].ServiceAddress != "10.0.0.1" || cat[0].ServiceMeta["version"] != "1.2" || cat[0].Datacenter != "dc1" {
		t.Fatalf("catalog service: %+v %v", cat, err)
	}
	if cat, _, err := cc.Catalog().Service("web", "absent-tag", nil); err != nil || len(cat) != 0 {
		t.Fatalf("catalog with a tag nobody has: %+v %v", cat, err)
	}
	svcs, _, err := cc.Catalog().Services(nil)
	if err != nil || !slices.Equal(svcs["web"], []string{"primary", "v1"}) {
		t.Fatalf("catalog services: %v %v", svcs, err)
	}

	// warn and fail take it out of the passing set; the output is kept.
	for _, step := range []struct {
		do     func() error
		status string
	}{
		{func() error { return agent.WarnTTL("service:web-1", "slow disk") }, consul.HealthWarning},
		{func() error { return agent.UpdateTTL("service:web-1", "db down", consul.HealthCritical) }, consul.HealthCritical},
		{func() error { return agent.UpdateTTL("service:web-1", "back", consul.HealthPassing) }, consul.HealthPassing},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		all, _, err := cc.Health().Service("web", "", false, nil)
		if err != nil || len(all) != 1 || all[0].Checks.AggregatedStatus() != step.status {
			t.Fatalf("after %s: %+v %v", step.status, all, err)
		}
		passing, _, _ := cc.Health().Service("web", "", true, nil)
		if (len(passing) == 1) != (step.status == consul.HealthPassing) {
			t.Fatalf("after %s: %d passing", step.status, len(passing))
		}
	}

	// Maintenance drains it (a critical maintenance check), and back.
	if err := agent.EnableServiceMaintenance("web-1", "deploy"); err != nil {
		t.Fatal(err)
	}
	all, _, _ := cc.Health().Service("web", "", false, nil)
	if len(all) != 1 || all[0].Checks.AggregatedStatus() != consul.HealthMaint && all[0].Checks.AggregatedStatus() != consul.HealthCritical {
		t.Fatalf("in maintenance: %+v", all)
	}
	if p, _, _ := cc.Health().Service("web", "", true, nil); len(p) != 0 {
		t.Fatalf("an instance in maintenance is passing: %+v", p)
	}
	if err := agent.DisableServiceMaintenance("web-1"); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := cc.Health().Service("web", "", true, nil); len(p) != 1 {
		t.Fatalf("after maintenance: %d passing", len(p))
	}

	if err := agent.ServiceDeregister("web-1"); err != nil {
		t.Fatal(err)
	}
	if all, _, _ := cc.Health().Service("web", "", false, nil); len(all) != 0 {
		t.Fatalf("after deregister: %+v", all)
	}
	if err := agent.ServiceDeregister("web-1"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("deregistering an unknown id: %v", err)
	}
}

// TestConsulChecksAndNamespaces: an HTTP check becomes the active check,
// Checks get numbered ids, the ns parameter selects the namespace, and a
// TTL update on an instance without a TTL is refused.
func TestConsulChecksAndNamespaces(t *testing.T) {
	_, f, cc, _ := followerAPI(t)
	reg := &consul.AgentServiceRegistration{
		ID: "api-1", Name: "api", Address: "10.0.0.2", Port: 9000, Namespace: "team-a",
		Checks: consul.AgentServiceChecks{
			{TTL: "20s"},
			{HTTP: "http://10.0.0.2:9000/health", Interval: "5s", Timeout: "2s", FailuresBeforeCritical: 3},
		},
	}
	if err := cc.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	resp, err := f.Registry().GetService(testcluster.Ctx(t), &rosterv1.GetServiceRequest{Namespace: "team-a", Service: "api"})
	if err != nil || len(resp.Instances) != 1 {
		t.Fatalf("%v %v", resp, err)
	}
	in := resp.Instances[0]
	if in.Ttl.AsDuration() != 20*time.Second || in.Check.GetHttp() != "http://10.0.0.2:9000/health" ||
		in.Check.Interval.AsDuration() != 5*time.Second || in.Check.Timeout.AsDuration() != 2*time.Second || in.Check.FailuresBeforeCritical != 3 {
		t.Fatalf("instance %v", in)
	}
	ns := &consul.QueryOptions{Namespace: "team-a"}
	if err := cc.Agent().UpdateTTLOpts("service:api-1:1", "ok", consul.HealthPassing, ns); err != nil {
		t.Fatal(err)
	}
	if got, _, err := cc.Health().Service("api", "", false, ns); err != nil || len(got) != 1 || got[0].Service.Namespace != "team-a" {
		t.Fatalf("health in team-a: %+v %v", got, err)
	}
	if got, _, err := cc.Health().Service("api", "", false, nil); err != nil || len(got) != 0 {
		t.Fatalf("health in default: %+v %v", got, err)
	}
	// gRPC check in Consul's host:port/service form.
	if err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: "g-1", Name: "grpcsvc", Address: "10.0.0.3", Port: 9090,
		Check: &consul.AgentServiceCheck{GRPC: "10.0.0.3:9090/pkg.Svc", Interval: "10s"}}); err != nil {
		t.Fatal(err)
	}
	resp, _ = f.Registry().GetService(testcluster.Ctx(t), &rosterv1.GetServiceRequest{Service: "grpcsvc"})
	if len(resp.Instances) != 1 || resp.Instances[0].Check.GetGrpc() != "10.0.0.3:9090" || resp.Instances[0].Check.GrpcService != "pkg.Svc" {
		t.Fatalf("grpc check: %v", resp.Instances)
	}
	err = cc.Agent().PassTTL("service:g-1", "")
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "TTL") {
		t.Fatalf("pass on an instance without a TTL: %v", err)
	}
}

// TestConsulBlockingQuery: a blocking health query returns when the
// service changes, and a change to another service does not wake it.
func TestConsulBlockingQuery(t *testing.T) {
	_, _, cc, _ := followerAPI(t)
	if err := cc.Agent().ServiceRegister(ttlRegistration("web-1", 8080)); err != nil {
		t.Fatal(err)
	}
	_, meta, err := cc.Health().Service("web", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		entries []*consul.ServiceEntry
		meta    *consul.QueryMeta
		err     error
	}
	done := make(chan result, 1)
	go func() {
		e, m, err := cc.Health().Service("web", "", false, &consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		done <- result{e, m, err}
	}()
	// Another service changing does not answer it: a short blocking query
	// on "web" that outlives the change returns at its wait with the same
	// index.
	if err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: "db-1", Name: "db", Address: "10.0.0.9", Port: 5432}); err != nil {
		t.Fatal(err)
	}
	_, same, err := cc.Health().Service("web", "", false, &consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 300 * time.Millisecond})
	if err != nil || same.LastIndex != meta.LastIndex {
		t.Fatalf("another service's change moved web's index: %d -> %v (%v)", meta.LastIndex, same, err)
	}
	select {
	case r := <-done:
		t.Fatalf("blocking query woken by another service: %+v", r)
	default:
	}
	if err := cc.Agent().ServiceRegister(ttlRegistration("web-2", 8081)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || len(r.entries) != 2 || r.meta.LastIndex <= meta.LastIndex {
			t.Fatalf("blocking query: %d entries, meta %+v, %v", len(r.entries), r.meta, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the blocking query did not return when an instance was added")
	}
	// The catalog's list of services blocks on the namespace.
	_, cmeta, err := cc.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	cdone := make(chan map[string][]string, 1)
	go func() {
		s, _, err := cc.Catalog().Services(&consul.QueryOptions{WaitIndex: cmeta.LastIndex, WaitTime: time.Minute})
		if err != nil {
			t.Error(err)
		}
		cdone <- s
	}()
	if err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: "cache-1", Name: "cache", Address: "10.0.0.7", Port: 6379}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-cdone:
		if _, ok := s["cache"]; !ok {
			t.Fatalf("catalog services after a new service: %v", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the blocking catalog query did not return when a service was added")
	}
}

// TestConsulFilter: the documented filter subset on both endpoints.
func TestConsulFilter(t *testing.T) {
	_, _, cc, srv := followerAPI(t)
	for i, r := range []struct {
		tags []string
		meta map[string]string
	}{
		{[]string{"canary", "eu"}, map[string]string{"version": "2", "team": "a"}},
		{[]string{"eu"}, map[string]string{"version": "1"}},
		{nil, map[string]string{"version": "1", "team": "b"}},
	} {
		err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{
			ID: fmt.Sprintf("web-%d", i), Name: "web", Address: "10.0.0.1", Port: 8000 + i, Tags: r.tags, Meta: r.meta})
		if err != nil {
			t.Fatal(err)
		}
	}
	ids := func(f string, catalog bool) ([]string, error) {
		var out []string
		if catalog {
			cs, _, err := cc.Catalog().Service("web", "", &consul.QueryOptions{Filter: f})
			for _, s := range cs {
				out = append(out, s.ServiceID)
			}
			return out, err
		}
		es, _, err := cc.Health().Service("web", "", false, &consul.QueryOptions{Filter: f})
		for _, e := range es {
			out = append(out, e.Service.ID)
		}
		return out, err
	}
	for _, tc := range []struct {
		health, catalog string
		want            []string
	}{
		{`Service.Tags contains "canary"`, `ServiceTags contains "canary"`, []string{"web-0"}},
		{`"eu" in Service.Tags`, `"eu" in ServiceTags`, []string{"web-0", "web-1"}},
		{`"eu" not in Service.Tags`, `ServiceTags not contains eu`, []string{"web-2"}},
		{`Service.Meta.version == "1"`, `ServiceMeta.version == "1"`, []string{"web-1", "web-2"}},
		{`Service.Meta.team != "a"`, `ServiceMeta.team != a`, []string{"web-1", "web-2"}},
		{`"team" in Service.Meta`, `"team" in ServiceMeta`, []string{"web-0", "web-2"}},
		{`Service.Tags is empty`, `ServiceTags is empty`, []string{"web-2"}},
		{`Service.Meta.version == "1" and not (Service.Port == 8002 or Service.ID == "x")`,
			`ServiceMeta.version == "1" and not (ServicePort == 8002 or ServiceID == "x")`, []string{"web-1"}},
		{`Service.ID == "web-0" or Service.Meta.team == b`, `ServiceID == "web-0" or ServiceMeta.team == b`, []string{"web-0", "web-2"}},
	} {
		for i, f := range []string{tc.health, tc.catalog} {
			got, err := ids(f, i == 1)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("filter %s: %v %v, want %v", f, got, err, tc.want)
			}
		}
	}
	// ?tag= ignores case, as Consul's does; every tag given must match.
	for _, tc := range []struct {
		tags []string
		want []string
	}{
		{[]string{"EU"}, []string{"web-0", "web-1"}},
		{[]string{"Canary", "eu"}, []string{"web-0"}},
		{[]string{"canary", "us"}, nil},
	} {
		q := url.Values{"tag": tc.tags}.Encode()
		for _, path := range []string{"/v1/catalog/service/web?", "/v1/health/service/web?"} {
			resp, err := http.Get(srv.URL + path + q)
			if err != nil {
				t.Fatal(err)
			}
			var got []struct {
				ServiceID string
				Service   struct{ ID string }
			}
			err = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			var ids []string
			for _, g := range got {
				ids = append(ids, g.ServiceID+g.Service.ID)
			}
			if err != nil || resp.StatusCode != http.StatusOK || !slices.Equal(ids, tc.want) {
				t.Errorf("%s%s: %d %v %v; want %v", path, q, resp.StatusCode, ids, err, tc.want)
			}
		}
	}
	// Unsupported expressions are refused with a 400 naming the problem.
	for _, tc := range []struct{ path, filter, want string }{
		{"/v1/health/service/web", `Service.Port > 80`, "unsupported operator"},
		{"/v1/health/service/web", `Service.Kind == "x"`, `unsupported selector "Service.Kind"`},
		{"/v1/health/service/web", `Service.Tags == "x"`, "use contains"},
		{"/v1/health/service/web", `Service.ID matches "w.*"`, "unsupported operator"},
		{"/v1/health/service/web", `(Service.ID == "a"`, "missing )"},
		{"/v1/health/service/web", `Service.ID == "a`, "unterminated"},
		{"/v1/catalog/service/web", `Service.ID == "a"`, `unsupported selector "Service.ID"`},
		{"/v1/catalog/services", `ServiceName == "a"`, "not supported"},
	} {
		code, body := rawGet(t, srv.URL+tc.path+"?filter="+url.QueryEscape(tc.filter))
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("filter %s on %s: %d %s; want 400 with %q", tc.filter, tc.path, code, body, tc.want)
		}
	}
}

func rawGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, errorText(b)
}

func rawPut(t *testing.T, u, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, errorText(b)
}

// errorText is the reason in a JSON error body, or the body as it is.
func errorText(b []byte) string {
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	return string(b)
}

// TestConsulBadInput: what Roster cannot honour, or the Registry refuses,
// is a 4xx with the reason, and nothing is registered.
func TestConsulBadInput(t *testing.T) {
	_, f, _, srv := followerAPI(t)
	reg := srv.URL + "/v1/agent/service/register"
	for _, tc := range []struct{ body, want string }{
		{`{`, "decode"},
		{`{"ID":"x","Port":80}`, "missing service name"},
		{`{"Name":"Web_Service","Address":"10.0.0.1","Port":80}`, "service"},
		{`{"Name":"web","Address":"10.0.0.1","Port":0}`, "Port is required"},
		{`{"Name":"web","Address":"10.0.0.1"}`, "Port is required"},
		{`{"Name":"web","Address":"10.0.0.1","Port":-1}`, "Port -1 is out of range 1-65535"},
		{`{"Name":"web","Address":"10.0.0.1","Port":70000}`, "Port 70000 is out of range 1-65535"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Kind":"connect-proxy"}`, "Connect proxies"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Connect":{"Native":true}}`, "Connect"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"TaggedAddresses":{"lan":{"Address":"1.2.3.4","Port":1}}}`, "TaggedAddresses"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Check":{"ScriptArgs":["/bin/true"],"Interval":"10s"}}`, "script"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Check":{"HTTP":"http://x/","Interval":"10s","Method":"POST"}}`, "Method"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Check":{"HTTP":"http://x/"}}`, "Interval"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Check":{"TTL":"banana"}}`, "duration"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Check":{"TTL":"10ms"}}`, "ttl"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Check":{"TTL":"10s","CheckID":"mine"}}`, "CheckID"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Checks":[{"TTL":"10s"},{"TTL":"20s"}]}`, "one TTL"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Check":{"Interval":"10s"}}`, "needs a TTL"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Check":{"TTL":"10s","HTTP":"http://x/"}}`, "one or the other"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Weights":{"Passing":4294967297}}`, "out of range 1-10000"},
		{`{"Name":"web","Address":"10.0.0.1","Port":80,"Weights":{"Passing":-1}}`, "out of range 1-10000"},
		// A bind-any address names no host to reach; Consul refuses it.
		{`{"Name":"web","Address":"0.0.0.0","Port":80}`, "Invalid service address"},
		{`{"Name":"web","Address":"::","Port":80}`, "Invalid service address"},
		{`{"Name":"web","Address":"[::]","Port":80}`, "Invalid service address"},
	} {
		code, body := rawPut(t, reg, tc.body)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("register %s: %d %s; want 400 with %q", tc.body, code, body, tc.want)
		}
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{http.MethodPut, "/v1/agent/check/pass/nope", "", http.StatusNotFound, "Unknown check ID"},
		{http.MethodPut, "/v1/agent/check/pass/service:nope", "", http.StatusNotFound, `Unknown check ID "service:nope": no instance in namespace "default" has service ID "nope"`},
		{http.MethodPut, "/v1/agent/check/update/service:nope", `{"Status":"bogus"}`, http.StatusBadRequest, "invalid check status"},
		{http.MethodPut, "/v1/agent/service/maintenance/nope", "", http.StatusBadRequest, "enable"},
		{http.MethodPut, "/v1/agent/service/deregister/nope", "", http.StatusNotFound, "unknown service ID"},
		{http.MethodGet, "/v1/health/service/web?index=abc", "", http.StatusBadRequest, "index"},
		{http.MethodGet, "/v1/health/service/web?wait=forever", "", http.StatusBadRequest, "wait"},
		{http.MethodGet, "/v1/health/service/web?index=99999&wait=18446744074", "", http.StatusBadRequest, "Invalid wait time"},
		{http.MethodGet, "/v1/catalog/services?index=99999&wait=30", "", http.StatusBadRequest, "Invalid wait time"},
		{http.MethodGet, "/v1/health/service/web?stale&consistent", "", http.StatusBadRequest, "mutually exclusive"},
	} {
		var code int
		var body string
		if tc.method == http.MethodPut {
			code, body = rawPut(t, srv.URL+tc.path, tc.body)
		} else {
			code, body = rawGet(t, srv.URL+tc.path)
		}
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %s; want %d with %q", tc.method, tc.path, code, body, tc.code, tc.want)
		}
	}
	list, err := f.Registry().ListServices(testcluster.Ctx(t), &rosterv1.ListServicesRequest{})
	if err != nil || len(list.Services) != 0 {
		t.Fatalf("bad input registered something: %v %v", list, err)
	}
}

// TestConsulStatusAndSelf: status/leader names the leader's Raft address,
// status/peers the voters, agent/self the datacenter and node.
func TestConsulStatusAndSelf(t *testing.T) {
	c, f, cc, _ := followerAPI(t)
	leader, err := cc.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("leader %q %v", leader, err)
	}
	peers, err := cc.Status().Peers()
	if err != nil || len(peers) != 3 || !slices.Contains(peers, leader) {
		t.Fatalf("peers %v (leader %q) %v", peers, leader, err)
	}
	self, err := cc.Agent().Self()
	if err != nil || self["Config"]["Datacenter"] != "dc1" || self["Config"]["NodeName"] != f.ID || self["Member"]["Name"] != f.ID {
		t.Fatalf("self %v %v", self, err)
	}
	name, err := cc.Agent().NodeName()
	if err != nil || name != f.ID {
		t.Fatalf("node name %q %v", name, err)
	}
	_ = c
}

// TestConsulHoldsDuringElection: Consul answers 500 while it elects a
// leader; Roster holds a write and a read until the new leader is there.
func TestConsulHoldsDuringElection(t *testing.T) {
	c, _, cc, _ := followerAPI(t)
	if err := cc.Agent().ServiceRegister(ttlRegistration("web-1", 8080)); err != nil {
		t.Fatal(err)
	}
	c.Stop(c.Leader())
	// Right after the leader died, before anyone elected another.
	if err := cc.Agent().ServiceRegister(ttlRegistration("web-2", 8081)); err != nil {
		t.Fatalf("register during the election: %v", err)
	}
	entries, meta, err := cc.Health().Service("web", "", false, nil)
	if err != nil || len(entries) != 2 || !meta.KnownLeader {
		t.Fatalf("read after the election: %d entries, %+v, %v", len(entries), meta, err)
	}
}

// TestConsulServiceIDAcrossServices: Consul's service ID is unique per
// agent, Roster's instances are keyed by service and id. Registering an ID
// another service holds is refused (409, naming the holder) and changes
// nothing; once two services hold an ID (through the Roster API), every
// agent call by that ID is a 409 on every node, the node that registered
// it and remembers its service included, and nothing is changed.
func TestConsulServiceIDAcrossServices(t *testing.T) {
	// Check updates trust an index for heartbeatIndexAge (consul_ids.go):
	// here they must see the second holder as soon as it is registered.
	t.Cleanup(httpapi.SetHeartbeatIndexAge(0))
	c, f, _, srvA := followerAPI(t)
	srvB := serve(t, c.Leader())
	reg := func(srv *httptest.Server, name string) (int, string) {
		return rawPut(t, srv.URL+"/v1/agent/service/register",
			`{"ID":"host7-app","Name":"`+name+`","Address":"10.0.0.7","Port":80,"Check":{"TTL":"30s"}}`)
	}
	instances := func(svc string) []*rosterv1.Instance {
		t.Helper()
		resp, err := f.Registry().GetService(testcluster.Ctx(t), &rosterv1.GetServiceRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Instances
	}
	if code, body := reg(srvA, "app-old"); code != http.StatusOK {
		t.Fatalf("register app-old: %d %s", code, body)
	}
	for _, srv := range []*httptest.Server{srvA, srvB} {
		code, body := reg(srv, "app-new")
		if code != http.StatusConflict || !strings.Contains(body, `"app-old"`) || !strings.Contains(body, "deregister it first") {
			t.Errorf("register the ID under another service: %d %s; want 409 naming app-old", code, body)
		}
	}
	if got := instances("app-new"); len(got) != 0 {
		t.Errorf("a refused registration stored %v", got)
	}
	if code, body := reg(srvB, "app-old"); code != http.StatusOK || len(instances("app-old")) != 1 {
		t.Fatalf("re-register under the same service: %d %s", code, body)
	}

	// A second holder, through the Roster API, which keys by service.
	if _, err := f.Registry().Register(testcluster.Ctx(t), &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
		Service: "app-new", Id: "host7-app", Address: "10.0.0.8", Port: 80, Ttl: durationpb.New(30 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*httptest.Server{srvA, srvB} {
		for _, call := range []struct{ path, body string }{
			{"/v1/agent/check/pass/service:host7-app", ""},
			{"/v1/agent/check/fail/service:host7-app", ""},
			{"/v1/agent/check/update/service:host7-app", `{"Status":"warning"}`},
			{"/v1/agent/service/maintenance/host7-app?enable=true", ""},
			{"/v1/agent/service/deregister/host7-app", ""},
		} {
			code, body := rawPut(t, srv.URL+call.path, call.body)
			if code != http.StatusConflict || !strings.Contains(body, "app-new, app-old") {
				t.Errorf("PUT %s with two holders: %d %s; want 409 naming both", call.path, code, body)
			}
		}
	}
	for _, svc := range []string{"app-old", "app-new"} {
		got := instances(svc)
		if len(got) != 1 || !got[0].Enabled || got[0].Status != rosterv1.HealthStatus_HEALTH_STATUS_PASSING {
			t.Errorf("%s after refused agent calls: %v", svc, got)
		}
	}

	// With one holder again, agent calls act on it, on either node.
	if _, err := f.Registry().Deregister(testcluster.Ctx(t), &rosterv1.DeregisterRequest{Service: "app-new", Id: "host7-app"}); err != nil {
		t.Fatal(err)
	}
	if code, body := rawPut(t, srvA.URL+"/v1/agent/check/pass/service:host7-app", ""); code != http.StatusOK {
		t.Fatalf("pass with one holder: %d %s", code, body)
	}
	if code, body := rawPut(t, srvB.URL+"/v1/agent/service/deregister/host7-app", ""); code != http.StatusOK || len(instances("app-old")) != 0 {
		t.Fatalf("deregister with one holder: %d %s", code, body)
	}
}

// TestConsulTTLWithoutDeregisterKeepsCritical: as in Consul, a TTL check
// registered without DeregisterCriticalServiceAfter turns critical when a
// heartbeat is missed, and the service stays, so a later pass revives it.
func TestConsulTTLWithoutDeregisterKeepsCritical(t *testing.T) {
	c, f, cc, _ := followerAPI(t)
	if err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{
		ID: "batch-1", Name: "batch", Address: "10.0.0.4", Port: 80, Check: &consul.AgentServiceCheck{TTL: "1s"},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := f.Registry().GetService(testcluster.Ctx(t), &rosterv1.GetServiceRequest{Service: "batch"})
	if err != nil || len(resp.Instances) != 1 || resp.Instances[0].DeregisterCriticalAfter.AsDuration() != rpc.MaxCriticalAfter {
		t.Fatalf("registered %v %v; want deregister_critical_after %s", resp.GetInstances(), err, rpc.MaxCriticalAfter)
	}
	// No heartbeat: the lease expires.
	var entries []*consul.ServiceEntry
	c.Eventually("the TTL check is no longer passing", 10*time.Second, func() bool {
		entries, _, err = cc.Health().Service("batch", "", false, nil)
		return err == nil && (len(entries) == 0 || entries[0].Checks.AggregatedStatus() != consul.HealthPassing)
	})
	if len(entries) != 1 || entries[0].Checks.AggregatedStatus() != consul.HealthCritical {
		t.Fatalf("after a missed heartbeat: %+v; want the service kept, critical", entries)
	}
	if err := cc.Agent().PassTTL("service:batch-1", "back"); err != nil {
		t.Fatalf("pass after expiry: %v", err)
	}
	if p, _, err := cc.Health().Service("batch", "", true, nil); err != nil || len(p) != 1 {
		t.Fatalf("after the pass: %d passing, %v", len(p), err)
	}
}

package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// singleAPI starts a one-node cluster, its HTTP front end and the real
// Consul client pointed at it.
func singleAPI(t *testing.T) (*testcluster.Node, *consul.Client, string) {
	t.Helper()
	c := testcluster.New(t, 1, testcluster.Options{})
	c.WaitLeader()
	srv := serve(t, c.Nodes[0])
	return c.Nodes[0], consulClient(t, srv), srv.URL
}

// TestConsulRegisterWithoutPort: Consul's Port is optional, a Roster
// instance's is not; the real client is told so in Consul's words, not
// that port 0 is out of range.
func TestConsulRegisterWithoutPort(t *testing.T) {
	_, cc, _ := singleAPI(t)
	err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{Name: "db", ID: "db1", Address: "10.1.1.1"})
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "Port is required") ||
		strings.Contains(err.Error(), "port 0") {
		t.Fatalf("register without a port: %v; want 400 Port is required", err)
	}
}

// TestConsulClientWaitIsAccepted: the wait the real client sends (its
// WaitTime in milliseconds, "20ms") bounds a blocking query that nothing
// wakes; it answers, with the index it was given.
func TestConsulClientWaitIsAccepted(t *testing.T) {
	_, cc, _ := singleAPI(t)
	for _, q := range []func() (*consul.QueryMeta, error){
		func() (*consul.QueryMeta, error) {
			_, m, err := cc.Health().Service("web", "", false, &consul.QueryOptions{WaitIndex: 1 << 40, WaitTime: 20 * time.Millisecond})
			return m, err
		},
		func() (*consul.QueryMeta, error) {
			_, m, err := cc.Catalog().Services(&consul.QueryOptions{WaitIndex: 1 << 40, WaitTime: 20 * time.Millisecond})
			return m, err
		},
	} {
		if m, err := q(); err != nil || m.LastIndex == 0 {
			t.Fatalf("blocking query with the client's wait: %+v %v", m, err)
		}
	}
}

// TestConsulCatalogWaitEndsWith200: a blocking catalog/services query
// whose wait runs out answers 200 with the catalog, never the error of the
// watch stream the wait's end cancels.
func TestConsulCatalogWaitEndsWith200(t *testing.T) {
	_, _, url := singleAPI(t)
	for i := range 200 {
		code, body := rawGet(t, url+"/v1/catalog/services?index=999999&wait="+time.Duration(1+i%5).String())
		if code != 200 {
			t.Fatalf("query %d: %d %s", i, code, body)
		}
	}
}

// TestConsulReadsIgnoreNameCase: as Consul's, health and catalog reads
// match a service or namespace name ignoring case, and a name no service can have
// (Roster's are lowercase DNS labels) is an empty list with an index, not
// a 400. Registration keeps Roster's rule.
func TestConsulReadsIgnoreNameCase(t *testing.T) {
	_, cc, url := singleAPI(t)
	if err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{Name: "web", ID: "w1", Address: "10.0.0.1", Port: 80}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Web", "WEB", "wEb"} {
		entries, meta, err := cc.Health().Service(name, "", false, nil)
		if err != nil || len(entries) != 1 || entries[0].Service.ID != "w1" || meta.LastIndex == 0 {
			t.Fatalf("health/service/%s: %+v %+v %v", name, entries, meta, err)
		}
		cat, _, err := cc.Catalog().Service(name, "", nil)
		if err != nil || len(cat) != 1 || cat[0].ServiceID != "w1" {
			t.Fatalf("catalog/service/%s: %+v %v", name, cat, err)
		}
	}
	// Namespace names too.
	if err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{Name: "api", ID: "a1", Namespace: "prod", Address: "10.0.0.2", Port: 80}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"Prod", "PROD"} {
		entries, _, err := cc.Health().Service("Api", "", false, &consul.QueryOptions{Namespace: ns})
		if err != nil || len(entries) != 1 || entries[0].Service.ID != "a1" {
			t.Fatalf("health/service/Api?ns=%s: %+v %v", ns, entries, err)
		}
		svcs, _, err := cc.Catalog().Services(&consul.QueryOptions{Namespace: ns})
		if _, ok := svcs["api"]; err != nil || !ok {
			t.Fatalf("catalog/services?ns=%s: %+v %v", ns, svcs, err)
		}
	}
	if code, body := rawGet(t, url+"/v1/health/service/api?ns=my_ns"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("health/service/api?ns=my_ns: %d %q; want []", code, body)
	}
	for _, name := range []string{"my_service", "a..b", "-x", strings.Repeat("x", 64)} {
		entries, meta, err := cc.Health().Service(name, "", true, nil)
		if err != nil || entries == nil || len(entries) != 0 || meta.LastIndex == 0 {
			t.Fatalf("health/service/%s: %+v %+v %v; want an empty list with an index", name, entries, meta, err)
		}
		cat, meta, err := cc.Catalog().Service(name, "", nil)
		if err != nil || cat == nil || len(cat) != 0 || meta.LastIndex == 0 {
			t.Fatalf("catalog/service/%s: %+v %+v %v; want an empty list with an index", name, cat, meta, err)
		}
		// A blocking query on it ends with its wait, at the index it gave.
		_, meta, err = cc.Health().Service(name, "", false, &consul.QueryOptions{WaitIndex: 7, WaitTime: 10 * time.Millisecond})
		if err != nil || meta.LastIndex != 7 {
			t.Fatalf("blocking health/service/%s: %+v %v", name, meta, err)
		}
	}
	if code, body := rawGet(t, url+"/v1/health/service/my_service"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("raw health/service/my_service: %d %q", code, body)
	}
	// Writes stay strict.
	err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{Name: "Web", ID: "w2", Address: "10.0.0.1", Port: 80})
	if err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("register Web: %v; want 400", err)
	}
}

// TestConsulWrongMethodIs405: a Consul path asked with a method it does
// not take is a 405 with Allow, and an unknown /v1/ path a 404, both in
// Consul's {"error": ...} shape, as Consul answers.
func TestConsulWrongMethodIs405(t *testing.T) {
	_, _, url := singleAPI(t)
	for _, tc := range []struct {
		method, path string
		code         int
		allow, want  string
	}{
		{"POST", "/v1/agent/service/register", 405, "PUT", "method POST not allowed"},
		{"GET", "/v1/agent/service/register", 405, "PUT", "method GET not allowed"},
		{"DELETE", "/v1/health/service/web", 405, "GET, HEAD", "method DELETE not allowed"},
		{"POST", "/v1/agent/check/pass/service:x", 405, "PUT", "method POST not allowed"},
		{"PUT", "/v1/status/leader", 405, "GET, HEAD", "method PUT not allowed"},
		{"GET", "/v1/kv/some/key", 404, "", "no such endpoint: GET /v1/kv/some/key"},
		{"PUT", "/v1/agent/service/nope", 404, "", "no such endpoint"},
	} {
		req, err := http.NewRequest(tc.method, url+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e map[string]any
		_ = json.Unmarshal(b, &e)
		msg, _ := e["error"].(string)
		if resp.StatusCode != tc.code || resp.Header.Get("Allow") != tc.allow || len(e) != 1 || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s: %d Allow %q %s; want %d Allow %q with {\"error\": %q}",
				tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), b, tc.code, tc.allow, tc.want)
		}
	}
}

// TestConsulCheckIDsAreTheInstancesChecks: a check update names a check
// the instance has, Consul's default IDs for what it was registered with;
// any other ID is a 404 "Unknown check ID" and renews nothing. An instance
// registered without checks shows none, as Consul shows such a service.
func TestConsulCheckIDsAreTheInstancesChecks(t *testing.T) {
	nd, cc, url := singleAPI(t)
	agent := cc.Agent()
	for _, reg := range []*consul.AgentServiceRegistration{
		{Name: "hb", ID: "hb1", Address: "10.0.0.1", Port: 80, Check: &consul.AgentServiceCheck{TTL: "30s"}},
		{Name: "two", ID: "t1", Address: "10.0.0.2", Port: 80, Checks: consul.AgentServiceChecks{
			{TTL: "30s"}, {TCP: "10.0.0.2:80", Interval: "10s"}}},
		{Name: "bare", ID: "b1", Address: "10.0.0.3", Port: 80},
	} {
		if err := agent.ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
	}
	for _, check := range []string{"service:hb1", "service:t1:1", "service:t1:2", "service:t1"} {
		if err := agent.PassTTL(check, ""); err != nil {
			t.Errorf("pass %s: %v", check, err)
		}
	}
	rev := nd.Node.Store().View().Revision()
	for _, tc := range []struct{ check, want string }{
		{"service:hb1:2", `the checks of instance "hb1" are "service:hb1"`},
		{"service:hb1:1", `the checks of instance "hb1" are "service:hb1"`},
		{"service:t1:3", `the checks of instance "t1" are`},
		{"service:b1", `instance "b1" has no checks`},
		{"service:nobody", `no instance in namespace "default" has service ID "nobody"`},
	} {
		for _, do := range []func() error{
			func() error { return agent.PassTTL(tc.check, "") },
			func() error { return agent.UpdateTTL(tc.check, "", consul.HealthCritical) },
		} {
			err := do()
			if err == nil {
				t.Errorf("update %s: accepted", tc.check)
				continue
			}
			// The client quotes the JSON body as it came.
			msg := strings.ReplaceAll(err.Error(), `\"`, `"`)
			if !strings.Contains(msg, "404") || !strings.Contains(msg, `Unknown check ID "`+tc.check+`"`) || !strings.Contains(msg, tc.want) {
				t.Errorf("update %s: %v; want 404 Unknown check ID with %q", tc.check, err, tc.want)
			}
		}
	}
	if got := nd.Node.Store().View().Revision(); got != rev {
		t.Errorf("refused check updates changed the registry: revision %d -> %d", rev, got)
	}
	entries, _, err := cc.Health().Service("bare", "", false, nil)
	if err != nil || len(entries) != 1 || len(entries[0].Checks) != 0 || entries[0].Checks.AggregatedStatus() != consul.HealthPassing {
		t.Fatalf("health of a check-less instance: %+v %v; want no checks", entries, err)
	}
	if code, body := rawGet(t, url+"/v1/health/service/bare"); code != 200 || !strings.Contains(body, `"Checks":[]`) {
		t.Fatalf("raw health of a check-less instance: %d %s", code, body)
	}
	if entries, _, err := cc.Health().Service("bare", "", true, nil); err != nil || len(entries) != 1 {
		t.Fatalf("passing health of a check-less instance: %+v %v", entries, err)
	}
}

// TestConsulBooleanParams: passing and enable take what Consul's
// strconv.ParseBool takes (1, t, T, TRUE, true, True and the false
// forms), as curl users and other clients send them; anything else is a
// 400.
func TestConsulBooleanParams(t *testing.T) {
	_, cc, url := singleAPI(t)
	for _, reg := range []*consul.AgentServiceRegistration{
		{Name: "web", ID: "ok", Address: "10.0.0.1", Port: 80},
		{Name: "web", ID: "bad", Address: "10.0.0.2", Port: 80, Check: &consul.AgentServiceCheck{TTL: "30s"}},
	} {
		if err := cc.Agent().ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
	}
	if err := cc.Agent().FailTTL("service:bad", "down"); err != nil {
		t.Fatal(err)
	}
	count := func(query string) (int, int) {
		t.Helper()
		code, body := rawGet(t, url+"/v1/health/service/web?"+query)
		var entries []json.RawMessage
		_ = json.Unmarshal([]byte(body), &entries)
		return code, len(entries)
	}
	for q, want := range map[string]int{
		"passing": 1, "passing=1": 1, "passing=true": 1, "passing=True": 1, "passing=TRUE": 1, "passing=t": 1,
		"passing=0": 2, "passing=false": 2, "passing=F": 2, "passing=False": 2,
	} {
		if code, n := count(q); code != 200 || n != want {
			t.Errorf("health/service/web?%s: %d with %d entries; want 200 with %d", q, code, n, want)
		}
	}
	if code, _ := count("passing=yes"); code != 400 {
		t.Errorf("health/service/web?passing=yes: %d; want 400", code)
	}
	drained := func() bool {
		t.Helper()
		entries, _, err := cc.Health().Service("web", "", false, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Service.ID == "ok" {
				return e.Checks.AggregatedStatus() == consul.HealthMaint
			}
		}
		t.Fatal("instance ok is gone")
		return false
	}
	for _, tc := range []struct {
		enable string
		want   bool
	}{{"1", true}, {"0", false}, {"TRUE", true}, {"F", false}, {"t", true}, {"False", false}} {
		if code, body := rawPut(t, url+"/v1/agent/service/maintenance/ok?enable="+tc.enable, ""); code != 200 {
			t.Fatalf("maintenance enable=%s: %d %s; want 200", tc.enable, code, body)
		}
		if got := drained(); got != tc.want {
			t.Fatalf("after enable=%s the instance is in maintenance: %v; want %v", tc.enable, got, tc.want)
		}
	}
	if code, _ := rawPut(t, url+"/v1/agent/service/maintenance/ok?enable=yes", ""); code != 400 {
		t.Errorf("maintenance enable=yes: %d; want 400", code)
	}
}

// TestConsulEmptyCheckIsNoCheck: a registration whose Check is an empty
// object (the real client sends "Check":{} for a &AgentServiceCheck{}
// left unfilled) registers the service without a check, as Consul's
// ServiceDefinition.CheckTypes skips an empty Check.
func TestConsulEmptyCheckIsNoCheck(t *testing.T) {
	_, cc, url := singleAPI(t)
	if err := cc.Agent().ServiceRegister(&consul.AgentServiceRegistration{
		Name: "web", ID: "w1", Address: "10.0.0.1", Port: 80, Check: &consul.AgentServiceCheck{},
	}); err != nil {
		t.Fatalf("register with an empty Check: %v", err)
	}
	entries, _, err := cc.Health().Service("web", "", true, nil)
	if err != nil || len(entries) != 1 || entries[0].Service.ID != "w1" || len(entries[0].Checks) != 0 {
		t.Fatalf("health of w1: %+v %v; want one passing entry without checks", entries, err)
	}
	// An empty check among Checks is refused, as Consul refuses it.
	if code, body := rawPut(t, url+"/v1/agent/service/register",
		`{"Name":"web","ID":"w2","Address":"10.0.0.2","Port":80,"Checks":[{}]}`); code != 400 {
		t.Fatalf("register with Checks [{}]: %d %s; want 400", code, body)
	}
}

// TestConsulCheckSnakeCaseKeys: Consul's check decoding also takes the
// snake_case keys of its configuration files (deregister_critical_service_after,
// tls_skip_verify, script_args, ...), which hand-written clients send;
// they mean what the CamelCase keys mean, not nothing.
func TestConsulCheckSnakeCaseKeys(t *testing.T) {
	nd, _, url := singleAPI(t)
	reg := url + "/v1/agent/service/register"
	if code, body := rawPut(t, reg, `{"name":"web","id":"w1","address":"10.0.0.1","port":80,`+
		`"check":{"ttl":"10s","deregister_critical_service_after":"1m"}}`); code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	resp, err := nd.Registry().GetService(testcluster.Ctx(t), &rosterv1.GetServiceRequest{Service: "web"})
	if err != nil || len(resp.Instances) != 1 || resp.Instances[0].DeregisterCriticalAfter.AsDuration() != time.Minute {
		t.Fatalf("registered %v %v; want deregister_critical_after 1m", resp.GetInstances(), err)
	}
	// The CamelCase key wins when both are given, as in Consul.
	if code, body := rawPut(t, reg, `{"Name":"web","ID":"w2","Address":"10.0.0.2","Port":80,`+
		`"Checks":[{"TTL":"10s","DeregisterCriticalServiceAfter":"2m","deregister_critical_service_after":"3m"}]}`); code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	resp, err = nd.Registry().GetService(testcluster.Ctx(t), &rosterv1.GetServiceRequest{Service: "web"})
	for _, in := range resp.GetInstances() {
		if in.Id == "w2" && in.DeregisterCriticalAfter.AsDuration() != 2*time.Minute {
			t.Fatalf("w2: deregister_critical_after %s; want 2m", in.DeregisterCriticalAfter.AsDuration())
		}
	}
	if err != nil || len(resp.Instances) != 2 {
		t.Fatalf("registered %v %v", resp.GetInstances(), err)
	}
	// What Roster does not support is refused under either spelling.
	for _, tc := range []struct{ check, want string }{
		{`{"HTTP":"https://10.0.0.3/","Interval":"10s","tls_skip_verify":true}`, "TLS options"},
		{`{"HTTP":"https://10.0.0.3/","Interval":"10s","tls_server_name":"x"}`, "TLS options"},
		{`{"GRPC":"10.0.0.3:80","Interval":"10s","grpc_use_tls":true}`, "TLS options"},
		{`{"script_args":["/bin/true"],"Interval":"10s"}`, "script"},
		{`{"docker_container_id":"abc","Shell":"/bin/sh","Interval":"10s"}`, "Docker"},
	} {
		code, body := rawPut(t, reg, `{"Name":"web","ID":"w3","Address":"10.0.0.3","Port":80,"Check":`+tc.check+`}`)
		if code != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("register with check %s: %d %s; want 400 with %q", tc.check, code, body, tc.want)
		}
	}
	// Consul's service decoding takes tagged_addresses for TaggedAddresses.
	if code, body := rawPut(t, reg, `{"Name":"web","ID":"w3","Address":"10.0.0.3","Port":80,`+
		`"tagged_addresses":{"wan":{"Address":"1.2.3.4","Port":80}}}`); code != 400 || !strings.Contains(body, "TaggedAddresses") {
		t.Errorf("register with tagged_addresses: %d %s; want 400 with \"TaggedAddresses\"", code, body)
	}
}

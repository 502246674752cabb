package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// httpCluster starts three rosterd nodes with --initial-cluster, each
// serving HTTP (--http-addr) on a free port, and returns the cluster and
// the nodes' HTTP addresses in order.
func httpCluster(t *testing.T) (*Cluster, []string) {
	t.Helper()
	const n = 3
	rosterd, roster := Binaries(t)
	ports := FreePorts(t, 3*n)
	base := t.TempDir()
	c := &Cluster{T: t, Roster: roster}
	var initial, httpAddrs []string
	for i := 0; i < n; i++ {
		p := newProc(t, rosterd, base, ports, i)
		initial = append(initial, p.ID+"="+p.Raft)
		c.Procs = append(c.Procs, p)
		httpAddrs = append(httpAddrs, "127.0.0.1:"+strconv.Itoa(ports[2*n+i]))
	}
	for i, p := range c.Procs {
		p.args = []string{"--node-id", p.ID, "--data-dir", p.DataDir, "--grpc-addr", p.GRPC,
			"--raft-addr", p.Raft, "--initial-cluster", strings.Join(initial, ","),
			"--http-addr", httpAddrs[i], "--log-level", "debug"}
		p.Start()
	}
	c.killOnCleanup(40)
	c.Eventually("every node's HTTP front end to be ready", 60*time.Second, func() bool {
		for _, a := range httpAddrs {
			resp, err := http.Get("http://" + a + "/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})
	return c, httpAddrs
}

// follower returns the index of a node that is not the leader.
func (c *Cluster) follower() int {
	leader := c.Leader()
	for i, p := range c.Procs {
		if p != leader {
			return i
		}
	}
	c.T.Fatal("no follower")
	return -1
}

// TestConsulClientAgainstAFollower: the real Consul client, talking to a
// follower of a three-process cluster, registers a service with a TTL
// check, passes the check, finds the service through the catalog and
// through health?passing, sees a blocking query return when an instance
// is added, and deregisters.
func TestConsulClientAgainstAFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c, httpAddrs := httpCluster(t)
	fi := c.follower()
	cfg := consul.DefaultConfig()
	cfg.Address = httpAddrs[fi]
	cc, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("talking to follower %s at %s", c.Procs[fi].ID, httpAddrs[fi])

	reg := &consul.AgentServiceRegistration{
		ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 8080, Tags: []string{"v1"},
		Meta:  map[string]string{"version": "1"},
		Check: &consul.AgentServiceCheck{TTL: "30s", DeregisterCriticalServiceAfter: "5m"},
	}
	if err := cc.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	if err := cc.Agent().PassTTL("service:web-1", "ok"); err != nil {
		t.Fatal(err)
	}
	cat, _, err := cc.Catalog().Service("web", "v1", nil)
	if err != nil || len(cat) != 1 || cat[0].ServiceID != "web-1" || cat[0].ServicePort != 8080 {
		t.Fatalf("catalog: %+v %v", cat, err)
	}
	entries, meta, err := cc.Health().Service("web", "", true, nil)
	if err != nil || len(entries) != 1 || entries[0].Checks.AggregatedStatus() != consul.HealthPassing {
		t.Fatalf("health passing: %+v %v", entries, err)
	}
	if !meta.KnownLeader || meta.LastIndex == 0 {
		t.Fatalf("query meta %+v", meta)
	}

	type result struct {
		entries []*consul.ServiceEntry
		meta    *consul.QueryMeta
		err     error
	}
	done := make(chan result, 1)
	go func() {
		e, m, err := cc.Health().Service("web", "", false, &consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 2 * time.Minute})
		done <- result{e, m, err}
	}()
	// The new instance arrives through another node.
	other := consulClientAt(t, httpAddrs[(fi+1)%len(httpAddrs)])
	reg2 := *reg
	reg2.ID, reg2.Port = "web-2", 8081
	if err := other.Agent().ServiceRegister(&reg2); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || len(r.entries) != 2 || r.meta.LastIndex <= meta.LastIndex {
			t.Fatalf("blocking query: %d entries, %+v, %v", len(r.entries), r.meta, r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the blocking query did not return after an instance was added")
	}

	for _, id := range []string{"web-1", "web-2"} {
		if err := cc.Agent().ServiceDeregister(id); err != nil {
			t.Fatalf("deregister %s: %v", id, err)
		}
	}
	if all, _, err := cc.Health().Service("web", "", false, nil); err != nil || len(all) != 0 {
		t.Fatalf("after deregister: %+v %v", all, err)
	}
	leader, err := cc.Status().Leader()
	if err != nil || leader != c.Leader().Raft {
		t.Fatalf("status/leader %q %v; want %s", leader, err, c.Leader().Raft)
	}
}

func consulClientAt(t *testing.T, addr string) *consul.Client {
	t.Helper()
	cfg := consul.DefaultConfig()
	cfg.Address = addr
	cc, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

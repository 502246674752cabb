package httpapi_test

import (
	"strings"
	"testing"

	consul "github.com/hashicorp/consul/api"

	"github.com/roster-registry/roster/internal/testcluster"
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

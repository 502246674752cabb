package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestConsulBlockingQueriesEndOnDrain: when the node starts to shut down,
// every kind of Consul blocking query ends at once with a 200 and what
// there is, as when its wait runs out, so Consul clients ask again on
// another node without an error: a service's health (a wait in the
// Registry's GetService), the catalog (a namespace watch, which the drain
// ends), and a name no service can have (a wait in the HTTP handler).
func TestConsulBlockingQueriesEndOnDrain(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.WaitLeader()
	resp, err := nd.Registry().Register(testcluster.Ctx(t), &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
		Service: "web", Id: "w1", Address: "10.0.0.1", Port: 80}})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, nd)
	rev := resp.Revision
	queries := []string{
		fmt.Sprintf("/v1/health/service/web?index=%d&wait=5m", rev),
		fmt.Sprintf("/v1/catalog/services?index=%d&wait=5m", rev),
		"/v1/health/service/x_y?index=1&wait=5m",
	}
	type answer struct {
		q    string
		code int
		body string
		err  error
	}
	done := make(chan answer, len(queries))
	for _, q := range queries {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+q, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- answer{q: q, err: err}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			done <- answer{q: q, code: resp.StatusCode, body: string(b)}
		}()
	}
	nd.Server.Drain()
	for range queries {
		select {
		case a := <-done:
			if a.err != nil || a.code != http.StatusOK {
				t.Errorf("%s after the drain: %d %s %v; want 200 with what there is", a.q, a.code, strings.TrimSpace(a.body), a.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a blocking query went on after the node began to drain") // catches hangs only
		}
	}
}

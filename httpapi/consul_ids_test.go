package httpapi

import (
	"cmp"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// countingRegistry is a registry of one namespace that counts its reads.
type countingRegistry struct {
	rosterv1.RegistryClient
	mu       sync.Mutex
	rev      uint64
	services map[string][]string // service → ids
	tags     map[string][]string // service → the union of its tags
	gets     int
	lists    int
}

func (r *countingRegistry) header() *rosterv1.ResponseHeader {
	return &rosterv1.ResponseHeader{Revision: r.rev}
}

func (r *countingRegistry) ListServices(_ context.Context, req *rosterv1.ListServicesRequest, _ ...grpc.CallOption) (*rosterv1.ListServicesResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lists++
	out := &rosterv1.ListServicesResponse{Header: r.header()}
	for svc, ids := range r.services {
		sum := &rosterv1.ServiceSummary{Service: svc}
		if req.WithInstanceIds {
			sum.InstanceIds = slices.Clone(ids)
		}
		if req.WithTags {
			sum.Tags = slices.Clone(r.tags[svc])
		}
		out.Services = append(out.Services, sum)
	}
	slices.SortFunc(out.Services, func(a, b *rosterv1.ServiceSummary) int { return cmp.Compare(a.Service, b.Service) })
	return out, nil
}

func (r *countingRegistry) GetService(_ context.Context, req *rosterv1.GetServiceRequest, _ ...grpc.CallOption) (*rosterv1.GetServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gets++
	out := &rosterv1.GetServiceResponse{Header: r.header()}
	for _, id := range r.services[req.Service] {
		out.Instances = append(out.Instances, &rosterv1.Instance{Service: req.Service, Id: id})
	}
	return out, nil
}

// TestConsulIDIndexReuse: while the registry revision stays, finding the
// service of an ID (a check pass) costs one read of that service, not a
// scan of the namespace; once it moves, a new scan sees the change.
func TestConsulIDIndexReuse(t *testing.T) {
	reg := &countingRegistry{rev: 10, services: map[string][]string{
		"api": {"api-1", "api-2"}, "db": {"db-1"}, "web": {"web-1"},
	}}
	c := &consulAPI{h: &Handler{registry: reg}, indexes: map[string]*idIndex{}, scans: map[string]*idScan{}}
	ctx := context.Background()
	if svc, err := c.serviceOf(ctx, "default", "web-1"); err != nil || svc != "web" {
		t.Fatalf("first lookup: %q %v", svc, err)
	}
	reg.gets, reg.lists = 0, 0
	for range 100 {
		if svc, err := c.serviceOf(ctx, "default", "web-1"); err != nil || svc != "web" {
			t.Fatalf("lookup: %q %v", svc, err)
		}
	}
	if reg.gets != 100 || reg.lists != 0 {
		t.Fatalf("100 lookups at one revision made %d GetService and %d ListServices calls; want 100 and 0", reg.gets, reg.lists)
	}
	// A numbered check ID, service:web-1:1, asks for web-1:1 and web-1 at
	// once: still one read.
	reg.gets = 0
	if got, err := c.holders(ctx, "default", 0, "web-1:1", "web-1"); err != nil || len(got[0]) != 0 || !slices.Equal(got[1], []string{"web"}) ||
		reg.gets != 1 || reg.lists != 0 {
		t.Fatalf("holders of web-1:1 and web-1: %v %v after %d GetService and %d ListServices calls", got, err, reg.gets, reg.lists)
	}

	// Once the registry moves, concurrent lookups share one new scan.
	reg.mu.Lock()
	reg.services["db"] = append(reg.services["db"], "db-2")
	reg.rev++
	reg.lists = 0
	reg.mu.Unlock()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if svc, err := c.serviceOf(ctx, "default", "web-1"); err != nil || svc != "web" {
				t.Errorf("concurrent lookup: %q %v", svc, err)
			}
		})
	}
	wg.Wait()
	if reg.lists != 1 {
		t.Fatalf("20 concurrent lookups after a change made %d scans; want 1", reg.lists)
	}

	reg.mu.Lock()
	reg.services["api"] = append(reg.services["api"], "web-1")
	reg.rev++
	reg.mu.Unlock()
	if _, err := c.serviceOf(ctx, "default", "web-1"); err == nil {
		t.Fatal("an ID two services hold was resolved after the registry moved")
	}
	if got, err := c.holders(ctx, "default", 0, "web-1"); err != nil || !slices.Equal(got[0], []string{"api", "web"}) {
		t.Fatalf("holders: %v %v", got, err)
	}
}

// TestConsulHeartbeatTrustsARecentIndex: on a registry that keeps moving, a
// check update (a heartbeat) that finds its instance where an index younger
// than heartbeatIndexAge says costs one read, not a scan of the namespace
// per change, and a registration the index has no objection to costs none;
// an older index, or an instance not found there, is scanned again.
func TestConsulHeartbeatTrustsARecentIndex(t *testing.T) {
	reg := &countingRegistry{rev: 10, services: map[string][]string{"api": {"api-1"}, "web": {"web-1"}}}
	now := time.Unix(1000, 0)
	c := &consulAPI{h: &Handler{registry: reg}, indexes: map[string]*idIndex{}, scans: map[string]*idScan{},
		clock: func() time.Time { return now }}
	ctx := context.Background()
	heartbeat := func() []string {
		t.Helper()
		got, err := c.holders(ctx, "default", heartbeatIndexAge, "web-1")
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	heartbeat() // the first scan
	reg.lists = 0
	for range 50 {
		reg.mu.Lock()
		reg.rev++ // another service changes
		reg.mu.Unlock()
		if got := heartbeat(); !slices.Equal(got, []string{"web"}) {
			t.Fatalf("heartbeat: %v", got)
		}
	}
	if reg.lists != 0 {
		t.Fatalf("50 heartbeats on a moving registry made %d scans; want 0 within %s of the last", reg.lists, heartbeatIndexAge)
	}
	// A registration of a new ID, or again under its service, trusts it
	// too; one of an ID the index gives another service checks the
	// current state.
	if err := c.checkRegistration(ctx, "default", "api", "api-2"); err != nil || reg.lists != 0 {
		t.Fatalf("registering a new ID: %v after %d scans; want none", err, reg.lists)
	}
	if err := c.checkRegistration(ctx, "default", "web", "web-1"); err != nil || reg.lists != 0 {
		t.Fatalf("registering web-1 again under web: %v after %d scans; want none", err, reg.lists)
	}
	if err := c.checkRegistration(ctx, "default", "api", "web-1"); err == nil || reg.lists != 1 {
		t.Fatalf("registering web-1 under api: %v after %d scans; want a refusal after 1", err, reg.lists)
	}
	now = now.Add(heartbeatIndexAge)
	reg.mu.Lock()
	reg.rev++
	reg.mu.Unlock()
	heartbeat()
	if reg.lists != 2 {
		t.Fatalf("a heartbeat on an index %s old made %d scans in all; want a new one (2)", heartbeatIndexAge, reg.lists)
	}
	// The instance moved out of the service the index names: scanned again.
	reg.mu.Lock()
	reg.services["web"] = nil
	reg.services["api"] = append(reg.services["api"], "web-1")
	reg.rev++
	reg.mu.Unlock()
	if got := heartbeat(); !slices.Equal(got, []string{"api"}) || reg.lists != 3 {
		t.Fatalf("heartbeat after the instance moved: %v after %d scans", got, reg.lists)
	}
}

// TestConsulCatalogServicesIsOneRead: /v1/catalog/services answers from one
// list of the namespace, tags included, not a read of each service (which
// cost the caller's read rate once per service and mixed revisions).
func TestConsulCatalogServicesIsOneRead(t *testing.T) {
	reg := &countingRegistry{rev: 10,
		services: map[string][]string{"api": {"api-1"}, "web": {"web-1", "web-2"}},
		tags:     map[string][]string{"web": {"v1", "v2"}}}
	c := &consulAPI{h: &Handler{registry: reg}, indexes: map[string]*idIndex{}, scans: map[string]*idScan{}}
	rec := httptest.NewRecorder()
	c.catalogServices(rec, httptest.NewRequest("GET", "/v1/catalog/services", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if got, want := strings.TrimSpace(rec.Body.String()), `{"api":[],"web":["v1","v2"]}`; got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
	if reg.lists != 1 || reg.gets != 0 {
		t.Fatalf("%d lists and %d service reads; want 1 and 0", reg.lists, reg.gets)
	}
}

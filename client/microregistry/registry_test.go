package microregistry

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/internal/testdiscovery"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

func newRegistry(t *testing.T) (*Registry, *testcluster.Cluster) {
	t.Helper()
	tc := testcluster.New(t, 3, testcluster.Options{})
	tc.WaitMembersKnown()
	var addrs []string
	for _, nd := range tc.Nodes {
		addrs = append(addrs, nd.Addr)
	}
	r := NewRegistry(Addrs(addrs...), Timeout(10*time.Second))
	t.Cleanup(func() { _ = r.Close() })
	return r, tc
}

// nextResult waits for the watcher's next result.
func nextResult(t *testing.T, w *Watcher) *Result {
	t.Helper()
	got := make(chan *Result, 1)
	errc := make(chan error, 1)
	go func() {
		res, err := w.Next()
		if err != nil {
			errc <- err
			return
		}
		got <- res
	}()
	select {
	case res := <-got:
		return res
	case err := <-errc:
		t.Fatalf("next: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("no result")
	}
	return nil
}

func TestRegistryShape(t *testing.T) {
	r, tc := newRegistry(t)
	if r.String() != "roster" || len(r.Options().Addrs) != 3 {
		t.Fatalf("String %q, Options %+v", r.String(), r.Options())
	}
	if _, err := r.GetService("greeter"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown service: %v", err)
	}
	w, err := r.Watch(WatchService("greeter"))
	if err != nil {
		t.Fatal(err)
	}

	svc := &Service{Name: "greeter", Version: "1.0.0", Nodes: []*Node{
		{Id: "greeter-1", Address: "127.0.0.1:9001", Metadata: map[string]string{"protocol": "grpc"}},
		{Id: "greeter-2", Address: "127.0.0.1:9002"},
	}}
	if err := r.Register(svc, RegisterTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	// go-micro servers register again every interval: harmless.
	if err := r.Register(svc, RegisterTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"greeter-1", "greeter-2"} {
		res := nextResult(t, w)
		if res.Action != "create" || res.Service.Name != "greeter" || res.Service.Version != "1.0.0" || res.Service.Nodes[0].Id != want {
			t.Fatalf("result %+v %+v, want create of %s", res, res.Service.Nodes[0], want)
		}
	}

	var got []*Service
	tc.Eventually("both nodes", 15*time.Second, func() bool {
		got, err = r.GetService("greeter")
		return err == nil && len(got) == 1 && len(got[0].Nodes) == 2
	})
	if got[0].Version != "1.0.0" || got[0].Nodes[0].Address != "127.0.0.1:9001" || got[0].Nodes[0].Metadata["protocol"] != "grpc" {
		t.Fatalf("GetService %+v %+v", got[0], got[0].Nodes[0])
	}
	list, err := r.ListServices()
	if err != nil || !slices.ContainsFunc(list, func(s *Service) bool { return s.Name == "greeter" }) {
		t.Fatalf("ListServices %v, %v", list, err)
	}

	// Draining a node is a delete for the watcher.
	if err := testdiscovery.Retry(t, func(ctx context.Context) error {
		_, err := tc.Running()[0].Registry().SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{Service: "greeter", Id: "greeter-2", Reason: "test"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if res := nextResult(t, w); res.Action != "delete" || res.Service.Nodes[0].Id != "greeter-2" {
		t.Fatalf("after drain: %+v", res)
	}

	if err := r.Deregister(&Service{Name: "greeter", Nodes: []*Node{{Id: "greeter-1"}}}); err != nil {
		t.Fatal(err)
	}
	if res := nextResult(t, w); res.Action != "delete" || res.Service.Nodes[0].Id != "greeter-1" {
		t.Fatalf("after deregister: %+v", res)
	}

	w.Stop()
	if _, err := w.Next(); !errors.Is(err, ErrWatcherStopped) {
		t.Fatalf("next after stop: %v", err)
	}
}

// TestInitRegistersNodesAgainThroughTheNewClient: Init with new addresses
// closes the client that kept the TTL nodes alive; the next Register must
// register them again through the new client instead of skipping them as
// unchanged, and Deregister must work.
func TestInitRegistersNodesAgainThroughTheNewClient(t *testing.T) {
	r, tc := newRegistry(t)
	svc := &Service{Name: "greeter", Version: "1", Nodes: []*Node{{Id: "g-1", Address: "127.0.0.1:9100"}}}
	if err := r.Register(svc, RegisterTTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	before := instanceOf(t, tc, "greeter", "g-1")
	if before == nil {
		t.Fatal("node not registered")
	}
	addrs := r.Options().Addrs
	if err := r.Init(Addrs(addrs[2], addrs[1], addrs[0])); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(svc, RegisterTTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	after := instanceOf(t, tc, "greeter", "g-1")
	if after == nil || after.GetRegistrationRevision() <= before.GetRegistrationRevision() {
		t.Fatalf("registration revision %d after Init and Register, %d before: not registered again through the new client",
			after.GetRegistrationRevision(), before.GetRegistrationRevision())
	}
	if err := r.Deregister(svc); err != nil {
		t.Fatalf("deregister after Init: %v", err)
	}
	if inst := instanceOf(t, tc, "greeter", "g-1"); inst != nil {
		t.Fatalf("node still registered after Deregister: %v", inst)
	}
}

// instanceOf reads one instance with a linearizable read: nil when absent.
func instanceOf(t *testing.T, tc *testcluster.Cluster, service, id string) *rosterv1.Instance {
	t.Helper()
	var resp *rosterv1.GetServiceResponse
	if err := testdiscovery.Retry(t, func(ctx context.Context) error {
		var err error
		resp, err = tc.Running()[0].Registry().GetService(ctx, &rosterv1.GetServiceRequest{
			Service: service, Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE},
		})
		return err
	}); err != nil && status.Code(err) != codes.NotFound {
		t.Fatalf("get service: %v", err)
	}
	for _, inst := range resp.GetInstances() {
		if inst.GetId() == id {
			return inst
		}
	}
	return nil
}

// TestWatchDeleteCarriesTheLastKnownNode: a delete event carries only the
// instance's key fields; the result must carry the node as last seen
// (version, address, metadata), since go-micro's cache matches a delete to
// its service by version.
func TestWatchDeleteCarriesTheLastKnownNode(t *testing.T) {
	full := &rosterv1.Instance{
		Namespace: DefaultDomain, Service: "greeter", Id: "g-1", Address: "127.0.0.1", Port: 9100,
		Metadata: map[string]string{VersionKey: "1.0.0", "protocol": "grpc"},
	}
	known := map[string]*rosterv1.Instance{instanceKey(full): full}
	var w Watcher
	got := w.translate(&rosterv1.WatchResponse{Revision: 9, Events: []*rosterv1.Event{{
		Type: rosterv1.Event_TYPE_DELETE, Revision: 9,
		Instance: &rosterv1.Instance{Namespace: DefaultDomain, Service: "greeter", Id: "g-1"},
	}}}, known, false)
	if len(got) != 1 || got[0].Action != "delete" {
		t.Fatalf("results %+v, want one delete", got)
	}
	s, n := got[0].Service, got[0].Service.Nodes[0]
	if s.Name != "greeter" || s.Version != "1.0.0" || n.Id != "g-1" || n.Address != "127.0.0.1:9100" || n.Metadata["protocol"] != "grpc" {
		t.Fatalf("delete of %+v node %+v, want version 1.0.0 and the node as last seen", s, n)
	}
	if len(known) != 0 {
		t.Fatalf("known after the delete: %v", known)
	}
}

func TestRegistryWithoutAddresses(t *testing.T) {
	r := NewRegistry()
	if _, err := r.GetService("x"); !errors.Is(err, ErrNoClient) {
		t.Fatalf("got %v", err)
	}
}

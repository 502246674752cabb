package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
	"github.com/roster-registry/roster/store"
)

// Consul's health status names.
const (
	consulPassing  = "passing"
	consulWarning  = "warning"
	consulCritical = "critical"
)

func consulStatus(s rosterv1.HealthStatus) string {
	switch s {
	case rosterv1.HealthStatus_HEALTH_STATUS_PASSING:
		return consulPassing
	case rosterv1.HealthStatus_HEALTH_STATUS_WARNING:
		return consulWarning
	default:
		// Consul's checks start critical; so does an instance whose first
		// check result is not in yet.
		return consulCritical
	}
}

// Wire shapes of Consul's responses (the fields its clients read).
type (
	consulNode struct {
		ID              string
		Node            string
		Address         string
		Datacenter      string
		TaggedAddresses map[string]string
		Meta            map[string]string
		CreateIndex     uint64
		ModifyIndex     uint64
	}
	consulWeights struct {
		Passing int
		Warning int
	}
	consulService struct {
		ID                string
		Service           string
		Tags              []string
		Meta              map[string]string
		Port              int
		Address           string
		Weights           consulWeights
		EnableTagOverride bool
		CreateIndex       uint64
		ModifyIndex       uint64
		Namespace         string `json:",omitempty"`
		Datacenter        string `json:",omitempty"`
	}
	consulCheck struct {
		Node        string
		CheckID     string
		Name        string
		Status      string
		Notes       string
		Output      string
		ServiceID   string
		ServiceName string
		ServiceTags []string
		Type        string
		Namespace   string `json:",omitempty"`
		CreateIndex uint64
		ModifyIndex uint64
	}
	consulServiceEntry struct {
		Node    consulNode
		Service consulService
		Checks  []consulCheck
	}
	consulCatalogService struct {
		ID                       string
		Node                     string
		Address                  string
		Datacenter               string
		TaggedAddresses          map[string]string
		NodeMeta                 map[string]string
		ServiceID                string
		ServiceName              string
		ServiceAddress           string
		ServiceTags              []string
		ServiceMeta              map[string]string
		ServicePort              int
		ServiceWeights           consulWeights
		ServiceEnableTagOverride bool
		CreateIndex              uint64
		ModifyIndex              uint64
		Namespace                string `json:",omitempty"`
	}
)

// Roster has no agents: an instance's "node" is its host, named by its
// address. Filters select on the fields below.
var (
	healthSelectors = filterSelectors{
		fields: map[string]filterKind{
			"Node.Node": kindString, "Node.Address": kindString, "Node.Datacenter": kindString,
			"Service.ID": kindString, "Service.Service": kindString, "Service.Address": kindString,
			"Service.Port": kindString, "Service.Tags": kindList, "Service.Namespace": kindString,
		},
		maps: []string{"Service.Meta", "Node.Meta"},
	}
	catalogSelectors = filterSelectors{
		fields: map[string]filterKind{
			"Node": kindString, "Address": kindString, "Datacenter": kindString,
			"ServiceID": kindString, "ServiceName": kindString, "ServiceAddress": kindString,
			"ServicePort": kindString, "ServiceTags": kindList, "Namespace": kindString,
		},
		maps: []string{"ServiceMeta", "NodeMeta"},
	}
)

// instanceFields are an instance's filterable values under the health
// endpoint's names; catalogNames renames them for the catalog endpoint.
func instanceFields(in *rosterv1.Instance, dc string) (map[string]string, map[string][]string, map[string]map[string]string) {
	return map[string]string{
			"Node.Node": in.Address, "Node.Address": in.Address, "Node.Datacenter": dc,
			"Service.ID": in.Id, "Service.Service": in.Service, "Service.Address": in.Address,
			"Service.Port": strconv.Itoa(int(in.Port)), "Service.Namespace": in.Namespace,
		}, map[string][]string{"Service.Tags": in.Tags},
		map[string]map[string]string{"Service.Meta": in.Metadata, "Node.Meta": {}}
}

var catalogNames = map[string]string{
	"Node.Node": "Node", "Node.Address": "Address", "Node.Datacenter": "Datacenter",
	"Service.ID": "ServiceID", "Service.Service": "ServiceName", "Service.Address": "ServiceAddress",
	"Service.Port": "ServicePort", "Service.Namespace": "Namespace", "Service.Tags": "ServiceTags",
	"Service.Meta": "ServiceMeta", "Node.Meta": "NodeMeta",
}

func renamed[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[catalogNames[k]] = v
	}
	return out
}

// orEmpty keeps nil lists and maps out of responses, as Consul does.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func checkType(in *rosterv1.Instance) string {
	switch {
	case in.GetCheck().GetHttp() != "":
		return "http"
	case in.GetCheck().GetTcp() != "":
		return "tcp"
	case in.GetCheck().GetGrpc() != "":
		return "grpc"
	case in.Ttl != nil:
		return "ttl"
	}
	return ""
}

// checks are an instance's Consul checks: its own (none for an instance
// registered without a TTL or an active check, as Consul shows a service
// without checks, unless its status says otherwise than passing), and
// while it is drained the critical maintenance check Consul adds.
func (c *consulAPI) checks(in *rosterv1.Instance) []consulCheck {
	tags := orEmpty(in.Tags)
	out := []consulCheck{}
	if checkType(in) != "" || in.Status != rosterv1.HealthStatus_HEALTH_STATUS_PASSING {
		out = append(out, consulCheck{
			Node: in.Address, CheckID: "service:" + in.Id, Name: "Service '" + in.Service + "' check",
			Status: consulStatus(in.Status), Output: in.StatusReason,
			ServiceID: in.Id, ServiceName: in.Service, ServiceTags: tags, Type: checkType(in),
			Namespace: in.Namespace, CreateIndex: in.CreateRevision, ModifyIndex: in.ModRevision,
		})
	}
	if !in.Enabled {
		out = append(out, consulCheck{
			Node: in.Address, CheckID: "_service_maintenance:" + in.Id, Name: "Service Maintenance Mode",
			Status: consulCritical, Notes: in.MaintenanceReason, ServiceID: in.Id, ServiceName: in.Service,
			ServiceTags: tags, Type: "maintenance", Namespace: in.Namespace,
			CreateIndex: in.ModRevision, ModifyIndex: in.ModRevision,
		})
	}
	return out
}

func (c *consulAPI) node(in *rosterv1.Instance) consulNode {
	return consulNode{Node: in.Address, Address: in.Address, Datacenter: c.dc,
		TaggedAddresses: map[string]string{}, Meta: map[string]string{},
		CreateIndex: in.CreateRevision, ModifyIndex: in.ModRevision}
}

func weights(in *rosterv1.Instance) consulWeights {
	return consulWeights{Passing: int(in.Weight), Warning: 1}
}

// serviceQuery is one read of a service's instances, blocking or not.
type serviceQuery struct {
	ns, service string
	// unknown: service is no name Roster would register, so no instance
	// can have it.
	unknown bool
	opts    queryOptions
	passing bool
	tags    []string
	filter  filterExpr
}

// parseServiceQuery reads the parameters of catalog/service and
// health/service.
func (c *consulAPI) parseServiceQuery(r *http.Request, sels filterSelectors) (*serviceQuery, error) {
	opts, err := parseQueryOptions(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	// Consul matches service names ignoring case, and answers an empty
	// list for a name it does not know; Roster's names are lowercase DNS
	// labels, so a name that cannot be one is known to have no instances.
	// Namespaces likewise.
	svc := strings.ToLower(r.PathValue("service"))
	ns := readNamespace(r)
	sq := &serviceQuery{ns: ns, service: svc, unknown: store.CheckService(svc) != nil || store.CheckNamespace(ns) != nil, opts: opts, tags: q["tag"]}
	if _, ok := q["passing"]; ok {
		// As Consul reads it: present without a value is true, else
		// strconv.ParseBool's forms (1, t, TRUE, false, ...).
		if v := q.Get("passing"); v == "" {
			sq.passing = true
		} else if sq.passing, err = strconv.ParseBool(v); err != nil {
			return nil, badRequest("passing must be true or false, not %q", v)
		}
	}
	if f := q.Get("filter"); f != "" {
		e, err := compileFilter(f, sels.known)
		if err != nil {
			return nil, badRequest("filter %q: %v (supported selectors: %s)", f, err, sels.names())
		}
		sq.filter = e
	}
	if _, ok := q["node-meta"]; ok {
		return nil, badRequest("node-meta is not supported: Roster has no agent nodes")
	}
	return sq, nil
}

// serve parses r as a query of one service and runs it: ok false when it
// has answered already (a bad query, a service no one can have, one the
// token may not read, an error).
func (c *consulAPI) serve(w http.ResponseWriter, r *http.Request, sels filterSelectors) (*serviceQuery, *rosterv1.GetServiceResponse, bool) {
	sq, err := c.parseServiceQuery(r, sels)
	if err != nil {
		writeConsulError(w, err)
		return nil, nil, false
	}
	if sq.unknown {
		c.empty(w, r, sq)
		return nil, nil, false
	}
	resp, err := c.get(r.Context(), sq)
	if hiddenByACL(err) {
		c.hidden(w, r, sq)
		return nil, nil, false
	}
	if err != nil {
		writeConsulError(w, err)
		return nil, nil, false
	}
	return sq, resp, true
}

// get runs a service query through Registry.GetService: with index it is a
// blocking query woken only by a change to this service. The index
// returned is the service's revision.
func (c *consulAPI) get(ctx context.Context, sq *serviceQuery) (*rosterv1.GetServiceResponse, error) {
	req := &rosterv1.GetServiceRequest{
		Namespace: sq.ns, Service: sq.service, Read: sq.opts.read,
		HealthyOnly: sq.passing,
	}
	if sq.opts.index > 0 {
		req.WaitRevision = sq.opts.index
		req.WaitTimeout = durationpb.New(sq.opts.wait)
	}
	resp, err := c.h.registry.GetService(ctx, req)
	if err != nil || len(sq.tags) == 0 {
		return resp, err
	}
	// Consul matches tags ignoring case; the Registry's own filter is exact.
	resp.Instances = slices.DeleteFunc(resp.Instances, func(in *rosterv1.Instance) bool {
		return !hasTagsFold(in.Tags, sq.tags)
	})
	return resp, nil
}

// hasTagsFold reports whether have holds every tag of want, ignoring case.
func hasTagsFold(have, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, w) }) {
			return false
		}
	}
	return true
}

// hiddenByACL reports whether err is the caller's token's rules refusing
// to read a service (not an unknown token, which stays a 403 as in Consul).
func hiddenByACL(err error) bool {
	return status.Code(err) == codes.PermissionDenied && rpc.Reason(err) == rpc.ReasonACLDenied
}

// hidden answers a query for a service the caller's token may not read as
// Consul does: an empty list marked X-Consul-Results-Filtered-By-ACLs, so
// the answer does not say whether the service exists.
func (c *consulAPI) hidden(w http.ResponseWriter, r *http.Request, sq *serviceQuery) {
	w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
	c.empty(w, r, sq)
}

// empty answers a query whose answer is an empty list that nothing can
// change: for a service the token may not read, or a name no service can
// have. A blocking query gets it once its wait runs out (answering at once
// would spin a client's query loop). The index is the one asked for (1 at
// first), and whether a leader is known comes from this node's open
// Status.
func (c *consulAPI) empty(w http.ResponseWriter, r *http.Request, sq *serviceQuery) {
	if sq.opts.index > 0 {
		t := time.NewTimer(sq.opts.wait)
		select {
		case <-t.C:
		case <-c.h.cfg.Draining: // nil: never
			t.Stop()
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	hdr := &rosterv1.ResponseHeader{}
	if st, err := c.h.cluster.Status(r.Context(), &rosterv1.StatusRequest{}); err == nil {
		hdr.LeaderId, hdr.LastContact = st.LeaderId, st.LastContact
	}
	setQueryMeta(w, sq.opts.index, hdr)
	writeJSON(w, http.StatusOK, []struct{}{})
}

// healthService serves GET /v1/health/service/:service.
func (c *consulAPI) healthService(w http.ResponseWriter, r *http.Request) {
	sq, resp, ok := c.serve(w, r, healthSelectors)
	if !ok {
		return
	}
	out := []consulServiceEntry{}
	for _, in := range resp.Instances {
		if sq.filter != nil && !sq.filter.eval(resolveFrom(instanceFields(in, c.dc))) {
			continue
		}
		out = append(out, consulServiceEntry{
			Node: c.node(in),
			Service: consulService{
				ID: in.Id, Service: in.Service, Tags: orEmpty(in.Tags), Meta: orEmptyMap(in.Metadata),
				Port: int(in.Port), Address: in.Address, Weights: weights(in),
				CreateIndex: in.CreateRevision, ModifyIndex: in.ModRevision,
				Namespace: in.Namespace, Datacenter: c.dc,
			},
			Checks: c.checks(in),
		})
	}
	setQueryMeta(w, resp.ServiceRevision, resp.Header)
	writeJSON(w, http.StatusOK, out)
}

// catalogService serves GET /v1/catalog/service/:service.
func (c *consulAPI) catalogService(w http.ResponseWriter, r *http.Request) {
	sq, resp, ok := c.serve(w, r, catalogSelectors)
	if !ok {
		return
	}
	out := []consulCatalogService{}
	for _, in := range resp.Instances {
		if sq.filter != nil {
			s, l, m := instanceFields(in, c.dc)
			if !sq.filter.eval(resolveFrom(renamed(s), renamed(l), renamed(m))) {
				continue
			}
		}
		out = append(out, consulCatalogService{
			Node: in.Address, Address: in.Address, Datacenter: c.dc,
			TaggedAddresses: map[string]string{}, NodeMeta: map[string]string{},
			ServiceID: in.Id, ServiceName: in.Service, ServiceAddress: in.Address,
			ServiceTags: orEmpty(in.Tags), ServiceMeta: orEmptyMap(in.Metadata), ServicePort: int(in.Port),
			ServiceWeights: weights(in), CreateIndex: in.CreateRevision, ModifyIndex: in.ModRevision,
			Namespace: in.Namespace,
		})
	}
	setQueryMeta(w, resp.ServiceRevision, resp.Header)
	writeJSON(w, http.StatusOK, out)
}

// catalogServices serves GET /v1/catalog/services: each service of the
// namespace with the union of its instances' tags. Its index is the
// registry revision; a blocking query returns once the namespace changes
// after index.
func (c *consulAPI) catalogServices(w http.ResponseWriter, r *http.Request) {
	opts, err := parseQueryOptions(r)
	if err != nil {
		writeConsulError(w, err)
		return
	}
	q := r.URL.Query()
	if q.Get("filter") != "" {
		writeConsulError(w, badRequest("filter is not supported on /v1/catalog/services; filter /v1/catalog/service/:name or /v1/health/service/:name"))
		return
	}
	if _, ok := q["node-meta"]; ok {
		writeConsulError(w, badRequest("node-meta is not supported: Roster has no agent nodes"))
		return
	}
	ns := readNamespace(r)
	if opts.index > 0 {
		if err := c.waitNamespace(r.Context(), ns, opts); err != nil {
			writeConsulError(w, err)
			return
		}
	}
	// One read: each service's tags come with the list, at its revision.
	list, err := c.h.registry.ListServices(r.Context(), &rosterv1.ListServicesRequest{Namespace: ns, Read: opts.read, WithTags: true})
	if err != nil {
		writeConsulError(w, err)
		return
	}
	out := map[string][]string{}
	for _, s := range list.Services {
		out[s.Service] = orEmpty(s.Tags)
	}
	setQueryMeta(w, list.GetHeader().GetRevision(), list.Header)
	writeJSON(w, http.StatusOK, out)
}

// waitNamespace blocks until a change to the namespace after opts.index,
// or opts.wait, through a Registry.Watch stream from that revision. For a
// token that may read only some services of the namespace the watch leaves
// the others out (as Consul filters rather than refuses), so it wakes only
// for what the answer can show. A token that may read no service of it is
// refused the watch; nothing it may see can change, so it waits out the
// wait and is answered the empty list.
func (c *consulAPI) waitNamespace(ctx context.Context, ns string, opts queryOptions) error {
	// The wait ends the watch by cancelling it, not by a deadline: a
	// deadline travels with the call, and the server's copy may end the
	// stream (or the call may fail to start) before this side's context
	// says so, which would be answered as an error. Whatever the stream
	// says once the wait has run out, the answer is the catalog.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var expired atomic.Bool
	timer := time.AfterFunc(opts.wait, func() { expired.Store(true); cancel() })
	defer timer.Stop()
	stream, err := c.h.registry.Watch(ctx, &rosterv1.WatchRequest{
		Namespace: ns, StartRevision: opts.index, ProgressInterval: durationpb.New(time.Minute),
		// Only whether something changed matters here.
		OmitPrevInstance: true,
	})
	for err == nil {
		var msg *rosterv1.WatchResponse
		if msg, err = stream.Recv(); err == nil && (len(msg.Events) > 0 || msg.GetReset_()) {
			return nil
		}
	}
	switch {
	case expired.Load():
		// The wait ran out: answer with what is there, as Consul does.
		return nil
	case errors.Is(err, io.EOF):
		return nil
	case rpc.Reason(err) == rpc.ReasonNodeDraining:
		// The node is shutting down: answer with what is there now, as
		// when the wait runs out, so the client asks again elsewhere
		// without an error.
		return nil
	case hiddenByACL(err):
		select {
		case <-ctx.Done():
		case <-c.h.cfg.Draining: // nil: never
			return nil
		}
		if expired.Load() {
			return nil
		}
		return ctx.Err()
	default:
		return err
	}
}

// agentSelf serves GET /v1/agent/self with what clients read from it:
// the datacenter, the node's name and its member record.
func (c *consulAPI) agentSelf(w http.ResponseWriter, r *http.Request) {
	st, err := c.h.cluster.Status(r.Context(), &rosterv1.StatusRequest{})
	if err != nil {
		writeConsulError(w, err)
		return
	}
	host, port := splitAddr(st.RaftAddr)
	writeJSON(w, http.StatusOK, map[string]any{
		"Config": map[string]any{
			"Datacenter": c.dc, "PrimaryDatacenter": c.dc, "NodeName": st.NodeId, "NodeID": st.NodeId,
			"Server": true, "Version": "roster", "Revision": "",
		},
		"Member": map[string]any{
			"Name": st.NodeId, "Addr": host, "Port": port, "Status": 1,
			"Tags": map[string]string{"role": "roster", "dc": c.dc, "id": st.NodeId},
		},
		"Meta": map[string]string{},
		"Stats": map[string]any{
			"raft": map[string]string{
				"state": st.State, "term": strconv.FormatUint(st.Term, 10),
				"commit_index":  strconv.FormatUint(st.CommitIndex, 10),
				"applied_index": strconv.FormatUint(st.AppliedIndex, 10),
			},
		},
	})
}

func splitAddr(hp string) (string, int) {
	for i := len(hp) - 1; i >= 0; i-- {
		if hp[i] == ':' {
			p, _ := strconv.Atoi(hp[i+1:])
			h := hp[:i]
			if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
				h = h[1 : len(h)-1]
			}
			return h, p
		}
	}
	return hp, 0
}

// statusLeader serves GET /v1/status/leader: the leader's Raft address, or
// "" while there is none.
func (c *consulAPI) statusLeader(w http.ResponseWriter, r *http.Request) {
	m, err := c.h.cluster.Members(r.Context(), &rosterv1.MembersRequest{})
	if err != nil {
		writeConsulError(w, err)
		return
	}
	leader := ""
	for _, mb := range m.Members {
		if mb.Leader {
			leader = mb.RaftAddr
		}
	}
	writeJSON(w, http.StatusOK, leader)
}

// statusPeers serves GET /v1/status/peers: the voters' Raft addresses.
func (c *consulAPI) statusPeers(w http.ResponseWriter, r *http.Request) {
	m, err := c.h.cluster.Members(r.Context(), &rosterv1.MembersRequest{})
	if err != nil {
		writeConsulError(w, err)
		return
	}
	peers := []string{}
	for _, mb := range m.Members {
		if mb.Voter {
			peers = append(peers, mb.RaftAddr)
		}
	}
	writeJSON(w, http.StatusOK, peers)
}

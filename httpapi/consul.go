package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// The Consul-compatible subset: the agent, catalog, health and status
// endpoints that Consul's own client, Prometheus' consul_sd_configs and
// similar tools call. Every handler maps the request onto the Registry and
// Cluster gRPC services; the mapping, and what differs from Consul, is in
// the README's "Consul compatibility" section.

// Blocking query bounds, as Consul's: wait defaults to 5m and is capped at 10m.
const (
	consulDefaultWait = 5 * time.Minute
	consulMaxWait     = 10 * time.Minute
	// consulDefaultDatacenter is what agent/self and every node report
	// when Config.Datacenter is empty.
	consulDefaultDatacenter = "dc1"
)

// consulAPI serves the Consul-compatible routes of one node.
type consulAPI struct {
	h  *Handler
	dc string

	mu sync.Mutex
	// indexes are the last scans of namespaces, which say what services
	// hold a Consul service ID (consul_ids.go); indexed counts their IDs.
	indexes map[string]*idIndex
	indexed int
	// scans are the scans in progress, by index key.
	scans map[string]*idScan
	// clock, when set (tests), replaces time.Now for the indexes' age.
	clock func() time.Time
}

// mountConsul adds the Consul-compatible routes to h's mux.
func (h *Handler) mountConsul() {
	c := &consulAPI{h: h, dc: h.cfg.Datacenter, indexes: map[string]*idIndex{}, scans: map[string]*idScan{}}
	if c.dc == "" {
		c.dc = consulDefaultDatacenter
	}
	m := consulMux{mux: h.mux, routes: http.NewServeMux()}
	m.HandleFunc("PUT /v1/agent/service/register", c.register)
	m.HandleFunc("PUT /v1/agent/service/deregister/{id}", c.deregister)
	m.HandleFunc("PUT /v1/agent/service/maintenance/{id}", c.maintenance)
	m.HandleFunc("PUT /v1/agent/check/pass/{check}", c.checkStatus(rosterv1.HealthStatus_HEALTH_STATUS_PASSING))
	m.HandleFunc("PUT /v1/agent/check/warn/{check}", c.checkStatus(rosterv1.HealthStatus_HEALTH_STATUS_WARNING))
	m.HandleFunc("PUT /v1/agent/check/fail/{check}", c.checkStatus(rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL))
	m.HandleFunc("PUT /v1/agent/check/update/{check}", c.checkUpdate)
	m.HandleFunc("GET /v1/agent/self", c.agentSelf)
	m.HandleFunc("GET /v1/status/leader", c.statusLeader)
	m.HandleFunc("GET /v1/status/peers", c.statusPeers)
	m.HandleFunc("GET /v1/catalog/services", c.catalogServices)
	m.HandleFunc("GET /v1/catalog/service/{service}", c.catalogService)
	m.HandleFunc("GET /v1/health/service/{service}", c.healthService)
	h.mux.HandleFunc("/v1/", m.noRoute)
}

// consulMux mounts Consul routes, each seeing the caller's ACL token as
// the outgoing token of its gRPC calls. routes holds the same patterns
// alone, to tell a wrong method from an unknown path.
type consulMux struct{ mux, routes *http.ServeMux }

// noRoute answers a /v1/ request no route takes as Consul does: 405 with
// Allow when the path is one of its routes under other methods, else 404;
// either with Consul's error shape.
func (m consulMux) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		probe := r.Clone(r.Context())
		probe.Method = method
		if _, pattern := m.routes.Handler(probe); pattern != "" {
			allow = append(allow, method)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeConsulError(w, &consulError{code: http.StatusMethodNotAllowed, msg: fmt.Sprintf("method %s not allowed", r.Method)})
		return
	}
	writeConsulError(w, &consulError{code: http.StatusNotFound, msg: fmt.Sprintf(
		"no such endpoint: %s %s (Roster serves a subset of Consul's HTTP API; see its README)", r.Method, r.URL.Path)})
}

func (m consulMux) HandleFunc(pattern string, fn http.HandlerFunc) {
	m.routes.HandleFunc(pattern, func(http.ResponseWriter, *http.Request) {})
	m.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if tok := consulToken(r); tok != "" {
			r = r.WithContext(metadata.AppendToOutgoingContext(r.Context(), "authorization", "Bearer "+tok))
		}
		fn(w, r)
	})
}

// consulToken returns the ACL token of a Consul API request, where Consul
// takes it from: the X-Consul-Token header, then "Authorization: Bearer",
// then the token query parameter.
func consulToken(r *http.Request) string {
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return r.URL.Query().Get("token")
}

// consulError is a failure with its HTTP status.
type consulError struct {
	code int
	msg  string
}

func (e *consulError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &consulError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// writeConsulError answers err: a consulError with its status, a gRPC status
// mapped to the nearest HTTP status, with the reason in a JSON body.
func writeConsulError(w http.ResponseWriter, err error) {
	code, msg := http.StatusInternalServerError, err.Error()
	if ce, ok := err.(*consulError); ok {
		code = ce.code
	} else if st, ok := status.FromError(err); ok {
		msg = st.Message()
		code = runtime.HTTPStatusFromCode(st.Code()) // the JSON API's mapping
		if st.Code() == codes.PermissionDenied {
			// Consul's words, which its clients look for.
			msg = "Permission denied: " + strings.TrimPrefix(msg, "permission denied: ")
		}
		setRetryAfter(w, code, st)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]any{"error": msg})
}

// namespace returns the namespace of a request: the ns query parameter, or
// "default".
func namespace(r *http.Request) string {
	if ns := r.URL.Query().Get("ns"); ns != "" {
		return ns
	}
	return "default"
}

// readNamespace is the namespace of a read: Consul matches namespace names
// ignoring case, and Roster's are lowercase DNS labels.
func readNamespace(r *http.Request) string { return strings.ToLower(namespace(r)) }

// queryOptions are the parameters Consul's reads share.
type queryOptions struct {
	read  *rosterv1.ReadOptions
	index uint64
	wait  time.Duration
}

// parseQueryOptions reads stale, consistent, index and wait.
func parseQueryOptions(r *http.Request) (queryOptions, error) {
	q := r.URL.Query()
	var o queryOptions
	_, stale := q["stale"]
	_, consistent := q["consistent"]
	switch {
	case stale && consistent:
		return o, badRequest("stale and consistent are mutually exclusive")
	case stale:
		o.read = &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE}
	default:
		// Consul's default mode reads through the leader; a linearizable
		// read is at least as fresh.
		o.read = &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE}
	}
	if s := q.Get("index"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return o, badRequest("index %q is not a non-negative integer", s)
		}
		o.index = n
	}
	o.wait = consulDefaultWait
	if s := q.Get("wait"); s != "" {
		// Consul reads wait with time.ParseDuration, so a unit is required
		// ("10s"; its Go client sends milliseconds, "10000ms") and a value
		// past the duration range (about 290 years) is refused, not wrapped.
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return o, badRequest("Invalid wait time %q: want a positive duration with a unit, such as 30s or 5m (at most %s is waited)", s, consulMaxWait)
		}
		o.wait = min(d, consulMaxWait)
	}
	return o, nil
}

// setQueryMeta sets the headers Consul's clients read from every read:
// the index to block on next, whether a leader is known, and how long ago
// this node heard from it.
func setQueryMeta(w http.ResponseWriter, index uint64, hdr *rosterv1.ResponseHeader) {
	// Index 0 would make the next blocking query return at once.
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	w.Header().Set("X-Consul-KnownLeader", strconv.FormatBool(hdr.GetLeaderId() != ""))
	w.Header().Set("X-Consul-LastContact", strconv.FormatInt(hdr.GetLastContact().AsDuration().Milliseconds(), 10))
}

// consulDuration is a duration in a Consul JSON body: a string ("10s") or a
// number of nanoseconds.
type consulDuration struct {
	d   time.Duration
	set bool
}

func (d *consulDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s == "" {
			return nil
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 10s or 1m", s)
		}
		d.d, d.set = v, true
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("%s is not a duration", b)
	}
	d.d, d.set = time.Duration(n), n != 0
	return nil
}

func (d consulDuration) proto() *durationpb.Duration {
	if !d.set {
		return nil
	}
	return durationpb.New(d.d)
}

// Package httpapi serves Roster over HTTP: the JSON API, a Consul-compatible
// subset, Prometheus metrics, probe endpoints and the web console (/ui/).
// Every handler reaches the node through its gRPC services on an
// in-process connection, so validation, forwarding to the leader, leases
// and read consistency are the gRPC API's own; nothing here writes state
// another way.
package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// Config is what the HTTP front end needs.
type Config struct {
	// Conn reaches this node's gRPC services (rpc.InProcess).
	Conn grpc.ClientConnInterface
	// Logger; a null logger when nil.
	Logger hclog.Logger
	// ReadyTimeout bounds the leader round trip of one /ready probe
	// (default 2s).
	ReadyTimeout time.Duration
	// Metrics is served on /metrics in Prometheus format; no /metrics
	// when nil.
	Metrics prometheus.Gatherer
	// Datacenter is the name the Consul-compatible API reports (default
	// "dc1").
	Datacenter string
	// Pprof serves Go's runtime profiles under /debug/pprof/ (CPU, heap,
	// goroutines, mutex and block profiles, execution traces).
	Pprof bool
	// Draining, when set, is closed when the node starts to shut down
	// (rpc.Server.Draining): blocking queries that wait here rather than
	// in a gRPC call end then and answer what there is, as when their
	// wait runs out. Waits in gRPC calls end with the node's drain anyway.
	Draining <-chan struct{}
}

// Handler is the HTTP front end of one node.
type Handler struct {
	cfg      Config
	logger   hclog.Logger
	registry rosterv1.RegistryClient
	cluster  rosterv1.ClusterClient
	mux      *http.ServeMux
}

// New returns the handler for cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 2 * time.Second
	}
	h := &Handler{
		cfg:      cfg,
		logger:   cfg.Logger,
		registry: rosterv1.NewRegistryClient(cfg.Conn),
		cluster:  rosterv1.NewClusterClient(cfg.Conn),
		mux:      http.NewServeMux(),
	}
	h.mux.HandleFunc("GET /health", h.health)
	h.mux.HandleFunc("GET /ready", h.ready)
	if err := h.mountGateway(context.Background()); err != nil {
		return nil, err
	}
	h.mountMetrics()
	h.mountPprof()
	h.mountConsul()
	h.mountUI()
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, status.Errorf(codes.NotFound, "no such endpoint: %s %s (the JSON API is under %s, the Consul-compatible one under /v1/)", r.Method, r.URL.Path, APIPrefix), http.StatusNotFound)
	})
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reason := invalidUTF8(r)
	if reason == "" {
		reason = unprintableToken(r)
	}
	if reason != "" {
		// Every path segment and query value may reach a protobuf string,
		// which must be UTF-8, and a token gRPC metadata, which must be
		// printable ASCII: refuse them here, once for every route, rather
		// than let the in-process call fail (a 500).
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			writeConsulError(w, badRequest("%s", reason))
		} else {
			writeError(w, status.Error(codes.InvalidArgument, reason), http.StatusBadRequest)
		}
		return
	}
	h.mux.ServeHTTP(w, withClientAddr(r))
}

// unprintableToken says which of r's token carriers (Authorization,
// X-Consul-Token, ?token=) holds a byte that is not printable ASCII, or ""
// when none does. A token travels as gRPC metadata, which must be
// printable ASCII, and no token's secret is anything else.
func unprintableToken(r *http.Request) string {
	for _, c := range []struct{ name, v string }{
		{"the Authorization header", r.Header.Get("Authorization")},
		{"the X-Consul-Token header", r.Header.Get("X-Consul-Token")},
		{"the token query parameter", r.URL.Query().Get("token")},
	} {
		for i := 0; i < len(c.v); i++ {
			if c.v[i] < 0x20 || c.v[i] > 0x7e {
				return c.name + " holds a character that is not printable ASCII; no token does"
			}
		}
	}
	return ""
}

// invalidUTF8 says which part of r's decoded path or query is not valid
// UTF-8, or "" when all of it is.
func invalidUTF8(r *http.Request) string {
	if !utf8.ValidString(r.URL.Path) {
		return fmt.Sprintf("request path %q is not valid UTF-8", r.URL.Path)
	}
	raw := r.URL.RawQuery
	if utf8.ValidString(raw) && !strings.Contains(raw, "%") {
		// Decoding only turns '+' into ' ' and %XX into a byte.
		return ""
	}
	for key, vals := range r.URL.Query() {
		if !utf8.ValidString(key) {
			return fmt.Sprintf("query parameter name %q is not valid UTF-8", key)
		}
		for _, v := range vals {
			if !utf8.ValidString(v) {
				return fmt.Sprintf("query parameter %s=%q is not valid UTF-8", key, v)
			}
		}
	}
	return ""
}

// removedReason is why a node removed from its cluster is neither healthy
// nor ready.
const removedReason = "this node was removed from the cluster; restart it with --join to rejoin"

// health answers 200 while the process serves HTTP at all: a liveness
// probe. Only a node removed from the cluster answers 503 with the reason:
// it will never serve again until it is restarted and joins, which is what
// a failed liveness probe gets it. A node without a leader stays healthy
// (an election ends by itself), and so does one whose own state could not
// be read.
func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ReadyTimeout)
	defer cancel()
	if st, err := h.cluster.Status(ctx, &rosterv1.StatusRequest{}); err == nil && st.State == "removed" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "removed", "reason": removedReason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// ready answers 200 when a leader is known and this node has applied
// everything committed when the probe began (a linearizable read would be
// served now), else 503 with the reason. A node removed from the cluster
// is never ready.
func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ReadyTimeout)
	defer cancel()
	st, err := h.cluster.Status(ctx, &rosterv1.StatusRequest{
		Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE},
	})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"ready": false, "reason": h.notReady(r.Context(), err),
		})
		return
	}
	if st.State == "removed" {
		// It may still have had the leader confirm the read, but it gets
		// no more of the cluster's writes.
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": removedReason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"ready": true, "node_id": st.NodeId, "state": st.State, "leader_id": st.LeaderId,
		"applied_index": st.AppliedIndex, "revision": st.Revision,
	})
}

// notReady says why a /ready probe's linearizable Status failed with err:
// when the probe's time ran out or no leader was found, what this node's
// own state says (no leader known, removed from the cluster, or the leader
// it knows did not confirm in time) rather than "context deadline
// exceeded".
func (h *Handler) notReady(ctx context.Context, err error) string {
	msg := status.Convert(err).Message()
	c := status.Code(err)
	noLeader := c == codes.Unavailable && rpc.Reason(err) == rpc.ReasonNoLeader
	if c != codes.DeadlineExceeded && c != codes.Canceled && !noLeader {
		return msg
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ReadyTimeout)
	defer cancel()
	st, serr := h.cluster.Status(ctx, &rosterv1.StatusRequest{})
	switch {
	case serr != nil:
		return msg
	case st.State == "removed":
		return removedReason
	case st.LeaderId == "":
		return "no leader known"
	default:
		return fmt.Sprintf("leader %s did not confirm a read within %s", st.LeaderId, h.cfg.ReadyTimeout)
	}
}

// writeJSON writes v as the response body with code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

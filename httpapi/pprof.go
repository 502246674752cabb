package httpapi

import (
	"net/http/pprof"
)

// mountPprof serves net/http/pprof's handlers under /debug/pprof/ when
// the node was started with profiling on. The profiles show the process's
// code paths and memory, never registry data, but a CPU profile or a
// trace costs the node while it runs; reach them only from where an
// operator works.
func (h *Handler) mountPprof() {
	if !h.cfg.Pprof {
		return
	}
	h.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	h.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	h.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	h.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	h.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

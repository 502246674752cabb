package httpapi

import (
	"embed"
	"io/fs"
	"net/http"
)

// uiFiles is the web console: plain HTML, CSS and JavaScript, no build
// step. It talks only to the public HTTP API (/api/v1/), so anything it
// does a script can do too.
//
//go:embed ui
var uiFiles embed.FS

// UIPrefix is where the web console is served.
const UIPrefix = "/ui/"

// mountUI serves the console under /ui/ and sends /ui to it.
func (h *Handler) mountUI() {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree always has ui/
	}
	files := http.StripPrefix(UIPrefix, http.FileServerFS(sub))
	h.mux.Handle("GET "+UIPrefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The console's files change with the binary; a browser asks
		// again rather than run an old script against a new API.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		files.ServeHTTP(w, r)
	}))
	h.mux.Handle("GET /ui", http.RedirectHandler(UIPrefix, http.StatusMovedPermanently))
}

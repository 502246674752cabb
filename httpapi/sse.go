package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// watchOpenWait is how long the watch handler waits for the stream's
// first message before it answers 200 and starts the event stream. A
// request the server refuses (a bad name, say) fails at once, so waiting
// this long for the first message lets such a refusal be an HTTP error
// status rather than an error event on an open stream; a valid watch
// whose first message is not due yet (resumed at the head) opens after
// this wait.
var watchOpenWait = time.Second

// watchWriteTimeout bounds the write of one event: a client that reads
// nothing for this long (or vanished without closing its connection) is
// cut off, rather than holding the handler and its gRPC stream.
const watchWriteTimeout = time.Minute

// watch serves Registry.Watch as server-sent events:
//
//	GET /api/v1/watch?namespace=N&service=S&healthy_only=true&start_revision=R
//
// The query takes the fields of WatchRequest (progress_interval=10s,
// start_read.consistency or the short consistency=linearizable, ...).
// Each WatchResponse becomes one event, named reset, events or progress,
// whose id is the revision it completes and whose data is the response in
// protojson. A client that reconnects with Last-Event-ID (as EventSource
// does) resumes after that revision: every change after it, none twice.
// A stream that ends with an error (the node drains, the watcher fell too
// far behind) sends an error event with the error body first.
func (h *Handler) watch(w http.ResponseWriter, r *http.Request) {
	req := &rosterv1.WatchRequest{}
	if err := runtime.PopulateQueryParameters(req, r.URL.Query(), utilities.NewDoubleArray(nil)); err != nil {
		writeError(w, status.Errorf(codes.InvalidArgument, "%v", err), 0)
		return
	}
	if last := strings.TrimSpace(r.Header.Get("Last-Event-ID")); last != "" {
		rev, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			writeError(w, status.Errorf(codes.InvalidArgument, "Last-Event-ID %q is not a revision", last), 0)
			return
		}
		// The header names the last revision the client has; it wins over
		// the start_revision of the URL, which EventSource repeats.
		req.StartRevision = rev
	}
	rc := http.NewResponseController(w)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// The caller's token goes with the call, as the gateway passes it on
	// for every other route: the watch is checked against it, never
	// against more.
	if a := r.Header.Get("Authorization"); a != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
	}
	stream, err := h.registry.Watch(ctx, req)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	type received struct {
		msg *rosterv1.WatchResponse
		err error
	}
	msgs := make(chan received)
	go func() {
		for {
			m, err := stream.Recv()
			select {
			case msgs <- received{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var first *received
	open := time.NewTimer(watchOpenWait)
	select {
	case m := <-msgs:
		open.Stop()
		if m.err != nil {
			writeError(w, m.err, 0)
			return
		}
		first = &m
	case <-open.C:
	case <-ctx.Done():
		return
	}

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	_ = rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	// A comment line first, so a client sees the stream open before the
	// first event.
	ns, svc := req.Namespace, req.Service
	if ns == "" {
		ns = "default"
	}
	if svc == "" {
		svc = "*"
	}
	fmt.Fprintf(bw, ": watch %s/%s from revision %d\n\n", ns, svc, req.StartRevision)
	if bw.Flush() != nil || rc.Flush() != nil {
		return
	}
	send := func(m received) error {
		// Not every ResponseWriter supports deadlines; without one a
		// write waits as long as the connection lets it.
		_ = rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
		if m.err != nil {
			b, err := json.Marshal(newErrorBody(status.Convert(m.err)))
			if err != nil {
				return err
			}
			writeEvent(bw, "error", "", b)
		} else {
			b, err := jsonOptions.Marshal(m.msg)
			if err != nil {
				return err
			}
			writeEvent(bw, eventName(m.msg), strconv.FormatUint(m.msg.Revision, 10), b)
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	}
	if first != nil {
		if err := send(*first); err != nil {
			return
		}
	}
	for {
		select {
		case m := <-msgs:
			if m.err != nil && ctx.Err() != nil {
				return // the client went away
			}
			if err := send(m); err != nil || m.err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// eventName is the SSE event name of a watch message.
func eventName(m *rosterv1.WatchResponse) string {
	switch {
	case m.Reset_:
		return "reset"
	case m.Progress:
		return "progress"
	default:
		return "events"
	}
}

// writeEvent writes one SSE frame. data is one line of JSON: protojson and
// encoding/json escape the newlines inside strings.
func writeEvent(w *bufio.Writer, event, id string, data []byte) {
	w.WriteString("event: " + event + "\n")
	if id != "" {
		w.WriteString("id: " + id + "\n")
	}
	w.WriteString("data: ")
	w.Write(data)
	w.WriteString("\n\n")
}

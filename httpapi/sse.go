package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
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

// MaxWatchNamespaces bounds the namespaces of one GET
// /api/v1/watch/namespaces stream.
const MaxWatchNamespaces = 100

// watch serves Registry.Watch as server-sent events:
//
//	GET /api/v1/watch?namespace=N&service=S&healthy_only=true&start_revision=R
//
// The query takes the fields of WatchRequest (progress_interval=10s,
// start_read.consistency or the short consistency=linearizable, ...), and
// require_leader=true, which asks for a node in touch with a leader as
// gRPC clients do with the roster-require-leader metadata: such a watch is
// refused (503, NO_LEADER) on a node that knows no leader, and ends with
// an error event once its node has been without one for a few seconds.
// Each WatchResponse becomes one event, named reset, events or progress,
// whose id is the revision it completes and whose data is the response in
// protojson. A client that reconnects with Last-Event-ID (as EventSource
// does) resumes after that revision: every change after it, none twice.
// A stream that ends with an error (the node drains, the watcher fell too
// far behind) sends an error event with the error body first.
func (h *Handler) watch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	requireLeader, err := takeRequireLeader(q)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	req := &rosterv1.WatchRequest{}
	if err := runtime.PopulateQueryParameters(req, q, utilities.NewDoubleArray(nil)); err != nil {
		writeError(w, status.Errorf(codes.InvalidArgument, "%v", err), 0)
		return
	}
	if err := resumeFrom(r, req); err != nil {
		writeError(w, err, 0)
		return
	}
	ctx, cancel := context.WithCancel(watchContext(r, requireLeader))
	defer cancel()
	stream, err := h.registry.Watch(ctx, req)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	ns, svc := req.Namespace, req.Service
	if ns == "" {
		ns = "default"
	}
	if svc == "" {
		svc = "*"
	}
	serveEvents(ctx, w, fmt.Sprintf("watch %s/%s from revision %d", ns, svc, req.StartRevision), func() (sseFrame, error) {
		m, err := stream.Recv()
		if err != nil {
			return sseFrame{}, err
		}
		b, err := jsonOptions.Marshal(m)
		if err != nil {
			return sseFrame{}, err
		}
		return sseFrame{event: eventName(m), id: strconv.FormatUint(m.Revision, 10), data: b}, nil
	})
}

// watchNamespaces serves several namespaces' watches over one stream of
// server-sent events, built on Registry.WatchMany:
//
//	GET /api/v1/watch/namespaces?namespace=a&namespace=b&start_revision=R
//
// so that a browser watching many namespaces holds one connection, not one
// per namespace (HTTP/1.1 allows six per host, shared by every tab). The
// query takes namespace (repeated, at most MaxWatchNamespaces), the
// WatchRequest fields every namespace's watch shares (start_revision,
// progress_interval, omit_prev_instance, healthy_only, start_read) and
// require_leader=true as /api/v1/watch does. Events:
//
//   - reset, events, progress: {"namespaces": [...], "response": WatchResponse},
//     a message of the named namespaces' watches;
//   - ended: {"namespace": "a", "error": {...}}, a namespace whose watch the
//     node ended or refused (its token may not read every service of it,
//     the watcher limit): it is no longer watched, the others go on;
//   - error: the whole stream failed, as on /api/v1/watch.
//
// The stream closes once every namespace's watch has ended. An event's id
// is the lowest revision every namespace still watched has reached, so a
// client that reconnects with Last-Event-ID misses nothing; a namespace
// that was ahead may see a change again.
func (h *Handler) watchNamespaces(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	requireLeader, err := takeRequireLeader(q)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	var names []string
	seen := map[string]bool{}
	for _, n := range q["namespace"] {
		if n == "" {
			n = "default"
		}
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	q.Del("namespace")
	switch {
	case len(names) == 0:
		writeError(w, status.Error(codes.InvalidArgument, "name at least one namespace (namespace=a&namespace=b)"), 0)
		return
	case len(names) > MaxWatchNamespaces:
		writeError(w, status.Errorf(codes.InvalidArgument, "%d namespaces; one stream watches at most %d", len(names), MaxWatchNamespaces), 0)
		return
	case q.Has("service"):
		writeError(w, status.Error(codes.InvalidArgument, "service is not a parameter of /api/v1/watch/namespaces; watch one service with /api/v1/watch"), 0)
		return
	}
	tmpl := &rosterv1.WatchRequest{}
	if err := runtime.PopulateQueryParameters(tmpl, q, utilities.NewDoubleArray(nil)); err != nil {
		writeError(w, status.Errorf(codes.InvalidArgument, "%v", err), 0)
		return
	}
	if err := resumeFrom(r, tmpl); err != nil {
		writeError(w, err, 0)
		return
	}
	ctx, cancel := context.WithCancel(watchContext(r, requireLeader))
	defer cancel()
	stream, err := h.registry.WatchMany(ctx)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	for i, n := range names {
		req := &rosterv1.WatchRequest{
			Namespace: n, HealthyOnly: tmpl.HealthyOnly, StartRevision: tmpl.StartRevision,
			ProgressInterval: tmpl.ProgressInterval, StartRead: tmpl.StartRead, OmitPrevInstance: tmpl.OmitPrevInstance,
		}
		err := stream.Send(&rosterv1.WatchManyRequest{Action: &rosterv1.WatchManyRequest_Create{
			Create: &rosterv1.WatchCreate{WatchId: uint64(i + 1), Request: req},
		}})
		if err != nil {
			// The stream failed; Recv below returns why.
			break
		}
	}
	m := &namespaceWatches{names: names, live: len(names), at: make([]uint64, len(names)), ended: make([]bool, len(names))}
	for i := range m.at {
		m.at[i] = tmpl.StartRevision
	}
	serveEvents(ctx, w, fmt.Sprintf("watch %d namespaces from revision %d", len(names), tmpl.StartRevision), func() (sseFrame, error) {
		if m.live == 0 {
			return sseFrame{}, errStreamDone
		}
		msg, err := stream.Recv()
		if err != nil {
			return sseFrame{}, err
		}
		return m.frame(msg)
	})
}

// namespaceWatches is the state of one /api/v1/watch/namespaces stream:
// watch i+1 is names[i]'s.
type namespaceWatches struct {
	names []string
	// at is the revision each watch has reached; ended, the watches that
	// ended; live counts the others.
	at    []uint64
	ended []bool
	live  int
}

// frame turns one WatchMany message into an event.
func (m *namespaceWatches) frame(msg *rosterv1.WatchManyResponse) (sseFrame, error) {
	var idx []int
	for _, id := range msg.WatchIds {
		if id >= 1 && id <= uint64(len(m.names)) {
			idx = append(idx, int(id-1))
		}
	}
	if msg.Ended != nil {
		var ns string
		if len(idx) > 0 {
			i := idx[0]
			ns = m.names[i]
			if !m.ended[i] {
				m.ended[i] = true
				m.live--
			}
		}
		b, err := json.Marshal(map[string]any{"namespace": ns, "error": newErrorBody(status.FromProto(msg.Ended))})
		if err != nil {
			return sseFrame{}, err
		}
		return sseFrame{event: "ended", id: m.resumeID(), data: b}, nil
	}
	resp := msg.GetResponse()
	names := make([]string, 0, len(idx))
	for _, i := range idx {
		names = append(names, m.names[i])
		if resp.GetReset_() {
			// A reset replaces the state, at its revision: one from a
			// start the node did not have (another history) is below
			// the start, and the id must go down with it.
			m.at[i] = resp.GetRevision()
		} else {
			m.at[i] = max(m.at[i], resp.GetRevision())
		}
	}
	raw, err := jsonOptions.Marshal(resp)
	if err != nil {
		return sseFrame{}, err
	}
	b, err := json.Marshal(struct {
		Namespaces []string        `json:"namespaces"`
		Response   json.RawMessage `json:"response"`
	}{names, raw})
	if err != nil {
		return sseFrame{}, err
	}
	return sseFrame{event: eventName(resp), id: m.resumeID(), data: b}, nil
}

// resumeID is the lowest revision the live watches have reached, where a
// client that reconnects resumes; "" before they have reached any.
func (m *namespaceWatches) resumeID() string {
	low := uint64(0)
	first := true
	for i, at := range m.at {
		if m.ended[i] {
			continue
		}
		if first || at < low {
			low, first = at, false
		}
	}
	if first || low == 0 {
		return ""
	}
	return strconv.FormatUint(low, 10)
}

// takeRequireLeader reads require_leader from q and takes it out: it is
// no field of WatchRequest but the watch's rpc.RequireLeaderKey metadata.
func takeRequireLeader(q url.Values) (bool, error) {
	v, ok := q["require_leader"]
	if !ok {
		return false, nil
	}
	q.Del("require_leader")
	s := v[len(v)-1]
	if s == "" {
		return true, nil
	}
	on, err := strconv.ParseBool(s)
	if err != nil {
		return false, status.Errorf(codes.InvalidArgument, "require_leader %q is not true or false", s)
	}
	return on, nil
}

// resumeFrom applies the Last-Event-ID header of r to req: the header
// names the last revision the client has and wins over the
// start_revision of the URL, which EventSource repeats.
func resumeFrom(r *http.Request, req *rosterv1.WatchRequest) error {
	last := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if last == "" {
		return nil
	}
	rev, err := strconv.ParseUint(last, 10, 64)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "Last-Event-ID %q is not a revision", last)
	}
	req.StartRevision = rev
	return nil
}

// watchContext returns the context of a watch's gRPC call for r: the
// caller's token goes with it, as the gateway passes it on for every other
// route, so the watch is checked against it and never against more; with
// requireLeader, so does rpc.RequireLeaderKey.
func watchContext(r *http.Request, requireLeader bool) context.Context {
	ctx := r.Context()
	if a := r.Header.Get("Authorization"); a != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
	}
	if requireLeader {
		ctx = metadata.AppendToOutgoingContext(ctx, rpc.RequireLeaderKey, "true")
	}
	return ctx
}

// sseFrame is one server-sent event.
type sseFrame struct {
	event, id string
	data      []byte
}

// errStreamDone ends an event stream with no error event.
var errStreamDone = errors.New("event stream done")

// serveEvents answers with the frames next returns, as server-sent events,
// until next fails or ctx ends. next runs on a goroutine of its own. A
// failure before the first frame, or within watchOpenWait, is answered
// with its HTTP status and error body; a later one with an error event
// (none for errStreamDone or io.EOF), which ends the stream. comment opens
// the stream, so a client sees it open before the first event.
func serveEvents(ctx context.Context, w http.ResponseWriter, comment string, next func() (sseFrame, error)) {
	type received struct {
		frame sseFrame
		err   error
	}
	msgs := make(chan received)
	go func() {
		for {
			f, err := next()
			select {
			case msgs <- received{f, err}:
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
			if errors.Is(m.err, errStreamDone) || errors.Is(m.err, io.EOF) {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			writeError(w, m.err, 0)
			return
		}
		first = &m
	case <-open.C:
	case <-ctx.Done():
		return
	}

	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	_ = rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, ": %s\n\n", comment)
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
			writeEvent(bw, m.frame.event, m.frame.id, m.frame.data)
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
			if m.err != nil && (ctx.Err() != nil || errors.Is(m.err, errStreamDone) || errors.Is(m.err, io.EOF)) {
				return // the client went away, or the stream is over
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

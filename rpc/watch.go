package rpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// Watch bounds.
const (
	DefaultProgressInterval = 5 * time.Second
	MinProgressInterval     = 100 * time.Millisecond
	MaxProgressInterval     = 10 * time.Minute
	// DefaultWatchMaxLag is how many events may be committed while a
	// watcher's stream is blocked before it is cut off.
	DefaultWatchMaxLag = 10_000
	// DefaultWatchBatchEvents is how many events one message carries at
	// most, unless a single revision has more (revisions are never split).
	DefaultWatchBatchEvents = 500
)

// MetaLastRevision is the ErrorInfo metadata key of the revision a slow
// watcher was cut off at: everything up to it was sent, so a watch resumed
// with start_revision set to it loses nothing.
const MetaLastRevision = "last_revision"

// WatchOptions tune watch streams.
type WatchOptions struct {
	// MaxLag is how many events may be committed while a watcher's client
	// reads nothing (its sends make no progress) before the stream ends
	// with ResourceExhausted (default DefaultWatchMaxLag). A watcher the
	// retained history trims past is cut off too.
	MaxLag int
	// BatchEvents bounds the events of one message (default
	// DefaultWatchBatchEvents).
	BatchEvents int
	// LeaderlessTimeout is how long the node may know no leader before it
	// ends the streams that require one (RequireLeaderKey; default
	// DefaultLeaderlessTimeout).
	LeaderlessTimeout time.Duration
}

// WatchStats are counters of this server's watch streams.
type WatchStats struct {
	// Active watches now: Watch streams and the watches of WatchMany
	// streams.
	Active int64
	// Streams open now: Watch and WatchMany streams.
	Streams int64
	// CutOff streams ended because their consumer was too slow.
	CutOff uint64
	// Encodings of events to wire bytes; with sharing, about one per event
	// however many watchers receive it.
	Encodings uint64
}

// watchState is the server's shared watch bookkeeping.
type watchState struct {
	active    atomic.Int64
	streams   atomic.Int64
	cutoff    atomic.Uint64
	encodings atomic.Uint64
	// wire memoizes event encodings, shared by every watcher.
	wire wireCache
	// prefix caches the encoded header and revision of event messages at
	// the latest revision, shared by every watcher sending that revision.
	prefix atomic.Pointer[watchPrefix]

	// hooks, set by tests only, force interleavings of WatchMany's group
	// reader.
	hooks atomic.Pointer[watchHooks]

	// asks holds, per progress_id, the channels of the streams that
	// RequestProgress pokes.
	asksMu sync.Mutex
	asks   map[string]map[chan struct{}]bool
}

// listenProgress registers a stream's progress_id; the returned channel
// receives a value when a bookmark is asked for. Call the func to stop.
func (ws *watchState) listenProgress(id string) (<-chan struct{}, func()) {
	if id == "" {
		return nil, func() {}
	}
	ch := make(chan struct{}, 1)
	ws.asksMu.Lock()
	if ws.asks == nil {
		ws.asks = map[string]map[chan struct{}]bool{}
	}
	if ws.asks[id] == nil {
		ws.asks[id] = map[chan struct{}]bool{}
	}
	ws.asks[id][ch] = true
	ws.asksMu.Unlock()
	return ch, func() {
		ws.asksMu.Lock()
		delete(ws.asks[id], ch)
		if len(ws.asks[id]) == 0 {
			delete(ws.asks, id)
		}
		ws.asksMu.Unlock()
	}
}

// askProgress pokes every stream named id and returns how many there are.
func (ws *watchState) askProgress(id string) int {
	ws.asksMu.Lock()
	defer ws.asksMu.Unlock()
	for ch := range ws.asks[id] {
		select {
		case ch <- struct{}{}:
		default: // already asked; one bookmark answers both
		}
	}
	return len(ws.asks[id])
}

// RequestProgress implements rosterv1.RegistryServer.
func (s *Server) RequestProgress(_ context.Context, req *rosterv1.RequestProgressRequest) (*rosterv1.RequestProgressResponse, error) {
	if req.ProgressId == "" {
		return nil, invalidf("progress_id is required")
	}
	n := s.watch.askProgress(req.ProgressId)
	if n == 0 {
		return nil, fmt.Errorf("no watch stream named %q on this node: %w", truncate(req.ProgressId), errNoSuchStream)
	}
	return &rosterv1.RequestProgressResponse{Streams: uint32(n)}, nil
}

// watchHooks are test hooks; nil fields are skipped.
type watchHooks struct {
	// beforePark runs when a caught-up watch of a WatchMany stream at pos
	// is about to park with its stream's group.
	beforePark func(pos uint64)
	// afterPass runs after each pass of a group reader, with the head it
	// took before the pass.
	afterPass func(head uint64)
	// beforeQueue runs in a group reader's pass that has made messages
	// for n watches, before it tells the sender of them.
	beforeQueue func(n int)
	// beforePass runs before each pass of a group reader.
	beforePass func()
	// senderWaits runs when a WatchMany sender with messages to send
	// waits for a watch to reach the head.
	senderWaits func()
	// aheadWait runs when a watch whose start is beyond the node's head
	// begins to wait for it.
	aheadWait func(start, head uint64)
	// aheadTimer replaces the timer bounding that wait.
	aheadTimer func(d time.Duration) <-chan time.Time
}

type watchPrefix struct {
	rev   uint64
	at    time.Time
	bytes []byte
}

// WatchStats returns the counters of this server's watch streams.
func (s *Server) WatchStats() WatchStats {
	return WatchStats{
		Active:    s.watch.active.Load(),
		Streams:   s.watch.streams.Load(),
		CutOff:    s.watch.cutoff.Load(),
		Encodings: s.watch.encodings.Load(),
	}
}

// slowWatcherError ends a watch whose consumer fell too far behind.
type slowWatcherError struct {
	last   uint64
	behind int
	limit  int
	// many: a WatchMany stream, whose watches share the consumer; last is
	// one watch's, meaningless for the others, so it is not reported.
	many bool
}

func (e *slowWatcherError) Error() string {
	if e.many {
		return "watch stream too slow: one of its watches fell too far behind while its client read nothing; resume each watch from the last revision it received"
	}
	if e.behind < 0 {
		return fmt.Sprintf("watcher too slow: the retained history moved past it; everything up to revision %d was sent, resume from it", e.last)
	}
	return fmt.Sprintf("watcher too slow: %d events behind, more than %d of them committed while it read nothing; everything up to revision %d was sent, resume from it",
		e.behind, e.limit, e.last)
}

// WatchResumeRevision returns the revision carried by a watch stream's
// ResourceExhausted status (see MetaLastRevision).
func WatchResumeRevision(err error) (uint64, bool) {
	v, ok := errorMetadata(err, ReasonSlowWatcher, MetaLastRevision)
	if !ok {
		return 0, false
	}
	var rev uint64
	if _, err := fmt.Sscan(v, &rev); err != nil {
		return 0, false
	}
	return rev, true
}

// watcher is one Watch stream: its filter and where it stands.
type watcher struct {
	s           *Server
	namespace   string
	service     string
	healthyOnly bool
	omitPrev    bool
	progress    time.Duration
	maxLag      int
	batch       int
	// readable, when set, leaves out the services the watch's token may
	// not read (a namespace watch of a narrow token; acl.go watchFilter).
	readable func(service string) bool
	// filterID tells readable apart from other watches' filters (0: none).
	filterID uint64
}

// filterIDs numbers the watch filters (watcher.filterID).
var filterIDs atomic.Uint64

// setFilter gives w the filter readable (nil: none).
func (w *watcher) setFilter(readable func(string) bool) {
	w.readable = readable
	if readable != nil {
		w.filterID = filterIDs.Add(1)
	}
}

type outMsg struct {
	msg any // *preEncoded, *rosterv1.WatchResponse or *rosterv1.WatchManyResponse
	rev uint64
	// taken, when set, is called once the sender has taken the message.
	taken func()
}

// Watch implements rosterv1.RegistryServer. It is served from this node's
// own applied state: a reset (start_revision 0, or a revision no longer
// retained), then every revision after it from the shared history, whole
// revisions per message, in order. A handler goroutine reads the history;
// a sender goroutine writes to the stream, at most one message behind, so
// a watcher whose client stops reading holds only its position and is cut
// off once it trails the head by more than MaxLag events.
func (s *Server) Watch(req *rosterv1.WatchRequest, stream grpc.ServerStreamingServer[rosterv1.WatchResponse]) error {
	w, err := s.newWatcher(req)
	if err != nil {
		return err
	}
	// aclStream checked the request; this gets its filter.
	readable, err := s.authorizeWatch(stream.Context(), req)
	if err != nil {
		return err
	}
	w.setFilter(readable)
	s.watch.streams.Add(1)
	defer s.watch.streams.Add(-1)
	// ctx ends with the stream or when the node drains. The selects below
	// wait on it instead of on the stream's context, s.draining and s.stop:
	// a write wakes every caught-up watcher of the node at once, and each
	// wake locks every channel of its select, so channels shared by all
	// watchers are contended once per watcher per write.
	ctx, cancel, err := s.streamContext(stream.Context())
	if err != nil {
		return err
	}
	defer cancel()
	// The sender exits when the handler returns (done) or a send fails. A
	// send blocked on flow control is interrupted by gRPC when the handler
	// returns, as gRPC finishes the stream.
	out := newWatchOut(stream, s.node.Store().History(), false)
	done := make(chan struct{})
	defer close(done)
	go out.run(done)
	return s.serveWatch(ctx, w, req, out.add(0, req.StartRevision), out)
}

// serveWatch runs one watch until it fails or ctx ends: it reads the
// history from the request's start and hands each message to out through
// run, which holds at most one message the sender has not taken.
func (s *Server) serveWatch(ctx context.Context, w *watcher, req *rosterv1.WatchRequest, run *watchRun, out *watchOut) error {
	s.watch.active.Add(1)
	defer s.watch.active.Add(-1)
	ended := func() error {
		if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return err // the node draining, or without a leader
		}
		if s.isDraining() {
			return errDraining
		}
		return ctx.Err()
	}
	hist := s.node.Store().History()

	// at is where the reader stands, for the watch lag metric: the sender
	// is at most one message behind it.
	defer s.trackWatcher(&run.at)()

	var resetAt uint64 // revision of the last reset handed to the sender
	progress := time.NewTimer(w.progress)
	defer progress.Stop()
	asked, unlisten := s.watch.listenProgress(req.ProgressId)
	defer unlisten()
	// put hands one message to the sender. While the sender is blocked it
	// checks, at every new revision, whether the watcher has fallen too far
	// behind.
	// stuck is where the sender stood when put last found it busy, and how
	// far behind the head it was then: a watcher is cut off once more than
	// MaxLag events are committed while its sender makes no progress. A
	// watcher that keeps sending, however far behind (say, catching up
	// after a resume), is left alone until the history trims past it.
	var stuck struct {
		valid  bool
		rev    uint64
		behind int
	}
	put := func(m outMsg) error {
		for {
			select {
			case run.sendq <- m:
				out.queued(run)
				progress.Reset(w.progress)
				return nil
			default:
			}
			// Lag counts from the last revision sent, or from the reset
			// queued after it: what came before a reset does not matter.
			last := run.delivered.Load()
			from := max(last, resetAt)
			behind, notify, err := hist.Behind(from)
			if err == nil && (!stuck.valid || stuck.rev != from) {
				stuck.valid, stuck.rev, stuck.behind = true, from, behind
			}
			switch {
			case errors.Is(err, store.ErrCompacted) && from >= hist.LastRestore():
				// Trimmed while blocked: the history no longer holds what
				// this watcher needs next.
				s.watch.cutoff.Add(1)
				return &slowWatcherError{last: last, behind: -1, limit: w.maxLag}
			case err == nil && behind-stuck.behind > w.maxLag:
				s.watch.cutoff.Add(1)
				return &slowWatcherError{last: last, behind: behind, limit: w.maxLag}
			}
			// A restore while blocked is not the watcher's fault: once this
			// message is sent it gets a reset.
			out.setState(run, runWaiting)
			select {
			case run.sendq <- m:
				out.queued(run)
				run.state.Store(runBusy)
				progress.Reset(w.progress)
				return nil
			case <-notify:
			case <-out.failed:
				return out.err
			case <-ctx.Done():
				return ended()
			}
			run.state.Store(runBusy)
		}
	}

	pos := req.StartRevision
	needReset := pos == 0
	if needReset && req.StartRead != nil {
		out.setState(run, runWaiting)
		if err := s.readBarrier(ctx, req.StartRead); err != nil {
			return err
		}
		run.state.Store(runBusy)
	}
	if head, _ := hist.Head(); pos > head {
		// A start beyond this node's state: a client resuming here what it
		// saw on a node ahead of this one, which this one reaches within
		// moments; or one whose revision comes from another history (a
		// dev node restarted, a cluster re-created), which this node may
		// never reach, or reach with other changes. Wait, as a read with
		// min_revision does; if the node does not get there, send a reset
		// of its own state so the client replaces what it has. Either
		// way no bookmark claims a revision the node does not have.
		out.setState(run, runWaiting)
		reached, err := s.waitHead(ctx, pos, head)
		if err != nil {
			return ended()
		}
		if !reached {
			needReset = true
			// Nothing this node sent: a cut-off before the reset is sent
			// tells the client to start over.
			run.delivered.Store(0)
		}
		run.state.Store(runBusy)
	}
	for {
		if s.isDraining() {
			// Checked here too: a watcher that never catches up would
			// otherwise not look at draining until it did.
			return errDraining
		}
		if needReset {
			m, rev, err := w.reset()
			if err != nil {
				return err
			}
			if err := put(outMsg{msg: m, rev: rev}); err != nil {
				return err
			}
			pos, needReset, resetAt = rev, false, rev
			run.at.Store(pos)
		}
		revs, _, notify, err := hist.Since(pos, w.batch)
		if errors.Is(err, store.ErrCompacted) {
			needReset = true
			continue
		}
		if err != nil {
			return err
		}
		if len(revs) > 0 {
			last := revs[len(revs)-1].Revision
			if m := w.events(revs); m != nil {
				if err := put(outMsg{msg: m, rev: last}); err != nil {
					return err
				}
			}
			pos = last
			run.at.Store(pos)
			continue
		}
		if g := out.group; g != nil {
			// Caught up on a WatchMany stream: the stream's group reads
			// on for the watch until it hands it back or the watch has
			// something else to do.
			if h := s.watch.hooks.Load(); h != nil && h.beforePark != nil {
				h.beforePark(pos)
			}
			if !g.park(run, w, pos) {
				continue // the head moved on meanwhile
			}
			timer, ask := false, false
			select {
			case <-run.park.wake:
			case <-progress.C:
				timer = true
			case <-asked:
				ask = true
			case <-out.failed:
				g.unpark(run)
				return out.err
			case <-ctx.Done():
				g.unpark(run)
				return ended()
			}
			got := g.unpark(run)
			pos = got.pos
			if got.reset {
				// The reset tells the revision: no bookmark needed.
				needReset = true
				continue
			}
			if got.back != nil {
				if err := put(*got.back); err != nil {
					return err
				}
				timer = false // the message is news enough
			}
			if timer && !got.putAt.IsZero() {
				// The group sent a message since the timer was set: the
				// interval counts from it.
				if since := time.Since(got.putAt); since < w.progress {
					progress.Reset(w.progress - since)
					timer = false
				}
			}
			if timer || ask {
				m := &rosterv1.WatchResponse{Header: s.header(pos), Progress: true, Revision: pos}
				if err := put(outMsg{msg: m, rev: pos}); err != nil {
					return err
				}
				progress.Reset(w.progress)
			}
			continue
		}
		// Caught up: wait for a change, or send a bookmark when it is time
		// or when one is asked for.
		out.setState(run, runIdle)
		bookmark := false
		select {
		case <-notify:
		case <-progress.C:
			bookmark = true
		case <-asked:
			bookmark = true
		case <-out.failed:
			return out.err
		case <-ctx.Done():
			return ended()
		}
		run.state.Store(runBusy)
		if bookmark {
			// Everything up to pos has been handed to the sender, which
			// sends in order.
			m := &rosterv1.WatchResponse{Header: s.header(pos), Progress: true, Revision: pos}
			if err := put(outMsg{msg: m, rev: pos}); err != nil {
				return err
			}
			progress.Reset(w.progress)
		}
	}
}

// waitHead waits, for at most the read timeout, until this node's history
// reaches revision rev (it stood at head), and reports whether it did. The
// error is ctx's, when ctx ends first.
func (s *Server) waitHead(ctx context.Context, rev, head uint64) (bool, error) {
	hooks := s.watch.hooks.Load()
	var expire <-chan time.Time
	if hooks != nil && hooks.aheadTimer != nil {
		expire = hooks.aheadTimer(s.opts.ReadTimeout)
	} else {
		t := time.NewTimer(s.opts.ReadTimeout)
		defer t.Stop()
		expire = t.C
	}
	if hooks != nil && hooks.aheadWait != nil {
		hooks.aheadWait(rev, head)
	}
	hist := s.node.Store().History()
	for {
		head, notify := hist.Head()
		if head >= rev {
			return true, nil
		}
		select {
		case <-notify:
		case <-expire:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

func (s *Server) newWatcher(req *rosterv1.WatchRequest) (*watcher, error) {
	ns, err := validateNamespace(req.Namespace)
	if err != nil {
		return nil, err
	}
	if req.Service != "" {
		if err := validateService(req.Service); err != nil {
			return nil, err
		}
	}
	w := &watcher{
		s: s, namespace: ns, service: req.Service, healthyOnly: req.HealthyOnly,
		omitPrev: req.OmitPrevInstance,
		progress: DefaultProgressInterval,
		maxLag:   s.opts.Watch.MaxLag,
		batch:    s.opts.Watch.BatchEvents,
	}
	if req.ProgressInterval != nil {
		d := req.ProgressInterval.AsDuration()
		if d < 0 || d > MaxProgressInterval {
			return nil, invalidf("progress_interval must be between 0 and %s", MaxProgressInterval)
		}
		if d > 0 {
			w.progress = max(d, MinProgressInterval)
		}
	}
	if w.maxLag <= 0 {
		w.maxLag = DefaultWatchMaxLag
	}
	if w.batch <= 0 {
		w.batch = DefaultWatchBatchEvents
	}
	return w, nil
}

func (w *watcher) match(k store.Key) bool {
	return k.Namespace == w.namespace && (w.service == "" || k.Service == w.service) &&
		(w.readable == nil || w.readable(k.Service))
}

// reset returns the watcher's complete state at the store's current
// revision. The revision comes from the same view as the instances, and
// the stream continues from the history after exactly that revision, so
// nothing committed in between is lost or repeated.
func (w *watcher) reset() (*rosterv1.WatchResponse, uint64, error) {
	view := w.s.node.Store().View()
	rev := view.Revision()
	out := &rosterv1.WatchResponse{Header: w.s.header(rev), Reset_: true, Revision: rev}
	add := func(inst *store.Instance) bool {
		if w.readable != nil && !w.readable(inst.Service) {
			return true
		}
		if !w.healthyOnly || inst.Healthy() {
			out.Events = append(out.Events, &rosterv1.Event{
				Type: rosterv1.Event_TYPE_PUT, Revision: inst.ModRevision, Instance: toAPIInstance(inst),
			})
		}
		return true
	}
	if w.service != "" {
		_, insts, err := view.Service(nil, w.namespace, w.service)
		if err != nil {
			return nil, 0, err
		}
		for _, inst := range insts {
			add(inst)
		}
	} else if err := view.Namespace(w.namespace, add); err != nil {
		return nil, 0, err
	}
	return out, rev, nil
}

// events assembles one message from whole revisions: the shared prefix
// (header and revision), then each matching event's shared encoding. It
// returns nil when no event matches.
func (w *watcher) events(revs []store.Revision) *preEncoded {
	var p *preEncoded
	for _, r := range revs {
		for _, e := range r.Events {
			if !w.match(e.Key()) {
				continue
			}
			b := w.s.eventWire(r.Revision, e, w.healthyOnly, w.omitPrev)
			if b == nil {
				continue
			}
			if p == nil {
				p = &preEncoded{parts: make([][]byte, 1, 8)}
			}
			p.add(b)
		}
	}
	if p == nil {
		return nil
	}
	prefix := w.s.watchPrefix(revs[len(revs)-1].Revision)
	p.parts[0] = prefix
	p.size += len(prefix)
	return p
}

// watchPrefix returns the encoded header and revision fields of an event
// message at rev, shared by every watcher sending rev while it is fresh.
func (s *Server) watchPrefix(rev uint64) []byte {
	now := time.Now()
	if c := s.watch.prefix.Load(); c != nil && c.rev == rev && now.Sub(c.at) < 100*time.Millisecond {
		return c.bytes
	}
	b, err := proto.Marshal(&rosterv1.WatchResponse{Header: s.header(rev), Revision: rev})
	if err != nil {
		// Header fields are plain scalars; marshal cannot fail.
		panic(fmt.Sprintf("rpc: encode watch header: %v", err))
	}
	s.watch.prefix.Store(&watchPrefix{rev: rev, at: now, bytes: b})
	return b
}

// eventWire returns the encoding of e as one entry of WatchResponse.events
// (field tag, length and Event bytes), memoized in the server's wire cache
// so that every watcher shares one encoding; nil when a healthy-only
// watcher does not see e. A healthy-only watcher sees an instance leaving
// the healthy set as a DELETE and one entering it as a PUT. With omitPrev
// the event carries no prev_instance. rev must be e's own revision (its
// Revision group's): the encoding is memoized by e alone.
func (s *Server) eventWire(rev uint64, e *store.Event, healthyOnly, omitPrev bool) []byte {
	asDelete := false
	if healthyOnly {
		prevHealthy := e.Prev != nil && e.Prev.Healthy()
		switch {
		case e.Type() == store.EventPut && e.Instance.Healthy():
		case e.Type() == store.EventPut && prevHealthy:
			asDelete = true
		case e.Type() == store.EventDelete && prevHealthy:
		default:
			return nil
		}
	}
	w := s.watch.wire.entry(e).forms(omitPrev)
	withPrev := func(ev *rosterv1.Event) *rosterv1.Event {
		if e.Prev != nil && !omitPrev {
			ev.PrevInstance = toAPIInstance(e.Prev)
		}
		return ev
	}
	if asDelete {
		return w.deleteWire(func() []byte {
			return s.encodeEvent(withPrev(&rosterv1.Event{
				Type: rosterv1.Event_TYPE_DELETE, Revision: rev, Instance: keyOnly(e.Key()),
			}))
		})
	}
	return w.plainWire(func() []byte {
		ev := &rosterv1.Event{Revision: rev}
		switch e.Type() {
		case store.EventPut:
			ev.Type, ev.Instance = rosterv1.Event_TYPE_PUT, toAPIInstance(e.Instance)
		default:
			ev.Type, ev.Instance = rosterv1.Event_TYPE_DELETE, keyOnly(e.Key())
		}
		return s.encodeEvent(withPrev(ev))
	})
}

// eventsField is WatchResponse.events' field number.
const eventsField = 2

func (s *Server) encodeEvent(ev *rosterv1.Event) []byte {
	s.watch.encodings.Add(1)
	body, err := proto.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("rpc: encode watch event: %v", err))
	}
	b := protowire.AppendTag(make([]byte, 0, len(body)+8), eventsField, protowire.BytesType)
	b = protowire.AppendBytes(b, body)
	return b
}

// errorMetadata returns one metadata value of the Roster ErrorInfo with
// reason attached to err.
func errorMetadata(err error, reason, key string) (string, bool) {
	info := errorInfo(err)
	if info == nil || info.Reason != reason {
		return "", false
	}
	v, ok := info.Metadata[key]
	return v, ok
}

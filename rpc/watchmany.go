package rpc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// maxEndsQueued is how many ended messages a WatchMany stream holds for a
// client that does not read, beyond its live watches, before it stops
// reading the client's requests.
const maxEndsQueued = 64

// watchRun is one watch being served: its reader hands messages to the
// stream's sender through sendq, one at a time.
type watchRun struct {
	id    uint64
	sendq chan outMsg // capacity 1: the message the sender has not taken
	// delivered is the revision of the last message sent.
	delivered atomic.Uint64
	// at is where the reader stands (everything up to it is handed over).
	at atomic.Uint64
	// state is runBusy, runIdle or runWaiting.
	state atomic.Int32
	// park is what the stream's group holds of the watch while it is
	// parked there (WatchMany only; watchGroup).
	park parking
}

// Reader states, which tell a WatchMany sender whether a watch is about to
// hand it a message for the newest revision.
const (
	// runBusy: reading the history or building a message.
	runBusy int32 = iota
	// runIdle: caught up at at, waiting for a newer revision.
	runIdle
	// runWaiting: waiting for something other than the history (the
	// sender to take its message, a read barrier) or ending.
	runWaiting
)

// watchOut is the sending side of one Watch or WatchMany stream: a single
// sender writes the messages its watches queue, each watch's in the order
// it queued them. On a WatchMany stream a message several watches queued
// alike goes once, with each of their ids.
type watchOut struct {
	stream grpc.ServerStream
	hist   *store.History
	many   bool
	// group reads for the stream's caught-up watches (WatchMany only).
	group *watchGroup

	mu    sync.Mutex
	ready []*watchRun // the watches with a message in sendq, in order
	// runs are the stream's watches (WatchMany only). Before it sends,
	// the sender waits until every one of them has handed over what it
	// makes of the newest revision (settled), so that the watches seeing a
	// change alike get it in one message. scanAt is how far the runs are
	// known to be settled at scanHead: a run stays settled until the
	// sender sends or the head moves, so each run is looked at about once
	// per send, however often the sender is poked.
	runs     []*watchRun
	scanAt   int
	scanHead uint64
	// kick wakes the sender: a message queued, or a watch changed state.
	kick chan struct{}
	// failed is closed when a send fails; err is why.
	failed chan struct{}
	err    error
}

func newWatchOut(stream grpc.ServerStream, hist *store.History, many bool) *watchOut {
	return &watchOut{
		stream: stream, hist: hist, many: many,
		kick:   make(chan struct{}, 1),
		failed: make(chan struct{}),
	}
}

// add registers a watch that starts after revision from.
func (o *watchOut) add(id, from uint64) *watchRun {
	r := &watchRun{id: id, sendq: make(chan outMsg, 1)}
	r.delivered.Store(from)
	r.at.Store(from)
	if o.many {
		o.mu.Lock()
		o.runs = append(o.runs, r)
		o.mu.Unlock()
	}
	return r
}

// remove forgets a watch: the sender no longer waits for it.
func (o *watchOut) remove(r *watchRun) {
	if o.many {
		o.mu.Lock()
		if i := slices.Index(o.runs, r); i >= 0 {
			o.runs[i] = o.runs[len(o.runs)-1]
			o.runs[len(o.runs)-1] = nil
			o.runs = o.runs[:len(o.runs)-1]
		}
		o.scanAt = 0
		o.mu.Unlock()
		o.poke()
	}
}

// queued tells the sender that r has put a message in its sendq.
func (o *watchOut) queued(r *watchRun) {
	o.mu.Lock()
	o.ready = append(o.ready, r)
	o.mu.Unlock()
	o.poke()
}

// queuedAll tells the sender that each of rs has put a message in its
// sendq. It does not poke the sender: the caller does once it is done.
func (o *watchOut) queuedAll(rs []*watchRun) {
	if len(rs) > 0 {
		o.mu.Lock()
		o.ready = append(o.ready, rs...)
		o.mu.Unlock()
	}
}

// setState records r's state; on a WatchMany stream the sender may have
// been waiting for it.
func (o *watchOut) setState(r *watchRun, st int32) {
	r.state.Store(st)
	if o.many {
		o.poke()
	}
}

// sendFailed returns why a send failed, or nil while none has.
func (o *watchOut) sendFailed() error {
	select {
	case <-o.failed:
		return o.err
	default:
		return nil
	}
}

func (o *watchOut) poke() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// run is the sender: it exits when done is closed or a send fails.
func (o *watchOut) run(done <-chan struct{}) {
	var batch []*watchRun
	var msgs []sentMsg
	deferred := 0
	for {
		select {
		case <-o.kick:
		case <-done:
			return
		}
		o.mu.Lock()
		n := len(o.ready)
		o.mu.Unlock()
		if n == 0 {
			continue
		}
		if o.many && !o.settled(&deferred) {
			// A watch is about to queue more: it pokes when it has.
			if o.group != nil {
				if h := o.group.hooks.Load(); h != nil && h.senderWaits != nil {
					h.senderWaits()
				}
			}
			continue
		}
		deferred = 0
		o.mu.Lock()
		batch, o.ready = o.ready, batch[:0]
		o.scanAt = 0
		o.mu.Unlock()
		msgs = msgs[:0]
		for _, r := range batch {
			m := <-r.sendq
			if m.taken != nil {
				m.taken()
			}
			msgs = append(msgs, sentMsg{r, m})
		}
		if err := o.write(msgs); err != nil {
			o.err = err
			close(o.failed)
			return
		}
		clear(msgs)
	}
}

// settled reports whether no watch of the stream is still about to queue a
// message for the newest revision: each is waiting on something other than
// the history, or caught up with it. deferred counts the times in a row it
// said no; past a bound it says yes: a watch whose filter matches nothing
// can chase a fast-moving head without ever standing still at it.
func (o *watchOut) settled(deferred *int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if *deferred >= 4*len(o.runs)+16 {
		return true
	}
	_, head := o.hist.Bounds()
	if head != o.scanHead {
		o.scanHead, o.scanAt = head, 0
	}
	for ; o.scanAt < len(o.runs); o.scanAt++ {
		r := o.runs[o.scanAt]
		switch r.state.Load() {
		case runBusy:
			*deferred++
			return false
		case runIdle:
			if r.at.Load() < head {
				*deferred++
				return false
			}
		}
	}
	return true
}

type sentMsg struct {
	r *watchRun
	m outMsg
}

// write sends msgs (at most one per watch). On a WatchMany stream event
// messages made of the same bytes go once, naming every watch they are for.
func (o *watchOut) write(msgs []sentMsg) error {
	if !o.many {
		for _, m := range msgs {
			if err := o.stream.SendMsg(m.m.msg); err != nil {
				return err
			}
			m.r.delivered.Store(m.m.rev)
		}
		return nil
	}
	var ids []uint64
	var group []*watchRun
	for i := range msgs {
		if msgs[i].r == nil {
			continue // sent with an earlier one
		}
		ids, group = append(ids[:0], msgs[i].r.id), append(group[:0], msgs[i].r)
		var out any
		switch m := msgs[i].m.msg.(type) {
		case *preEncoded:
			for j := i + 1; j < len(msgs); j++ {
				if p, ok := msgs[j].m.msg.(*preEncoded); ok && msgs[j].r != nil && msgs[j].m.rev == msgs[i].m.rev && sameEvents(m, p) {
					ids, group = append(ids, msgs[j].r.id), append(group, msgs[j].r)
					msgs[j].r = nil
				}
			}
			out = wrapMany(ids, m)
		case *rosterv1.WatchResponse:
			out = &rosterv1.WatchManyResponse{WatchIds: []uint64{msgs[i].r.id}, Response: m}
		default: // a *rosterv1.WatchManyResponse: a watch's end
			out = m
		}
		if err := o.stream.SendMsg(out); err != nil {
			return err
		}
		for _, r := range group {
			r.delivered.Store(msgs[i].m.rev)
		}
	}
	return nil
}

// sameEvents reports whether a and b, two event messages completing the
// same revision, carry the same events. Their first parts, the header and
// revision, may differ in the header's node status (applied index, last
// contact) if built at different times; either is true of both.
func sameEvents(a, b *preEncoded) bool {
	if len(a.parts) != len(b.parts) {
		return false
	}
	for i := 1; i < len(a.parts); i++ {
		if !bytes.Equal(a.parts[i], b.parts[i]) {
			return false
		}
	}
	return true
}

// WatchManyResponse field numbers.
const (
	manyIDsField      = 1
	manyResponseField = 2
)

// wrapMany returns p, an encoded WatchResponse, as the response of a
// WatchManyResponse for ids; p's parts are shared, not copied.
func wrapMany(ids []uint64, p *preEncoded) *preEncoded {
	n := 0
	for _, id := range ids {
		n += protowire.SizeVarint(id)
	}
	head := make([]byte, 0, 2*protowire.SizeVarint(uint64(max(n, p.size)))+n+2)
	head = protowire.AppendTag(head, manyIDsField, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(n))
	for _, id := range ids {
		head = protowire.AppendVarint(head, id)
	}
	head = protowire.AppendTag(head, manyResponseField, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(p.size))
	parts := make([][]byte, 0, len(p.parts)+1)
	parts = append(parts, head)
	parts = append(parts, p.parts...)
	return &preEncoded{parts: parts, size: len(head) + p.size}
}

// WatchMany implements rosterv1.RegistryServer: the watches a client
// creates on the stream, each served as Watch serves one (serveWatch), their
// messages written by one sender (watchOut). A watch that fails on its own
// (its request, its token, the watcher limit, its read barrier) ends with a
// message naming it; what concerns the stream (a send failing, a client
// too slow, the node draining) ends the stream.
func (s *Server) WatchMany(stream grpc.BidiStreamingServer[rosterv1.WatchManyRequest, rosterv1.WatchManyResponse]) error {
	s.watch.streams.Add(1)
	defer s.watch.streams.Add(-1)
	sctx, end, err := s.streamContext(stream.Context())
	if err != nil {
		return err
	}
	defer end()
	ctx, cancel := context.WithCancelCause(sctx)
	defer cancel(nil)
	out := newWatchOut(stream, s.node.Store().History(), true)
	out.group = newWatchGroup(out.hist, out, &s.watch.hooks)
	done := make(chan struct{})
	go out.run(done)
	go out.group.run(done)
	var wg sync.WaitGroup
	defer func() {
		cancel(nil)
		wg.Wait()
		close(done)
	}()
	client, conn := clientIdentity(ctx)
	// slots bound the watches of the stream, live or with their ended
	// message not yet taken by the sender: a client that creates and
	// cancels watches, or has them refused, while reading nothing cannot
	// make the stream hold more. The per-connection watcher limit (which
	// live watches cannot pass anyway) and maxEndsQueued more; none when
	// that limit is off.
	var slots chan struct{}
	if limit := s.opts.Limits.MaxWatchersPerConnection; limit > 0 {
		slots = make(chan struct{}, limit+maxEndsQueued)
	}

	// watches are the stream's watches until their ended message is
	// queued: until then their id is taken.
	type entry struct{ cancel context.CancelFunc }
	var mu sync.Mutex
	watches := map[uint64]*entry{}
	reqs := make(chan *rosterv1.WatchManyRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	ended := func() error {
		if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if s.isDraining() {
			return errDraining
		}
		return ctx.Err()
	}
	for {
		var m *rosterv1.WatchManyRequest
		select {
		case m = <-reqs:
		case err := <-recvErr:
			if !errors.Is(err, io.EOF) {
				return err
			}
			// The client sends nothing more; its watches go on.
			recvErr = nil
			continue
		case <-ctx.Done():
			return ended()
		}
		switch a := m.Action.(type) {
		case *rosterv1.WatchManyRequest_Create:
			id, req := a.Create.WatchId, a.Create.GetRequest()
			if req == nil {
				req = &rosterv1.WatchRequest{}
			}
			mu.Lock()
			_, dup := watches[id]
			mu.Unlock()
			if id == 0 || dup {
				return invalidf("watch_id %d is 0 or the id of a watch of this stream that has not ended", id)
			}
			release := func() {}
			if slots != nil {
				// Waiting here reads nothing more from the client.
				select {
				case slots <- struct{}{}:
					release = func() { <-slots }
				case <-ctx.Done():
					return ended()
				}
			}
			wctx, wcancel := context.WithCancel(ctx)
			e := &entry{cancel: wcancel}
			mu.Lock()
			watches[id] = e
			mu.Unlock()
			forget := func() {
				mu.Lock()
				if watches[id] == e {
					delete(watches, id)
				}
				mu.Unlock()
			}
			run := out.add(id, req.StartRevision)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer wcancel()
				defer forget()
				err := s.serveOneOfMany(wctx, client, conn, req, run, out)
				out.setState(run, runWaiting)
				defer out.remove(run)
				if ctx.Err() != nil {
					return // the stream is ending
				}
				var slow *slowWatcherError
				if errors.As(err, &slow) {
					// The watches share one consumer: it is slow for all.
					slow.many = true
					cancel(slow)
					return
				}
				if errors.Is(err, errDraining) {
					cancel(err)
					return
				}
				if e := out.sendFailed(); e != nil {
					cancel(e)
					return
				}
				st := status.Convert(toStatus(err))
				if wctx.Err() != nil {
					st = status.New(codes.Canceled, "watch canceled")
				}
				end := &rosterv1.WatchManyResponse{WatchIds: []uint64{id}, Ended: st.Proto()}
				select {
				case run.sendq <- outMsg{msg: end, rev: run.delivered.Load(), taken: release}:
					out.queued(run)
				case <-out.failed:
				case <-ctx.Done():
				}
			}()
		case *rosterv1.WatchManyRequest_Cancel:
			mu.Lock()
			if e := watches[a.Cancel.WatchId]; e != nil {
				e.cancel()
			}
			mu.Unlock()
		default:
			return invalidf("a WatchMany message must create or cancel a watch")
		}
	}
}

// serveOneOfMany checks and serves one watch of a WatchMany stream as Watch
// would: its request, its token, the read rate of its client (a watch
// created costs what opening a Watch stream does) and the watcher limit of
// its connection.
func (s *Server) serveOneOfMany(ctx context.Context, client, conn string, req *rosterv1.WatchRequest, run *watchRun, out *watchOut) error {
	w, err := s.newWatcher(req)
	if err != nil {
		return err
	}
	readable, err := s.authorizeWatch(ctx, req)
	if err != nil {
		return err
	}
	w.setFilter(readable)
	if !exempt(ctx, rosterv1.Registry_WatchMany_FullMethodName) {
		if s.limiter != nil && client != "" {
			if err := s.limiter.allow(client, false); err != nil {
				return err
			}
		}
		limit := s.opts.Limits.MaxWatchersPerConnection
		if !s.watchers.acquire(conn, limit) {
			return &limitError{msg: "this connection has " + itoa(limit) +
				" open watches, the limit per connection (close some, or open another connection)", reason: ReasonWatcherLimit}
		}
		defer s.watchers.release(conn)
	}
	return s.serveWatch(ctx, w, req, run, out)
}

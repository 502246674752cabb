package client

import (
	"context"
	"errors"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// watchBuffer is how many messages a watch of a shared stream holds that
// its caller has not taken. Past it the watch is dropped from the stream
// (errWatchBehind) and resumes, from the last revision its caller took, once
// the caller reads again: a caller that stops reading never holds up the
// client's other watches.
const watchBuffer = 64

// errWatchBehind ends a watch of a shared stream whose caller fell
// watchBuffer messages behind; Watch resumes it on the same endpoint.
var errWatchBehind = status.Error(codes.ResourceExhausted,
	"watch: the caller fell behind the messages of its shared stream; resuming from the last revision it took")

// requireLeaderKey asks the server to refuse a watch stream while it knows
// no leader and to end it once it has known none for a while (rpc's
// RequireLeaderKey): a node cut off from the majority would otherwise go on
// confirming a list that no longer changes there. The watch then resumes on
// another endpoint from its last revision.
const requireLeaderKey = "roster-require-leader"

func requireLeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, requireLeaderKey, "true")
}

// errNoWatchMany: the server has no WatchMany (a version before it); the
// watch goes over a Watch stream of its own instead.
var errNoWatchMany = errors.New("server has no WatchMany")

// watchMux carries the client's watches to one endpoint over one WatchMany
// stream, opened when the first watch needs it and closed when the last
// one ends. The server sends a message several watches receive alike once.
type watchMux struct {
	mu            sync.Mutex
	cur           *muxStream
	unimplemented bool
}

// muxStream is one WatchMany stream and the watches it carries.
type muxStream struct {
	m      *watchMux
	stream grpc.BidiStreamingClient[rosterv1.WatchManyRequest, rosterv1.WatchManyResponse]
	cancel context.CancelFunc
	// done is closed when the stream has failed; err is why.
	done chan struct{}
	err  error

	sendMu sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	watches map[uint64]*muxWatch
}

// muxWatch is one watch of a muxStream, read like a Watch stream.
type muxWatch struct {
	s   *muxStream
	id  uint64
	ctx context.Context
	ch  chan muxItem
	// behind is closed by the stream's reader when ch was full: what
	// follows is dropped, the reader cancels the watch on the server,
	// and Recv ends the watch once ch is drained.
	behind   chan struct{}
	isBehind bool // the reader's own flag
}

type muxItem struct {
	resp *rosterv1.WatchResponse
	err  error // the watch ended: the status its Watch stream would end with
}

// watchRecv is a Watch stream or one watch of a WatchMany stream.
type watchRecv interface {
	Recv() (*rosterv1.WatchResponse, error)
}

// openWatch opens the watch req on endpoint i: a watch of the endpoint's
// shared WatchMany stream, or a Watch stream of its own when the caller
// passes call options or outgoing metadata (which belong to one call), or
// the server predates WatchMany. The returned func ends the watch.
//
// Every watch requires a leader (requireLeaderKey) but one that anyNode
// allows to start from a node without one, which goes on a Watch stream
// of its own: a WatchMany stream requires a leader for all its watches.
func (c *Client) openWatch(ctx context.Context, i int, req *rosterv1.WatchRequest, anyNode bool, opts []grpc.CallOption) (watchRecv, func(), error) {
	m := &c.muxes[i]
	_, hasMD := metadata.FromOutgoingContext(ctx)
	m.mu.Lock()
	shared := len(opts) == 0 && !hasMD && !anyNode && !m.unimplemented && !c.opts.noWatchMany
	m.mu.Unlock()
	if !shared {
		if !anyNode {
			ctx = requireLeader(ctx)
		}
		stream, err := rosterv1.NewRegistryClient(c.conns[i]).Watch(ctx, req, opts...)
		return stream, func() {}, err
	}
	w, err := c.muxWatch(ctx, i, req)
	if err != nil {
		return nil, nil, err
	}
	return w, w.end, nil
}

// muxWatch creates req as a watch of endpoint i's WatchMany stream, opening
// the stream when there is none.
func (c *Client) muxWatch(ctx context.Context, i int, req *rosterv1.WatchRequest) (*muxWatch, error) {
	m := &c.muxes[i]
	m.mu.Lock()
	s := m.cur
	if s == nil {
		sctx, cancel := context.WithCancel(requireLeader(context.Background()))
		stream, err := rosterv1.NewRegistryClient(c.conns[i]).WatchMany(sctx)
		if err != nil {
			cancel()
			m.mu.Unlock()
			return nil, err
		}
		s = &muxStream{m: m, stream: stream, cancel: cancel, done: make(chan struct{}), watches: map[uint64]*muxWatch{}}
		m.cur = s
		go s.recv()
		// A closed client ends the stream, and with it every watch.
		go func() {
			select {
			case <-c.closed:
				cancel()
			case <-s.done:
			}
		}()
	}
	s.mu.Lock()
	s.nextID++
	w := &muxWatch{s: s, id: s.nextID, ctx: ctx, ch: make(chan muxItem, watchBuffer), behind: make(chan struct{})}
	s.watches[w.id] = w
	s.mu.Unlock()
	m.mu.Unlock()
	// A send fails only when the stream has: Recv reports why.
	_ = s.send(&rosterv1.WatchManyRequest{Action: &rosterv1.WatchManyRequest_Create{
		Create: &rosterv1.WatchCreate{WatchId: w.id, Request: req}}})
	return w, nil
}

func (s *muxStream) send(m *rosterv1.WatchManyRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(m)
}

// noWatchMany reports whether err is a gRPC server's answer that it has no
// WatchMany method (a server older than it). An HTTP 404 from a proxy in
// front of the cluster, which grpc-go also reads as Unimplemented, says
// nothing of the servers behind it: it is a failure of that stream, which
// the watch retries (the discovery cache's, until it is served again),
// and the endpoint keeps its shared stream.
func noWatchMany(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unimplemented &&
		!strings.HasPrefix(st.Message(), "unexpected HTTP status code")
}

// recv reads the stream and hands each message to the watches it names,
// until the stream fails; then every watch reads the failure.
func (s *muxStream) recv() {
	m := s.m
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			m.mu.Lock()
			if m.cur == s {
				m.cur = nil
			}
			if noWatchMany(err) {
				m.unimplemented = true
				err = errNoWatchMany
			}
			m.mu.Unlock()
			s.err = err
			close(s.done)
			s.cancel()
			return
		}
		var item muxItem
		if e := resp.GetEnded(); e != nil {
			// The status the watch's Watch stream would have ended with,
			// its details too; an end is an end even without a code.
			if item.err = status.FromProto(e).Err(); item.err == nil {
				item.err = status.Error(codes.Unknown, "watch ended by the server without a status")
			}
		}
		for _, id := range resp.GetWatchIds() {
			s.mu.Lock()
			w := s.watches[id]
			s.mu.Unlock()
			if w == nil || w.isBehind {
				continue // ended here already, or to be resumed
			}
			if item.err == nil {
				// One value for every watch named: messages are shared
				// and read-only (see Watch). A copy each would cost the
				// client as much as decoding a message per watch.
				item.resp = resp.GetResponse()
			}
			select {
			case w.ch <- item:
			default:
				// Its caller is not reading: the others must not wait,
				// and the server need not serve it meanwhile.
				w.isBehind = true
				close(w.behind)
				go func() {
					_ = s.send(&rosterv1.WatchManyRequest{Action: &rosterv1.WatchManyRequest_Cancel{
						Cancel: &rosterv1.WatchCancel{WatchId: w.id}}})
				}()
			}
		}
	}
}

// Recv returns the watch's next message, or why it ended.
func (w *muxWatch) Recv() (*rosterv1.WatchResponse, error) {
	select {
	case it := <-w.ch:
		return it.resp, it.err
	default:
	}
	select {
	case it := <-w.ch:
		return it.resp, it.err
	case <-w.behind:
		select {
		case it := <-w.ch:
			return it.resp, it.err
		default:
		}
		return nil, errWatchBehind
	case <-w.s.done:
		// What was handed over before the failure comes first.
		select {
		case it := <-w.ch:
			return it.resp, it.err
		default:
		}
		return nil, w.s.err
	case <-w.ctx.Done():
		return nil, status.FromContextError(w.ctx.Err()).Err()
	}
}

// end forgets the watch and asks the server to end it, unless the stream's
// reader has done so (the watch fell behind); the stream closes when it
// carries no watch any more.
func (w *muxWatch) end() {
	s := w.s
	// Under the mux's lock, so that no watch is added to a stream being
	// closed.
	s.m.mu.Lock()
	s.mu.Lock()
	delete(s.watches, w.id)
	idle := len(s.watches) == 0
	if idle && s.m.cur == s {
		s.m.cur = nil
	}
	s.mu.Unlock()
	s.m.mu.Unlock()
	if idle {
		s.cancel() // the server ends the stream's watches with it
		return
	}
	select {
	case <-s.done:
		return
	case <-w.behind:
		// The stream's reader has cancelled it when it fell behind.
		return
	default:
	}
	_ = s.send(&rosterv1.WatchManyRequest{Action: &rosterv1.WatchManyRequest_Cancel{
		Cancel: &rosterv1.WatchCancel{WatchId: w.id}}})
}

package client

import (
	"context"
	"errors"
	"io"
	"iter"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// Watch streams the changes req asks for and keeps streaming across stream
// failures. Ranging over the result yields each WatchResponse in order; it
// ends after yielding one non-nil error: the caller's context ending, the
// client being closed, a failure that a retry cannot fix (an invalid
// request, for example), or a refusal of the client's token
// (codes.PermissionDenied or codes.Unauthenticated) once as many streams in
// a row as the client has endpoints have been refused. One node's refusal
// moves the watch on to the next endpoint: a node may not yet have applied
// a token the others know. Stopping the range cancels the stream.
//
// When the stream breaks (codes.Unavailable, a connection lost, the server
// ending it) Watch reconnects, to the next endpoint when the current one is
// unreachable, with start_revision set to the last revision it has fully
// delivered. codes.ResourceExhausted, which a server sends to a watcher too
// slow to keep up, is resumed the same way on the same endpoint. Anything
// already delivered is filtered out of the resumed stream, so the caller
// sees neither a gap nor a repeat. A reset (the requested revision is no
// longer in the server's history) is passed on as it is: the caller replaces
// its state with it.
//
// A start_read is sent only while nothing has been delivered: it shapes the
// first reset, and a resumed stream starts from a revision instead.
//
// The watches of one client to one endpoint share a WatchMany stream
// (unless the client was made WithoutWatchMany, or the call passes call
// options or outgoing metadata, or the server predates WatchMany: then each
// has a Watch stream of its own), and a message several of them receive
// alike is one value for all of them. Treat what Watch yields as
// read-only, as the discovery cache's instances: proto.Clone a message to
// change it.
//
// Every other field of req (namespace, service, healthy_only,
// progress_interval, progress_id, omit_prev_instance) goes as it is with
// each stream, the resumed ones too. Set
// omit_prev_instance when the events' new state is all you keep, as the
// discovery cache does: an update's event is then about half the size.
//
// Watch retries an unreachable cluster for as long as ctx lasts and yields
// nothing meanwhile; pass OnWatchRetry to hear of each failure it retries.
func (c *Client) Watch(ctx context.Context, req *rosterv1.WatchRequest, opts ...grpc.CallOption) iter.Seq2[*rosterv1.WatchResponse, error] {
	hooks := watchHooks{}
	opts = slices.DeleteFunc(slices.Clone(opts), func(o grpc.CallOption) bool {
		r, ok := o.(watchRetryOption)
		if ok {
			hooks.retry = r.f
		}
		return ok
	})
	return c.watch(ctx, req, hooks, opts)
}

// WatchRetry is a failure a Watch retries: the endpoint could not be
// reached, or its stream failed or ended.
type WatchRetry struct {
	// Endpoint is the address of the endpoint that failed.
	Endpoint string
	// Err is why.
	Err error
}

// OnWatchRetry returns a call option for Watch (and only Watch): f is
// called with each failure the watch goes on from, before it tries again,
// a refusal of the client's token that moves the watch to the next
// endpoint included. f runs in the goroutine ranging over the watch,
// between two of its values, so it needs no lock of its own against the
// loop's body; it should return soon. It is not sent with the stream: a
// watch given only this option still shares its endpoint's WatchMany
// stream.
func OnWatchRetry(f func(WatchRetry)) grpc.CallOption {
	return watchRetryOption{f: f}
}

// watchRetryOption is OnWatchRetry's option; Watch takes it out of the
// call options before it opens a stream.
type watchRetryOption struct {
	grpc.EmptyCallOption
	f func(WatchRetry)
}

// watchHooks are how the discovery cache's watches differ from Watch.
type watchHooks struct {
	// degrade: when set and the request's start_read is linearizable, a
	// first reset that no endpoint could confirm (every one has been tried
	// without a message) is asked for again at the serving node's own
	// state, and degrade is called once: a discovery cache would rather
	// start from the freshest list it can reach than from none while the
	// cluster has no quorum.
	degrade func(error)
	// failing: when set, no answer but InvalidArgument ends the watch. A
	// refusal of the client's token (a node may not yet have applied a
	// new token), or a code no Roster node sends a watch for a passing
	// reason (Unknown, Unimplemented, NotFound, FailedPrecondition... which
	// a proxy or load balancer in front of the cluster can answer while it
	// is redeployed) is retried, on the next endpoint, with the usual
	// backoff, and failing is called with it each time one more stream
	// fails so once as many in a row as there are endpoints have. A
	// message delivered starts the count again. A request the cluster
	// finds invalid stays invalid, and an error of the client's own (not
	// a gRPC status) is not the cluster's answer: both still end it.
	failing func(error)
	// retry: when set, called with each failure the watch goes on from
	// (OnWatchRetry).
	retry func(WatchRetry)
}

// watch is Watch, with the discovery cache's hooks.
func (c *Client) watch(ctx context.Context, req *rosterv1.WatchRequest, hooks watchHooks, opts []grpc.CallOption) iter.Seq2[*rosterv1.WatchResponse, error] {
	return func(yield func(*rosterv1.WatchResponse, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		w := &watchResume{revision: req.GetStartRevision(), startRead: req.GetStartRead()}
		failures := 0
		undelivered := 0 // streams in a row that ended before their first message
		refusals := 0    // streams refused (or failing, see watchHooks) since the last message delivered
		for {
			if err := streamPause(ctx, c, failures); err != nil {
				yield(nil, err)
				return
			}
			i := int(c.current.Load()) % len(c.conns)
			if _, err := c.connect(ctx, i); err != nil {
				if ctx.Err() != nil || errors.Is(err, ErrClosed) {
					yield(nil, err)
					return
				}
				if hooks.retry != nil {
					hooks.retry(WatchRetry{Endpoint: c.addrs[i], Err: err})
				}
				c.moveOn(i)
				failures++
				continue
			}
			delivered, stopped, err := w.stream(ctx, c, i, req, yield, opts)
			if errors.Is(err, errNoWatchMany) && !delivered {
				continue // again, over a Watch stream of its own
			}
			if stopped {
				return
			}
			if ctx.Err() != nil {
				yield(nil, status.FromContextError(ctx.Err()).Err())
				return
			}
			if delivered {
				failures, undelivered, refusals = 0, 0, 0
			}
			switch {
			case refusal(err) || (hooks.failing != nil && retriedByCache(err)):
				// Not counted as undelivered: a refusal says nothing
				// about the cluster's quorum.
				if refusals++; refusals >= len(c.conns) {
					if hooks.failing == nil {
						yield(nil, err)
						return
					}
					hooks.failing(err)
				}
			case !resumable(err):
				yield(nil, err)
				return
			case !delivered:
				undelivered++
			}
			if hooks.retry != nil && err != errDegradedStartDone {
				hooks.retry(WatchRetry{Endpoint: c.addrs[i], Err: err})
			}
			if status.Code(err) != codes.ResourceExhausted {
				c.moveOn(i)
			}
			failures++
			if hooks.degrade != nil && w.revision == 0 && undelivered >= len(c.conns) &&
				w.startRead.GetConsistency() == rosterv1.Consistency_CONSISTENCY_LINEARIZABLE {
				w.startRead = nil
				// From a node's own state, which needs no leader.
				w.anyNode = true
				hooks.degrade(err)
			}
		}
	}
}

// errDegradedStartDone ends the stream of a degraded start (watchHooks)
// once its first list is in: the watch resumes on a stream that requires a
// leader, so a node cut off from the majority does not go on confirming it.
var errDegradedStartDone = status.Error(codes.Unavailable, "watch: the first list, from a node's own state, is in; resuming on a node with a leader")

// watchResume remembers how far a watch has been delivered.
type watchResume struct {
	// revision is the last revision fully delivered to the caller.
	revision uint64
	// startRead shapes the first reset; see rosterv1.WatchRequest.
	startRead *rosterv1.ReadOptions
	// anyNode lets a stream that has no reset yet start on a node that
	// knows no leader (a degraded start, see watchHooks); once the watch
	// has its first list, its streams require a leader again.
	anyNode bool
}

// stream runs one watch on endpoint i from w.revision until it fails or the
// caller stops. It reports whether anything was delivered and whether the
// caller stopped.
func (w *watchResume) stream(ctx context.Context, c *Client, i int, req *rosterv1.WatchRequest, yield func(*rosterv1.WatchResponse, error) bool, opts []grpc.CallOption) (delivered, stopped bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The caller's request as it is, but for where the stream starts: a
	// field copied by hand is a field a later one forgets.
	r := &rosterv1.WatchRequest{}
	if req != nil {
		r = proto.CloneOf(req)
	}
	r.StartRevision, r.StartRead = w.revision, w.startReadFor()
	anyNode := w.anyNode && w.revision == 0
	stream, end, err := c.openWatch(ctx, i, r, anyNode, opts)
	if err != nil {
		return false, false, err
	}
	defer end()
	for {
		resp, err := stream.Recv()
		if err != nil {
			return delivered, false, err
		}
		resp, ok := w.accept(resp)
		if !ok {
			continue
		}
		delivered = true
		if !yield(resp, nil) {
			return true, true, nil
		}
		if anyNode {
			// The degraded start has its list; from here on only a node
			// in touch with a leader may confirm it, even when the list
			// is at revision 0 (a cluster never written to).
			w.anyNode = false
			return true, false, errDegradedStartDone
		}
	}
}

// startReadFor is the start_read of the next stream: only a stream that
// starts from nothing gets one.
func (w *watchResume) startReadFor() *rosterv1.ReadOptions {
	if w.revision != 0 {
		return nil
	}
	return w.startRead
}

// accept advances the delivered revision past resp and returns what of resp
// is new to the caller; false when nothing is.
func (w *watchResume) accept(resp *rosterv1.WatchResponse) (*rosterv1.WatchResponse, bool) {
	rev := resp.GetRevision()
	if resp.GetReset_() {
		w.revision = rev
		return resp, true
	}
	var kept []*rosterv1.Event
	for _, ev := range resp.GetEvents() {
		if ev.GetRevision() > w.revision {
			kept = append(kept, ev)
		}
		rev = max(rev, ev.GetRevision())
	}
	if rev < w.revision || (len(kept) == 0 && !resp.GetProgress()) {
		return nil, false
	}
	w.revision = rev
	if len(kept) == len(resp.GetEvents()) {
		return resp, true
	}
	return &rosterv1.WatchResponse{
		Header:   resp.GetHeader(),
		Events:   kept,
		Progress: resp.GetProgress(),
		Revision: resp.GetRevision(),
	}, true
}

// resumable reports whether a watch or keepalive stream that ended with err
// should be opened again.
func resumable(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal,
		codes.DeadlineExceeded, codes.Canceled:
		// DeadlineExceeded and Canceled only reach here when the caller's
		// context is still live: the server or a proxy ended the stream.
		return true
	}
	return false
}

// retriedByCache reports whether err, which ended a watch stream and is
// not resumable, is one that the discovery cache retries all the same
// (watchHooks.failing): any gRPC status but InvalidArgument.
func retriedByCache(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() != codes.InvalidArgument && !resumable(err)
}

// refusal reports whether err is the cluster refusing the client's token:
// unknown to the node (it may not have applied a new token yet) or lacking
// a rule. Another node, or the same one a little later, may accept it.
func refusal(err error) bool {
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// streamPause waits before reopening a stream after failures consecutive
// failed attempts: not at all after the first, then 100ms doubling to 3s.
func streamPause(ctx context.Context, c *Client, failures int) error {
	if failures <= 1 {
		select {
		case <-c.closed:
			return ErrClosed
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		default:
			return nil
		}
	}
	return c.sleep(ctx, min(100*time.Millisecond<<min(failures-2, 5), 3*time.Second))
}

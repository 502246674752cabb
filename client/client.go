package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// DefaultConnectTimeout is how long a call waits for an endpoint's connection
// before it gives up on that endpoint and moves to the next one.
const DefaultConnectTimeout = 3 * time.Second

// DefaultRetryBackoff is the pause before the second attempt of a call; later
// attempts wait twice as long as the one before.
const DefaultRetryBackoff = 50 * time.Millisecond

// MaxResponseBytes is the largest response the client accepts.
const MaxResponseBytes = 256 << 20

// ErrNoAddresses is returned by New when it is given no address.
var ErrNoAddresses = errors.New("no server addresses")

// ErrClosed is returned by calls made after Close, and by lookups,
// subscriptions, registrations and watches that Close ends. It is a gRPC
// status with codes.Canceled, the code grpc-go gives a call on a closed
// connection; check for it with errors.Is. A call cut short in flight by
// Close fails with grpc-go's own codes.Canceled instead, which may have
// reached the server; ErrClosed means that nothing was sent, or that what
// was sent was not applied.
var ErrClosed = status.Error(codes.Canceled, "client closed")

// Option configures a Client.
type Option func(*options)

type options struct {
	creds          credentials.TransportCredentials
	dialOptions    []grpc.DialOption
	connectTimeout time.Duration
	retryBackoff   time.Duration
	// discovery configures the discovery cache and the registrar (cache.go).
	discovery discoveryOptions
	// noWatchMany gives every watch a Watch stream of its own.
	noWatchMany bool
	// failFast: a write gives up once every endpoint refused the
	// connection (WithFailFastWrites).
	failFast bool
}

// WithFailFastWrites makes a write with a deadline give up, as a read
// does, once every endpoint in a row refused the connection and no attempt
// of it reached a server (nothing was sent, so nothing was applied): for a
// command-line tool, whose user would rather hear at once that nothing
// listens. By default such a write goes round the endpoints until its
// deadline, so that it rides out a restarting node or cluster.
func WithFailFastWrites() Option {
	return func(o *options) { o.failFast = true }
}

// WithoutWatchMany gives every watch (Watch, the discovery cache, the
// resolver) a Watch stream of its own. By default the client's watches to
// one endpoint share one WatchMany stream, and a change several of them see
// alike is sent once. A server without WatchMany is served with Watch
// streams either way (the client remembers that until it is closed).
func WithoutWatchMany() Option {
	return func(o *options) { o.noWatchMany = true }
}

// WithTransportCredentials sets the transport credentials of every
// connection (TLS, for example). Without it connections are insecure.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = creds }
}

// WithDialOptions appends gRPC dial options to every connection, for example
// per-RPC credentials carrying a token or interceptors.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

// WithConnectTimeout sets how long a call waits for an endpoint to connect
// before it moves on to the next one (DefaultConnectTimeout when unset).
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.connectTimeout = d
		}
	}
}

// WithRetryBackoff sets the pause before a call's second attempt
// (DefaultRetryBackoff when unset); each later attempt waits twice as long.
func WithRetryBackoff(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.retryBackoff = d
		}
	}
}

// Client is a multi-endpoint client of a Roster cluster. It is safe for
// concurrent use.
type Client struct {
	addrs []string
	conns []*grpc.ClientConn
	opts  options
	// muxes share a WatchMany stream per endpoint among watches
	// (watchmany.go).
	muxes []watchMux

	// current is the index of the endpoint calls go to first.
	current atomic.Uint32

	closeOnce sync.Once
	closed    chan struct{}

	// discovery holds the discovery cache and the shared keepalive
	// sessions of registrations, started on first use (cache.go).
	discovery discovery
}

// New returns a Client for the given server addresses (HOST:PORT). It opens
// one connection per address in the background and does not wait for them:
// a server that is down shows up on the first call, which then moves on to
// the next address.
func New(ctx context.Context, addrs []string, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, ErrNoAddresses
	}
	o := options{
		creds:          insecure.NewCredentials(),
		connectTimeout: DefaultConnectTimeout,
		retryBackoff:   DefaultRetryBackoff,
	}
	for _, opt := range opts {
		opt(&o)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(o.creds),
		// A watch reset or a large service is one message; gRPC's default
		// 4 MiB receive limit would fail it. The server sends at most 256 MiB.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxResponseBytes)),
		// gRPC's default reconnect backoff starts at one second and grows to
		// two minutes; a registry client wants a restarted node back sooner.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   3 * time.Second,
			},
			MinConnectTimeout: o.connectTimeout,
		}),
		// A server that stops answering (a black-holed host) is noticed
		// within seconds: the connection closes and calls move on. Roster
		// servers permit pings this often.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	}
	dial = append(dial, o.dialOptions...)

	c := &Client{opts: o, closed: make(chan struct{})}
	for _, addr := range addrs {
		conn, err := grpc.NewClient(addr, dial...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("connect to %s: %w", addr, err)
		}
		conn.Connect()
		c.addrs = append(c.addrs, addr)
		c.conns = append(c.conns, conn)
	}
	c.muxes = make([]watchMux, len(c.conns))
	return c, nil
}

// Close closes every connection. Calls in flight fail with codes.Canceled.
func (c *Client) Close() error {
	var errs []error
	c.closeOnce.Do(func() {
		close(c.closed)
		for _, conn := range c.conns {
			if err := conn.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

// Addrs returns the server addresses the client was created with.
func (c *Client) Addrs() []string {
	return append([]string(nil), c.addrs...)
}

// Endpoint returns the address calls currently go to first.
func (c *Client) Endpoint() string {
	return c.addrs[int(c.current.Load())%len(c.addrs)]
}

// moveOn makes the endpoint after from the current one, unless another call
// has already moved on from it.
func (c *Client) moveOn(from int) {
	next := uint32((from + 1) % len(c.conns))
	c.current.CompareAndSwap(uint32(from), next)
}

// connect waits until endpoint i is ready or has failed to connect. It
// reports whether the connection was ready: a call on a connection that was
// not ready fails without being sent. It returns an error when the endpoint
// did not connect within the connect timeout or the client is closed.
func (c *Client) connect(ctx context.Context, i int) (ready bool, err error) {
	conn := c.conns[i]
	wait, cancel := context.WithTimeout(ctx, c.opts.connectTimeout)
	defer cancel()
	for {
		state := conn.GetState()
		switch state {
		case connectivity.Ready:
			return true, nil
		case connectivity.TransientFailure:
			// The call fails fast here with gRPC's own reason for the failure.
			return false, nil
		case connectivity.Shutdown:
			return false, ErrClosed
		case connectivity.Idle:
			conn.Connect()
		}
		if !conn.WaitForStateChange(wait, state) {
			if err := ctx.Err(); err != nil {
				return false, status.FromContextError(err).Err()
			}
			return false, status.Errorf(codes.Unavailable, "%s: not connected after %s", c.addrs[i], c.opts.connectTimeout)
		}
	}
}

// pause waits before attempt n (counting from zero) of a call.
func (c *Client) pause(ctx context.Context, attempt int) error {
	if attempt == 0 {
		return nil
	}
	d := c.opts.retryBackoff << (attempt - 1)
	if limit := 2 * time.Second; d > limit || d <= 0 {
		d = limit
	}
	return c.sleep(ctx, d)
}

// sleep waits d, or until ctx ends or the client is closed.
func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-c.closed:
		return ErrClosed
	}
}

// callFunc makes one attempt of a call on one connection.
type callFunc func(ctx context.Context, conn *grpc.ClientConn) error

// retryPolicy says when a call moves on to the next endpoint and tries
// again.
type retryPolicy int

const (
	// retryRead: a call that changes nothing (reads, Heartbeat) is retried
	// after any Unavailable, on every endpoint at most once.
	retryRead retryPolicy = iota
	// retryWrite: a write carrying a request id is retried after any
	// Unavailable, OUTCOME_UNKNOWN included, with the same id: the cluster
	// applies an id once and answers a repeat with the first result. With
	// a deadline it goes round the endpoints until the deadline (an
	// election or a restarting node ends within it); without one, every
	// endpoint at most once. With WithFailFastWrites it gives up before
	// its deadline, as a read does, when every endpoint in a row refused
	// the connection and no attempt reached a server.
	retryWrite
	// retryUnsent: a call without a request id that must not apply twice
	// (RemoveNode, TransferLeadership, SetSelfPreservation, CreateToken,
	// DeleteToken, ACLBootstrap, SnapshotRestore) moves on only when it was
	// never sent, or the node answered that nothing was applied
	// (NO_LEADER, NOT_LEADER).
	retryUnsent
)

// Roster's ErrorInfo domain and the reason of a write whose outcome is
// unknown, as the server sends them.
const (
	errorDomain          = "roster.dev"
	reasonOutcomeUnknown = "OUTCOME_UNKNOWN"
)

// notApplied reports whether the server said the call was not applied: no
// leader, or not the leader (the reasons NO_LEADER and NOT_LEADER).
func notApplied(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain {
			return info.Reason == "NO_LEADER" || info.Reason == "NOT_LEADER"
		}
	}
	return false
}

// invoke runs call on the current endpoint and, when the endpoint turns out
// to be unreachable or unable to serve, on the next ones, as policy allows.
func (c *Client) invoke(ctx context.Context, policy retryPolicy, call callFunc) error {
	select {
	case <-c.closed:
		return ErrClosed
	default:
	}
	n := len(c.conns)
	attempts := n
	if _, ok := ctx.Deadline(); ok && policy == retryWrite {
		attempts = math.MaxInt
	}
	start := int(c.current.Load()) % n
	var errs []string
	var last error
	maybeApplied := false
	// refusedInRow counts the latest attempts in a row whose endpoint
	// refused the connection; n of them went to every endpoint once.
	// reached: an attempt failed in a way that does not prove it unsent.
	refusedInRow, reached := 0, false
	for attempt := 0; attempt < attempts; attempt++ {
		if err := c.pause(ctx, attempt); err != nil {
			if maybeApplied {
				return outcomeUnknown(err, errs)
			}
			return endedAfter(err, errs)
		}
		i := (start + attempt) % n
		ready, err := c.connect(ctx, i)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				if maybeApplied {
					return outcomeUnknown(err, errs)
				}
				return endedAfter(err, errs)
			}
			last = err
			errs = append(errs, status.Convert(err).Message())
			refusedInRow = 0
			c.moveOn(i)
			continue
		}
		err = call(ctx, c.conns[i])
		if err == nil {
			return nil
		}
		// A connection seen ready may have carried the call; one that was
		// not may have become ready in between, so only a failure to
		// connect proves the call unsent.
		sent := ready || !neverSent(err)
		// This attempt may have been applied: it was sent, and no answer
		// says it was not.
		mayHaveApplied := sent && policy == retryWrite && !notApplied(err)
		if ctx.Err() != nil || !unreachable(err) || (sent && policy == retryUnsent && !notApplied(err)) {
			// An attempt cut short (by the caller's deadline, which gRPC
			// may report a moment before ctx says so) says no more than
			// one that found no server: it, or an earlier attempt, may
			// have been applied all the same.
			if (maybeApplied || mayHaveApplied) && (unreachable(err) || cutShort(err)) {
				return outcomeUnknown(err, errs)
			}
			if ctx.Err() != nil {
				return endedAfter(err, errs)
			}
			return err
		}
		maybeApplied = maybeApplied || mayHaveApplied
		last = err
		if len(errs) < 2*n {
			errs = append(errs, c.addrs[i]+": "+status.Convert(err).Message())
		}
		c.moveOn(i)
		reached = reached || sent
		if !sent && connectionRefused(err) {
			refusedInRow++
		} else {
			refusedInRow = 0
		}
		if c.opts.failFast && refusedInRow >= n && !reached {
			// Nothing listens at any endpoint and no attempt was sent:
			// waiting out the deadline would only delay the same answer.
			break
		}
	}
	if maybeApplied {
		return outcomeUnknown(last, errs)
	}
	if n == 1 {
		return last
	}
	return status.Errorf(status.Code(last), "no endpoint answered: %s", strings.Join(errs, "; "))
}

// endedAfter is the error of a call whose context ended (err) after
// attempts that failed with errs: err's code, with what the attempts met,
// so that "no leader" or "connection refused" is not lost behind a bare
// deadline. ErrClosed stays as it is.
func endedAfter(err error, errs []string) error {
	if len(errs) == 0 || errors.Is(err, ErrClosed) {
		return err
	}
	var seen []string
	for _, e := range errs {
		if !slices.Contains(seen, e) {
			seen = append(seen, e)
		}
	}
	// The same status, details (the server's reason) included, with a
	// longer message.
	p := status.Convert(err).Proto()
	p.Message += "; the attempts before it: " + strings.Join(seen, "; ")
	return status.FromProto(p).Err()
}

// outcomeUnknown is the error of a write that may have been applied: an
// attempt reached a server and no later attempt got its result. It carries
// the server's OUTCOME_UNKNOWN reason, so callers need not parse text.
func outcomeUnknown(last error, errs []string) error {
	msg := "outcome unknown: " + status.Convert(last).Message()
	if len(errs) > 0 {
		msg = "outcome unknown: " + strings.Join(errs, "; ")
	}
	code := codes.Unavailable
	if c := status.Code(last); c == codes.DeadlineExceeded || c == codes.Canceled {
		code = c
	}
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reasonOutcomeUnknown, Domain: errorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// neverSent reports whether err is gRPC's failure to set up a connection
// (dialing, or the TLS handshake): the call failed before it was sent.
func neverSent(err error) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "transport: Error while dialing") || strings.Contains(msg, "transport: authentication handshake failed") ||
		strings.Contains(msg, "connect: connection refused")
}

// connectionRefused reports whether err is gRPC's failure to connect
// because the endpoint refused the connection (nothing listens there): the
// call failed before it was sent.
func connectionRefused(err error) bool {
	return status.Code(err) == codes.Unavailable && strings.Contains(status.Convert(err).Message(), "connect: connection refused")
}

// cutShort reports whether err is a call's end by its deadline or a
// cancellation.
func cutShort(err error) bool {
	c := status.Code(err)
	return c == codes.DeadlineExceeded || c == codes.Canceled
}

// unreachable reports whether err says the server could not be reached or
// could not serve the call right now, so another endpoint may.
func unreachable(err error) bool {
	return status.Code(err) == codes.Unavailable
}

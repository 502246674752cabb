package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/cluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// keepAliveWindow bounds the requests of one KeepAlive stream that may be
// waiting for their answers; past it the server stops reading the stream.
const keepAliveWindow = 1024

// MaxKeepAliveBatch is the most instances one KeepAlive request may renew.
const MaxKeepAliveBatch = 1000

// Heartbeat implements rosterv1.RegistryServer. It renews the lease on the
// leader (followers relay it there) and never writes to Raft.
func (s *Server) Heartbeat(ctx context.Context, req *rosterv1.HeartbeatRequest) (*rosterv1.HeartbeatResponse, error) {
	if len(req.Instances) > 0 {
		return nil, invalidf("instances renews a batch on a KeepAlive stream only; Heartbeat renews the one instance named by namespace, service and id")
	}
	k, err := validateKey(req.Namespace, req.Service, req.Id)
	if err != nil {
		return nil, err
	}
	return s.heartbeat(ctx, k, req)
}

// heartbeat renews one lease at the leader. Renewing is idempotent, so it
// is retried at a new leader whatever happened to an earlier attempt.
func (s *Server) heartbeat(ctx context.Context, k store.Key, req *rosterv1.HeartbeatRequest) (*rosterv1.HeartbeatResponse, error) {
	return onLeader(ctx, s, repeatable,
		func(ctx context.Context) (*rosterv1.HeartbeatResponse, error) {
			return s.renewLocal(ctx, k)
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.HeartbeatResponse, error) {
			return rosterv1.NewRegistryClient(cc).Heartbeat(ctx, req)
		})
}

func (s *Server) renewLocal(ctx context.Context, k store.Key) (*rosterv1.HeartbeatResponse, error) {
	ttl, err := s.node.Heartbeat(ctx, k)
	if err != nil {
		return nil, err
	}
	return &rosterv1.HeartbeatResponse{
		Header:    s.leaseHeader(k),
		Namespace: k.Namespace, Service: k.Service, Id: k.ID,
		Ttl: durationpb.New(ttl),
	}, nil
}

// leaseHeader is the header of a renewal answered here, the leader: cheaper
// than a full header, as heartbeats are the registry's hottest call.
func (s *Server) leaseHeader(k store.Key) *rosterv1.ResponseHeader {
	return &rosterv1.ResponseHeader{
		NodeId:           s.node.ID(),
		LeaderId:         s.node.ID(),
		Term:             s.node.Term(),
		SelfPreservation: s.node.SelfPreserving(k.Namespace, k.Service),
	}
}

// itemError turns a failed renewal into the per-item error of a KeepAlive
// response; the stream goes on.
func itemError(req *rosterv1.HeartbeatRequest, err error) *rosterv1.HeartbeatResponse {
	st := status.Convert(toStatus(err))
	return &rosterv1.HeartbeatResponse{
		Namespace: req.Namespace, Service: req.Service, Id: req.Id,
		Error: st.Message(), Code: int32(st.Code()),
	}
}

// renewal is one KeepAlive request waiting for its answer; answers go out
// in request order whatever order they are ready in.
type renewal struct {
	req   *rosterv1.HeartbeatRequest
	resp  *rosterv1.HeartbeatResponse
	ready chan struct{}
}

func (r *renewal) answer(resp *rosterv1.HeartbeatResponse) {
	r.resp = resp
	close(r.ready)
}

// KeepAlive implements rosterv1.RegistryServer: each request renews one
// lease, or a batch of them, and gets exactly one response, in order. A
// follower relays a batch upstream as one message. On the leader renewals are
// local; on a follower they are pipelined over one upstream KeepAlive
// stream to the leader, opened again when the leader changes. Renewals an
// upstream stream took but never answered are retried as unary heartbeats,
// which follow the leader (a renewal is idempotent). A leader that has
// refused renewals for want of quorum contact for longer than the leader
// lease timeout ends the stream with NOT_LEADER, so the client moves on.
func (s *Server) KeepAlive(stream rosterv1.Registry_KeepAliveServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	order := make(chan *renewal, keepAliveWindow)
	var sendErr error
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		sendErr = sendInOrder(ctx, stream, order)
	}()
	relay := &keepAliveRelay{s: s, ctx: ctx}
	defer relay.close()
	// Requests are read on their own goroutine so that draining, or the
	// stream's token going, can end the stream while a Recv waits; gRPC
	// interrupts that Recv when this handler returns.
	received := make(chan error, 1)
	go func() { received <- s.keepAliveRecv(ctx, stream, order, sent, relay) }()
	select {
	case err := <-received:
		switch {
		case errors.Is(err, io.EOF):
			// The client has said all it will: answer what is pending.
			close(order)
			<-sent
			return sendErr
		case errors.Is(err, errSenderDone):
			return sendErr
		default:
			cancel()
			close(order)
			<-sent
			return err
		}
	case <-s.draining:
		// Answers not sent yet are dropped: the client renews them on the
		// node it reconnects to.
		cancel()
		<-sent
		return errDraining
	case <-ctx.Done():
		// The stream's context ended while a Recv waits: the client went
		// away, or the stream's token is gone (underToken, its cause).
		<-sent
		return context.Cause(ctx)
	}
}

// errSenderDone: the sender of a KeepAlive stream stopped, so reading more
// requests is pointless.
var errSenderDone = errors.New("keepalive sender done")

// keepAliveRecv reads a KeepAlive stream's requests and starts each
// renewal until the stream or its sender ends. It returns io.EOF when the
// client closed its side, errSenderDone when the sender stopped,
// errRefusingRenewals when this leader has long been out of quorum
// contact, or the error that ended reading.
func (s *Server) keepAliveRecv(ctx context.Context, stream rosterv1.Registry_KeepAliveServer, order chan<- *renewal, sent <-chan struct{}, relay *keepAliveRelay) error {
	for {
		req, err := stream.Recv()
		if err == nil && len(req.Instances) <= MaxKeepAliveBatch {
			// An oversized batch is refused below without this walk.
			err = rejectUnknownFields(req.ProtoReflect())
		}
		if err != nil {
			return err
		}
		r := &renewal{req: req, ready: make(chan struct{})}
		select {
		case order <- r:
		case <-sent:
			return errSenderDone
		}
		if len(req.Instances) > 0 {
			if err := s.keepAliveBatch(ctx, r, relay); err != nil {
				return err
			}
			continue
		}
		k, err := validateKey(req.Namespace, req.Service, req.Id)
		switch {
		case err != nil:
			r.answer(itemError(req, err))
		case s.node.IsLeader():
			resp, err := s.renewLocal(ctx, k)
			if err != nil {
				if s.refusingLong(err) {
					return errRefusingRenewals
				}
				resp = itemError(req, err)
			}
			r.answer(resp)
		case isForwarded(ctx):
			// Relayed to us as the leader, but we are not: the relaying
			// follower retries such answers at the real leader.
			r.answer(itemError(req, cluster.ErrNotLeader))
		default:
			relay.send(k, r)
		}
	}
}

// keepAliveBatch renews the instances of one batched KeepAlive request: on
// the leader one by one, on a follower relayed upstream as one message. It
// returns errRefusingRenewals, unanswered, to end the stream.
func (s *Server) keepAliveBatch(ctx context.Context, r *renewal, relay *keepAliveRelay) error {
	req := r.req
	switch {
	case len(req.Instances) > MaxKeepAliveBatch:
		r.answer(itemError(req, invalidf("a KeepAlive request renews at most %d instances, not %d; split it", MaxKeepAliveBatch, len(req.Instances))))
	case req.Namespace != "" || req.Service != "" || req.Id != "":
		r.answer(itemError(req, invalidf("a KeepAlive request names its instances either in namespace, service and id or in instances, not both")))
	case s.node.IsLeader():
		resp, refused := s.renewBatchLocal(ctx, req)
		if refused != nil && s.refusingLong(refused) {
			return errRefusingRenewals
		}
		r.answer(resp)
	case isForwarded(ctx):
		r.answer(itemError(req, cluster.ErrNotLeader))
	default:
		relay.send(store.Key{}, r)
	}
	return nil
}

// renewBatchLocal renews a batch here, the leader. Each instance is
// answered on its own: one not found does not fail the others. refused is
// the error of an instance refused as by a node that does not lead, if any.
func (s *Server) renewBatchLocal(ctx context.Context, req *rosterv1.HeartbeatRequest) (resp *rosterv1.HeartbeatResponse, refused error) {
	resp = &rosterv1.HeartbeatResponse{
		Header:  &rosterv1.ResponseHeader{NodeId: s.node.ID(), LeaderId: s.node.ID(), Term: s.node.Term()},
		Results: make([]*rosterv1.HeartbeatResult, len(req.Instances)),
	}
	for i, in := range req.Instances {
		k, err := validateKey(in.GetNamespace(), in.GetService(), in.GetId())
		var ttl time.Duration
		if err == nil {
			ttl, err = s.node.Heartbeat(ctx, k)
		}
		if refused == nil && notLeading(err) {
			refused = err
		}
		resp.Results[i] = batchResult(ttl, err)
	}
	return resp, refused
}

// errRefusingRenewals ends a KeepAlive stream at a leader that has refused
// renewals for want of quorum contact for longer than the leader lease
// timeout (cluster.Node.RefusingRenewalsLong). Per-renewal NOT_LEADER
// answers keep a client on its stream, and its leases would expire at the
// real leader; ending the stream moves it on to another node, which relays
// to the real leader. It reads as Unavailable with the NOT_LEADER reason.
var errRefusingRenewals = fmt.Errorf("%w: refusing lease renewals, no quorum contact for longer than the leader lease timeout; reconnect to another node", cluster.ErrNotLeader)

// refusingLong reports whether a renewal refused here with err should end
// its KeepAlive stream (errRefusingRenewals). A short run of refusals, as
// at a new leader, answers renewal by renewal: the stream goes on.
func (s *Server) refusingLong(err error) bool {
	return notLeading(err) && s.node.RefusingRenewalsLong()
}

// notLeading reports whether a renewal was refused as by a node that does
// not lead (or not yet), as renewals without quorum contact are.
func notLeading(err error) bool {
	return errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrLeaderNotReady)
}

// batchRetryWidth bounds the unary renewals one batch runs at once when a
// follower retries it.
const batchRetryWidth = 32

// renewBatchUnary renews a batch through the unary path, as a follower
// does with what an upstream stream left unanswered: batchRetryWidth
// instances at a time, so a batch waits about as long as one renewal. Once
// the leader cannot be reached the rest fail the same way at once.
func (s *Server) renewBatchUnary(ctx context.Context, req *rosterv1.HeartbeatRequest) *rosterv1.HeartbeatResponse {
	resp := &rosterv1.HeartbeatResponse{Results: make([]*rosterv1.HeartbeatResult, len(req.Instances))}
	var (
		mu          sync.Mutex
		unavailable error
		wg          sync.WaitGroup
	)
	sem := make(chan struct{}, batchRetryWidth)
	for i, in := range req.Instances {
		k, err := validateKey(in.GetNamespace(), in.GetService(), in.GetId())
		if err != nil {
			resp.Results[i] = batchResult(0, err)
			continue
		}
		sem <- struct{}{}
		mu.Lock()
		gone := unavailable
		mu.Unlock()
		if gone != nil {
			<-sem
			resp.Results[i] = batchResult(0, gone)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			one, err := s.heartbeat(ctx, k, &rosterv1.HeartbeatRequest{Namespace: k.Namespace, Service: k.Service, Id: k.ID})
			mu.Lock()
			defer mu.Unlock()
			switch code := status.Code(toStatus(err)); {
			case err == nil:
				if resp.Header == nil {
					// The header of the batch: a service's
					// self-preservation is not the batch's.
					h := proto.Clone(one.GetHeader()).(*rosterv1.ResponseHeader)
					h.SelfPreservation = false
					resp.Header = h
				}
			case code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.Canceled:
				unavailable = err
			}
			resp.Results[i] = batchResult(one.GetTtl().AsDuration(), err)
		}()
	}
	wg.Wait()
	return resp
}

// batchResult is one instance's answer in a batch.
func batchResult(ttl time.Duration, err error) *rosterv1.HeartbeatResult {
	if err != nil {
		st := status.Convert(toStatus(err))
		return &rosterv1.HeartbeatResult{Error: st.Message(), Code: int32(st.Code())}
	}
	return &rosterv1.HeartbeatResult{Ttl: durationpb.New(ttl)}
}

// notLeaderAnswer reports whether a leader's answer says it no longer
// leads, for the request as a whole or for any instance of a batch.
func notLeaderAnswer(resp *rosterv1.HeartbeatResponse) bool {
	if codes.Code(resp.GetCode()) == codes.Unavailable {
		return true
	}
	for _, r := range resp.GetResults() {
		if codes.Code(r.GetCode()) == codes.Unavailable {
			return true
		}
	}
	return false
}

// sendInOrder writes answers in request order until order is closed.
func sendInOrder(ctx context.Context, stream rosterv1.Registry_KeepAliveServer, order <-chan *renewal) error {
	for {
		var r *renewal
		select {
		case next, ok := <-order:
			if !ok {
				return nil
			}
			r = next
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-r.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := stream.Send(r.resp); err != nil {
			return err
		}
	}
}

// keepAliveRelay is a follower's upstream KeepAlive stream to the leader.
type keepAliveRelay struct {
	s   *Server
	ctx context.Context

	mu sync.Mutex
	up *upstream
	// noBatches: a leader refused a batch as a field it does not know (it
	// runs an older version), so batches go by unary renewals instead.
	noBatches bool
}

// upstream is one stream to one leader; the leader answers in order, so
// its answers match the head of inflight.
type upstream struct {
	stream   rosterv1.Registry_KeepAliveClient
	cancel   context.CancelFunc
	inflight []*renewal
	keys     []store.Key
	broken   bool
}

// send relays one renewal (k is unset for a batch), opening an upstream stream when there is none.
// When that fails the renewal falls back to a unary heartbeat. Only the
// stream's receive loop calls it, so renewals enter inflight in the order
// they are sent.
func (ra *keepAliveRelay) send(k store.Key, r *renewal) {
	ra.mu.Lock()
	if ra.noBatches && len(r.req.Instances) > 0 {
		ra.mu.Unlock()
		go ra.unary(k, r)
		return
	}
	up := ra.up
	if up == nil || up.broken {
		up = ra.open()
		ra.up = up
	}
	if up == nil {
		ra.mu.Unlock()
		go ra.unary(k, r)
		return
	}
	up.inflight = append(up.inflight, r)
	up.keys = append(up.keys, k)
	ra.mu.Unlock()
	// Not under ra.mu: Send may wait for flow control, which needs the
	// reader to go on taking answers.
	if err := up.stream.Send(r.req); err != nil {
		// Recv reports the failure and hands inflight to unary retries.
		up.cancel()
	}
}

// open starts an upstream stream and its reader; ra.mu is held.
func (ra *keepAliveRelay) open() *upstream {
	id, addr := ra.s.node.Leader()
	if id == "" || addr == "" || id == ra.s.node.ID() {
		return nil
	}
	cc, err := ra.s.peers.get(addr)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(withCallerToken(ra.ctx), forwardedKey, ra.s.node.ID()))
	st, err := rosterv1.NewRegistryClient(cc).KeepAlive(ctx)
	ra.s.metrics.forwarded.WithLabelValues(rosterv1.Registry_KeepAlive_FullMethodName[1:], status.Code(err).String()).Inc()
	if err != nil {
		cancel()
		return nil
	}
	up := &upstream{stream: st, cancel: cancel}
	go ra.read(up)
	return up
}

// read matches the leader's answers to the renewals in flight. Answers
// that say "not the leader" and whatever was in flight when the stream broke
// are retried as unary heartbeats.
func (ra *keepAliveRelay) read(up *upstream) {
	for {
		resp, err := up.stream.Recv()
		ra.mu.Lock()
		if err != nil || len(up.inflight) == 0 {
			up.broken = true
			if status.Code(err) == codes.InvalidArgument && slices.ContainsFunc(up.inflight, func(r *renewal) bool { return len(r.req.Instances) > 0 }) {
				ra.noBatches = true
			}
			rest, keys := up.inflight, up.keys
			up.inflight, up.keys = nil, nil
			ra.mu.Unlock()
			up.cancel()
			for i, r := range rest {
				go ra.unary(keys[i], r)
			}
			return
		}
		r, k := up.inflight[0], up.keys[0]
		up.inflight[0], up.keys[0] = nil, store.Key{}
		up.inflight, up.keys = up.inflight[1:], up.keys[1:]
		ra.mu.Unlock()
		if notLeaderAnswer(resp) {
			// That node no longer leads (or not yet): retry this renewal
			// where the leader is, and open a new stream for the next ones.
			// A batch is retried whole: renewing again is harmless.
			ra.mu.Lock()
			up.broken = true
			ra.mu.Unlock()
			up.cancel()
			go ra.unary(k, r)
			continue
		}
		r.answer(resp)
	}
}

// unary renews through the unary path, which waits for and follows the
// leader within the hold timeout.
func (ra *keepAliveRelay) unary(k store.Key, r *renewal) {
	if len(r.req.Instances) > 0 {
		r.answer(ra.s.renewBatchUnary(ra.ctx, r.req))
		return
	}
	resp, err := ra.s.heartbeat(ra.ctx, k, r.req)
	if err != nil {
		resp = itemError(r.req, err)
	}
	r.answer(resp)
}

func (ra *keepAliveRelay) close() {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.up != nil {
		ra.up.cancel()
		ra.up = nil
	}
}

// ReportHealth implements rosterv1.RegistryServer: a heartbeat that also
// sets the instance's status (a TTL check's pass, warn or fail). It runs on
// the leader; a repeat sets the same status again, so it is retried like a
// heartbeat.
func (s *Server) ReportHealth(ctx context.Context, req *rosterv1.ReportHealthRequest) (*rosterv1.ReportHealthResponse, error) {
	k, err := validateKey(req.Namespace, req.Service, req.Id)
	if err != nil {
		return nil, err
	}
	switch req.Status {
	case rosterv1.HealthStatus_HEALTH_STATUS_PASSING, rosterv1.HealthStatus_HEALTH_STATUS_WARNING, rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL:
	default:
		return nil, invalidf("status must be PASSING, WARNING or CRITICAL, not %s", req.Status)
	}
	if len(req.Reason) > MaxReasonLen {
		return nil, invalidf("reason is %d bytes; the limit is %d", len(req.Reason), MaxReasonLen)
	}
	return onLeader(ctx, s, repeatable,
		func(ctx context.Context) (*rosterv1.ReportHealthResponse, error) {
			ttl, rev, err := s.node.ReportHealth(ctx, k, store.HealthOf(int32(req.Status)), req.Reason)
			if err != nil {
				return nil, err
			}
			return &rosterv1.ReportHealthResponse{Header: s.leaseHeader(k), Ttl: durationpb.New(ttl), Revision: rev}, nil
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.ReportHealthResponse, error) {
			return rosterv1.NewRegistryClient(cc).ReportHealth(ctx, req)
		})
}

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/internal/checker"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// longPause is the range of the pause-leader-long fault: longer than the
// TTL, so a newer leader expires the leases renewed only at the paused
// one before it resumes.
func longPause(ttl time.Duration) (lo, hi time.Duration) {
	return ttl + time.Second, ttl + 4*time.Second
}

// keepAlivePatience is how long a stream lease owner waits for the answer
// to a renewal before it gives the stream up: longer than the longest
// pause-leader-long, so it is still listening when a paused leader resumes
// and answers what was queued meanwhile. Those answers are what checker X
// judges; a client that gave up earlier (the Go SDK's session gives up
// after one TTL) would never see them.
func keepAlivePatience(ttl time.Duration) time.Duration {
	_, hi := longPause(ttl)
	return hi + 2*time.Second
}

// keepAliveLog pairs the renewals sent on one KeepAlive stream with their
// answers, which come in the order the renewals were sent, and makes each
// a recorded heartbeat (Stream) called when it was sent.
type keepAliveLog struct {
	op      checker.Op // the client, key and node of every renewal
	pending []int64    // send times of the renewals not answered yet, oldest first
}

func newKeepAliveLog(client int, key string, n *node) *keepAliveLog {
	return &keepAliveLog{op: checker.Op{ClientID: client, Kind: checker.KindHeartbeat, Key: key, Node: n.id, Stream: true}}
}

// sent notes a renewal sent at at.
func (l *keepAliveLog) sent(at int64) { l.pending = append(l.pending, at) }

// oldest returns the send time of the oldest renewal not answered yet.
func (l *keepAliveLog) oldest() (int64, bool) {
	if len(l.pending) == 0 {
		return 0, false
	}
	return l.pending[0], true
}

// answered pairs an answer received at at with the oldest renewal not
// answered yet; false when none was waiting (the server answered more than
// it was sent).
func (l *keepAliveLog) answered(resp *rosterv1.HeartbeatResponse, at int64) (checker.Op, bool) {
	if len(l.pending) == 0 {
		return checker.Op{}, false
	}
	op := l.op
	op.Call, op.Return = l.pending[0], at
	l.pending = l.pending[1:]
	var err error
	if c := codes.Code(resp.GetCode()); c != codes.OK {
		err = status.Error(c, resp.GetError())
	}
	op.Outcome, op.Code = outcome(err)
	if err == nil && resp.GetTtl() != nil {
		op.TTL = resp.GetTtl().AsDuration()
	}
	return op, true
}

// ended returns the renewals never answered when the stream ended at at
// with err: each may or may not have renewed the lease.
func (l *keepAliveLog) ended(err error, at int64) []checker.Op {
	var ops []checker.Op
	_, code := outcome(err)
	for _, call := range l.pending {
		op := l.op
		op.Call, op.Return = call, at
		op.Outcome, op.Code = checker.OutcomeUnknown, code
		ops = append(ops, op)
	}
	l.pending = nil
	return ops
}

// streamOwner keeps one TTL instance alive over KeepAlive streams, as the
// Go SDK's sessions do (one renewal a message, answered in order, renewals
// pipelined while answers are late), sometimes falls silent for longer
// than the TTL, then registers again. Half its streams go to the leader.
// Every renewal is recorded as a heartbeat called when it was sent.
func (w *workload) streamOwner(ctx context.Context, r *rand.Rand, id string) {
	client := w.clientID()
	key := checker.InstanceKey(namespace, leasedService, id)
	registered := false
	silentAt := time.Now().Add(20*time.Second + time.Duration(r.IntN(40))*time.Second)
	for ctx.Err() == nil {
		if w.noKeepAlive.Load() {
			// A server without KeepAlive: renew with unary heartbeats.
			w.leaseOwner(ctx, r, id)
			return
		}
		if !registered {
			registered = w.registerLeased(ctx, r, client, key, id)
			continue
		}
		n := w.c.pick(r)
		if r.IntN(2) == 0 {
			if l := w.c.leader(ctx); l != nil {
				n = l
			}
		}
		var silent bool
		registered, silent = w.keepAliveOnce(ctx, client, n, id, silentAt)
		if silent {
			// Fall silent: the lease must run out, no earlier than TTL after
			// the last acknowledged renewal was sent (checker X).
			sleep(ctx, w.cfg.TTL+2*time.Second+time.Duration(r.IntN(2000))*time.Millisecond)
			silentAt = time.Now().Add(30*time.Second + time.Duration(r.IntN(40))*time.Second)
			registered = false
			continue
		}
		sleep(ctx, time.Duration(50+r.IntN(200))*time.Millisecond)
	}
}

// keepAliveAnswer is one Recv of a KeepAlive stream.
type keepAliveAnswer struct {
	resp *rosterv1.HeartbeatResponse
	at   int64
	err  error
}

// keepAliveOnce renews the lease of id over one KeepAlive stream to n,
// every TTL/5, until the stream ends, an answer is later than the
// patience, the lease is reported gone (registered false), or silentAt
// passes (silent true).
func (w *workload) keepAliveOnce(ctx context.Context, client int, n *node, id string, silentAt time.Time) (registered, silent bool) {
	key := checker.InstanceKey(namespace, leasedService, id)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.streamOn(id, n)
	defer w.streamOn(id, nil)
	log := newKeepAliveLog(client, key, n)
	end := func(err error) {
		for _, op := range log.ended(err, w.rec.now()) {
			w.rec.add(op)
		}
	}
	s, err := n.reg.KeepAlive(cctx)
	if err != nil {
		return true, false
	}
	answers := make(chan keepAliveAnswer, 1)
	var recv sync.WaitGroup
	recv.Add(1)
	go func() {
		defer recv.Done()
		for {
			resp, err := s.Recv()
			select {
			case answers <- keepAliveAnswer{resp: resp, at: w.rec.now(), err: err}:
			case <-cctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer recv.Wait()
	defer cancel()
	req := &rosterv1.HeartbeatRequest{Namespace: namespace, Service: leasedService, Id: id}
	send := func() {
		log.sent(w.rec.now())
		// A failed Send only says the stream is gone; Recv says why.
		_ = s.Send(req)
	}
	send()
	patience := int64(keepAlivePatience(w.cfg.TTL))
	ticker := time.NewTicker(w.cfg.TTL / 5)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			end(ctx.Err())
			return true, false
		case a := <-answers:
			if a.err != nil {
				if status.Code(a.err) == codes.Unimplemented {
					w.noKeepAlive.Store(true)
					w.rec.problem("KeepAlive answered Unimplemented: the stream lease owners renew with unary heartbeats")
					log.pending = nil
					return true, false
				}
				end(a.err)
				return true, false
			}
			op, ok := log.answered(a.resp, a.at)
			if !ok {
				w.rec.problem("KeepAlive on %s answered a renewal never sent (%v)", n.id, a.resp)
				return true, false
			}
			w.rec.add(op)
			if op.Code == codes.NotFound.String() {
				end(status.Error(codes.Canceled, "lease reported gone; registering again"))
				return false, false
			}
		case <-ticker.C:
			if time.Now().After(silentAt) {
				end(status.Error(codes.Canceled, "falling silent"))
				return true, true
			}
			if t, ok := log.oldest(); ok && w.rec.now()-t > patience {
				end(status.Errorf(codes.DeadlineExceeded, "no answer from %s within %s", n.id, keepAlivePatience(w.cfg.TTL)))
				return true, false
			}
			send()
		}
	}
}

// streamOn notes the node the stream of lease owner id is connected to
// (nil: none), for the faults' reports.
func (w *workload) streamOn(id string, n *node) {
	w.streamMu.Lock()
	defer w.streamMu.Unlock()
	if n == nil {
		delete(w.streamNodes, id)
	} else {
		w.streamNodes[id] = n.id
	}
}

// streamsOn returns how many stream lease owners are connected to n.
func (w *workload) streamsOn(n *node) int {
	w.streamMu.Lock()
	defer w.streamMu.Unlock()
	c := 0
	for _, id := range w.streamNodes {
		if id == n.id {
			c++
		}
	}
	return c
}

// streamRenewals sums up the stream renewals sent to n within [from, to]
// (recorder times): how many were acknowledged, and the codes of the rest.
func (w *workload) streamRenewals(n *node, from, to int64) string {
	w.rec.mu.Lock()
	defer w.rec.mu.Unlock()
	acked, other := 0, map[string]int{}
	for _, op := range w.rec.h.Ops {
		if !op.Stream || op.Node != n.id || op.Call < from || op.Call > to {
			continue
		}
		if op.Outcome == checker.OutcomeOK {
			acked++
		} else {
			other[op.Code]++
		}
	}
	out := fmt.Sprintf("%d acknowledged", acked)
	codes := make([]string, 0, len(other))
	for c := range other {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		out += fmt.Sprintf(", %d %s", other[c], c)
	}
	return out
}

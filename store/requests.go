package store

import (
	"errors"
	"fmt"
	"math"
)

// RequestError is the kind of domain error a remembered request returned.
type RequestError uint8

// RequestError values. They equal raftcmd.v1.RequestResult.Error.
const (
	RequestOK                RequestError = 0
	RequestNotFound          RequestError = 1
	RequestStaleRegistration RequestError = 2
	RequestLimitExceeded     RequestError = 3
)

// RequestResult is the first result of one client request id, remembered so
// that a repeat of the request returns it and changes nothing. Once stored
// it is never modified.
type RequestResult struct {
	ID string
	// Revision the first application returned.
	Revision uint64
	// ErrKind and ErrMessage describe the first application's domain error.
	ErrKind    RequestError
	ErrMessage string
	// Time is the leader's stamp on the first application (unix ns).
	Time int64
	// Index is the Raft index of the first application.
	Index uint64
	// Digest identifies what the request asked for.
	Digest []byte
}

// NewRequestResult records the outcome (rev, err) of request id, applied at
// index with the leader's stamp now. err must be nil or a domain error
// (ErrNotFound, ErrStaleRegistration, ErrLimitExceeded).
func NewRequestResult(id string, digest []byte, now int64, index, rev uint64, err error) (*RequestResult, error) {
	r := &RequestResult{ID: id, Revision: rev, Time: now, Index: index, Digest: digest}
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		r.ErrKind, r.ErrMessage = RequestNotFound, err.Error()
	case errors.Is(err, ErrStaleRegistration):
		r.ErrKind, r.ErrMessage = RequestStaleRegistration, err.Error()
	case errors.Is(err, ErrLimitExceeded):
		r.ErrKind, r.ErrMessage = RequestLimitExceeded, err.Error()
	default:
		return nil, fmt.Errorf("request %q: cannot remember error %w", id, err)
	}
	return r, nil
}

// Err returns the first application's error, nil when it succeeded. It has
// the same text and wraps the same sentinel.
func (r *RequestResult) Err() error {
	switch r.ErrKind {
	case RequestOK:
		return nil
	case RequestNotFound:
		return &rememberedError{msg: r.ErrMessage, kind: ErrNotFound}
	case RequestStaleRegistration:
		return &rememberedError{msg: r.ErrMessage, kind: ErrStaleRegistration}
	case RequestLimitExceeded:
		return &rememberedError{msg: r.ErrMessage, kind: ErrLimitExceeded}
	default:
		return &rememberedError{msg: r.ErrMessage, kind: fmt.Errorf("unknown error kind %d", r.ErrKind)}
	}
}

// rememberedError is a domain error given again to a repeated request.
type rememberedError struct {
	msg  string
	kind error
}

func (e *rememberedError) Error() string {
	if e.msg == "" {
		return e.kind.Error()
	}
	return e.msg
}

func (e *rememberedError) Unwrap() error { return e.kind }

// requestBounds limit the remembered request results.
type requestBounds struct {
	max int
	age int64
}

func newRequestBounds(opts Options) requestBounds {
	d := DefaultOptions()
	b := requestBounds{max: opts.RequestResults, age: int64(opts.RequestResultAge)}
	if b.max <= 0 {
		b.max = d.RequestResults
	}
	if b.age <= 0 {
		b.age = int64(d.RequestResultAge)
	}
	return b
}

// requestHead is the first request result in pruning order (Raft index,
// then id), kept beside the database as the count is, so that a prune
// with nothing to forget, nearly every one, is answered without walking
// the index: that walk would stop at this row. Unknown (after a restore,
// or when the table was emptied) until the next walk finds it again.
type requestHead struct {
	known bool
	index uint64
	id    string
	time  int64
}

// after reports whether the head sorts after r.
func (h requestHead) after(r *RequestResult) bool {
	return r.Index < h.index || (r.Index == h.index && r.ID < h.id)
}

func headOf(r *RequestResult) requestHead {
	return requestHead{known: true, index: r.Index, id: r.ID, time: r.Time}
}

// requestCount is how many request results the transaction's state holds:
// the store's count, kept outside the database (only the FSM's goroutine
// writes or restores, so nothing else reads it), plus this transaction's
// changes, which Commit folds in. It saves a meta row write per request.
func (w *WriteTxn) requestCount() int { return int(w.s.requestCount.Load()) + w.requestDelta }

// Request returns the remembered result of request id, or nil.
func (w *WriteTxn) Request(id string) (*RequestResult, error) {
	raw, err := w.txn.First(tableRequests, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("get request %q: %w", id, err)
	}
	if raw == nil {
		return nil, nil
	}
	return raw.(*RequestResult), nil
}

// PruneRequests forgets the oldest request results: those stamped more than
// the age bound before now, and those beyond the count bound. It walks in
// Raft index order and stops at the first result young enough, so it
// depends only on the state and now (a command's stamp), never on the
// local clock: every node forgets the same results at the same index.
func (w *WriteTxn) PruneRequests(now int64) error {
	return w.pruneRequests(now - w.s.requests.age)
}

// pruneRequests forgets, oldest first, results stamped before cutoff and
// results beyond the count bound.
func (w *WriteTxn) pruneRequests(cutoff int64) error {
	n := w.requestCount()
	if n == 0 {
		return nil
	}
	bounds := w.s.requests
	if h := w.requestHead; n <= bounds.max && h.known && h.time >= cutoff {
		return nil
	}
	it, err := w.txn.LowerBound(tableRequests, indexIndex, uint64(0))
	if err != nil {
		return fmt.Errorf("list requests: %w", err)
	}
	var drop []*RequestResult
	left := n
	w.requestHead = requestHead{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*RequestResult)
		if left <= bounds.max && r.Time >= cutoff {
			w.requestHead = headOf(r)
			break
		}
		drop = append(drop, r)
		left--
	}
	if len(drop) == 0 {
		return nil
	}
	// Deleting while iterating would disturb the iterator.
	for _, r := range drop {
		if err := w.txn.Delete(tableRequests, r); err != nil {
			return fmt.Errorf("forget request %q: %w", r.ID, err)
		}
	}
	w.requestDelta -= len(drop)
	return nil
}

// RememberRequest stores the first result of a request the caller found
// unknown (Request returned nil) and, when that passes the count bound,
// forgets the oldest one.
func (w *WriteTxn) RememberRequest(r *RequestResult) error {
	if r.ID == "" {
		return errors.New("remember request: empty id")
	}
	// The caller looked the id up first (Request): an insert never
	// replaces a remembered result.
	if err := w.txn.Insert(tableRequests, r); err != nil {
		return fmt.Errorf("remember request %q: %w", r.ID, err)
	}
	if w.requestCount() == 0 || (w.requestHead.known && w.requestHead.after(r)) {
		w.requestHead = headOf(r)
	}
	w.requestDelta++
	if w.requestCount() <= w.s.requests.max {
		return nil
	}
	return w.pruneRequests(math.MinInt64)
}

// Request returns the remembered result of request id, or nil.
func (v *View) Request(id string) *RequestResult {
	raw, err := v.txn.First(tableRequests, indexID, id)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*RequestResult)
}

// Requests calls fn for every remembered request result, oldest (by Raft
// index, then id) first; fn returning false stops.
func (v *View) Requests(fn func(*RequestResult) bool) error {
	it, err := v.txn.LowerBound(tableRequests, indexIndex, uint64(0))
	if err != nil {
		return fmt.Errorf("list requests: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*RequestResult)) {
			return nil
		}
	}
	return nil
}

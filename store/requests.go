package store

import (
	"errors"
	"fmt"
	"math"
	"slices"
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

// requestBefore reports whether a comes before b in pruning order: by Raft
// index, then id.
func requestBefore(a, b *RequestResult) bool {
	return a.Index < b.Index || (a.Index == b.Index && a.ID < b.ID)
}

func compareRequests(a, b *RequestResult) int {
	if requestBefore(a, b) {
		return -1
	}
	if requestBefore(b, a) {
		return 1
	}
	return 0
}

// The request results' pruning order (Raft index, then id) is kept beside
// the database, as a slice only writers use (Store.requestOrder), not as a
// second index of the table: a second index costs every request a radix
// insert and, once the bounds are reached, a radix delete, and commits one
// more index root. A transaction forgets results from the front of the
// store's slice and of its own additions, never changing the slice, and
// Commit builds the next one; Abort just drops them.

// requestCount is how many request results the transaction's state holds.
func (w *WriteTxn) requestCount() int {
	return len(w.s.requestOrder) - w.requestsDropped + len(w.requestsAdded) - w.addedDropped
}

// oldestRequest returns the first request result in pruning order of the
// transaction's state, and whether it is one of the transaction's own
// additions; nil when there is none.
func (w *WriteTxn) oldestRequest() (*RequestResult, bool) {
	var stored, added *RequestResult
	if w.requestsDropped < len(w.s.requestOrder) {
		stored = w.s.requestOrder[w.requestsDropped]
	}
	if w.addedDropped < len(w.requestsAdded) {
		added = w.requestsAdded[w.addedDropped]
	}
	if added != nil && (stored == nil || requestBefore(added, stored)) {
		return added, true
	}
	return stored, false
}

// commitRequests hands the transaction's changes to the store's order.
// Only Commit calls it, under writeMu.
func (w *WriteTxn) commitRequests() {
	if w.requestsDropped == 0 && len(w.requestsAdded) == 0 {
		return
	}
	order := w.s.requestOrder
	// Forgotten results are no longer referenced from the front of the
	// array, which a later append may still share.
	clear(order[:w.requestsDropped])
	order = order[w.requestsDropped:]
	added := w.requestsAdded[w.addedDropped:]
	if len(order) > 0 && len(added) > 0 && requestBefore(added[0], order[len(order)-1]) {
		// Not written in Raft index order (only a store driven outside
		// the FSM does that): merge.
		merged := make([]*RequestResult, 0, len(order)+len(added))
		merged = append(append(merged, order...), added...)
		slices.SortFunc(merged, compareRequests)
		w.s.requestOrder = merged
		return
	}
	if len(order) == 0 {
		order = nil
	}
	w.s.requestOrder = append(order, added...)
}

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
	bounds := w.s.requests
	for n := w.requestCount(); n > 0; n-- {
		r, added := w.oldestRequest()
		if n <= bounds.max && r.Time >= cutoff {
			break
		}
		if err := w.txn.Delete(tableRequests, r); err != nil {
			return fmt.Errorf("forget request %q: %w", r.ID, err)
		}
		if added {
			w.addedDropped++
		} else {
			w.requestsDropped++
		}
	}
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
	// Keep the additions in pruning order: they share the transaction's
	// index, so by id.
	i := len(w.requestsAdded)
	for i > w.addedDropped && requestBefore(r, w.requestsAdded[i-1]) {
		i--
	}
	w.requestsAdded = slices.Insert(w.requestsAdded, i, r)
	if w.requestCount() <= w.s.requests.max {
		return nil
	}
	return w.pruneRequests(math.MinInt64)
}

// requestOrder returns the restored request results in pruning order.
func (r *Restorer) requestOrder() []*RequestResult {
	order := slices.Clone(r.requests)
	slices.SortFunc(order, compareRequests)
	return order
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
// index, then id) first; fn returning false stops. The table's one index is
// by id, so it sorts them first.
func (v *View) Requests(fn func(*RequestResult) bool) error {
	it, err := v.txn.Get(tableRequests, indexID)
	if err != nil {
		return fmt.Errorf("list requests: %w", err)
	}
	var all []*RequestResult
	for raw := it.Next(); raw != nil; raw = it.Next() {
		all = append(all, raw.(*RequestResult))
	}
	slices.SortFunc(all, compareRequests)
	for _, r := range all {
		if !fn(r) {
			return nil
		}
	}
	return nil
}

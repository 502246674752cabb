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
	// Time is the leader's stamp on the first application (unix ns).
	Time int64
	// Index is the Raft index of the first application.
	Index uint64
	// Digest identifies what the request asked for: the SHA-256 the leader
	// put in the request's log entry.
	Digest [DigestSize]byte
	// err is the first application's domain error, nil when it succeeded:
	// rare, so it costs a successful result one pointer. A node keeps up
	// to 100,000 results by default; this one is 80 bytes.
	err *requestErr
}

// DigestSize is the size of a request's digest (SHA-256).
const DigestSize = 32

// requestErr is a remembered domain error: its kind and its text.
type requestErr struct {
	kind RequestError
	msg  string
}

// NewRequestResult records the outcome (rev, err) of request id, applied at
// index with the leader's stamp now. digest must be DigestSize bytes; err
// must be nil or a domain error (ErrNotFound, ErrStaleRegistration,
// ErrLimitExceeded).
func NewRequestResult(id string, digest []byte, now int64, index, rev uint64, err error) (*RequestResult, error) {
	if len(digest) != DigestSize {
		return nil, fmt.Errorf("request %q: digest is %d bytes, want %d", id, len(digest), DigestSize)
	}
	r := &RequestResult{ID: id, Revision: rev, Time: now, Index: index, Digest: [DigestSize]byte(digest)}
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		r.err = &requestErr{RequestNotFound, err.Error()}
	case errors.Is(err, ErrStaleRegistration):
		r.err = &requestErr{RequestStaleRegistration, err.Error()}
	case errors.Is(err, ErrLimitExceeded):
		r.err = &requestErr{RequestLimitExceeded, err.Error()}
	default:
		return nil, fmt.Errorf("request %q: cannot remember error %w", id, err)
	}
	return r, nil
}

// ErrKind returns the kind of the first application's domain error,
// RequestOK when it succeeded.
func (r *RequestResult) ErrKind() RequestError {
	if r.err == nil {
		return RequestOK
	}
	return r.err.kind
}

// ErrMessage returns the text of the first application's domain error, ""
// when it succeeded.
func (r *RequestResult) ErrMessage() string {
	if r.err == nil {
		return ""
	}
	return r.err.msg
}

// Err returns the first application's error, nil when it succeeded. It has
// the same text and wraps the same sentinel.
func (r *RequestResult) Err() error {
	if r.err == nil {
		return nil
	}
	switch r.err.kind {
	case RequestNotFound:
		return &rememberedError{msg: r.err.msg, kind: ErrNotFound}
	case RequestStaleRegistration:
		return &rememberedError{msg: r.err.msg, kind: ErrStaleRegistration}
	case RequestLimitExceeded:
		return &rememberedError{msg: r.err.msg, kind: ErrLimitExceeded}
	default:
		return &rememberedError{msg: r.err.msg, kind: fmt.Errorf("unknown error kind %d", r.err.kind)}
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

// The request results live beside the database, not in a table of it: they
// are read only by the writer (a request looked up by id, the oldest ones
// forgotten) and by snapshots, and a radix tree made every request pay a
// path copy for its insert, another for its delete once the bound is
// reached, and more garbage than the registration it wrapped. The store
// keeps them in pruning order (Raft index, then id) as the published
// state's metaRow.Requests, and by id in requestIDs, touched only by
// writers. A transaction forgets
// results from the front of the store's slice and of its own additions,
// never changing either, and Commit builds the next ones; Abort just drops
// them. Each committed state publishes its order with its revision
// (metaRow.Requests), so a View lists exactly the results of its state: a
// later commit only appends past the end of a published slice, or builds a
// new one.

// requestCount is how many request results the transaction's state holds.
func (w *WriteTxn) requestCount() int {
	return len(w.stored) - w.requestsDropped + len(w.requestsAdded) - w.addedDropped
}

// oldestRequest returns the first request result in pruning order of the
// transaction's state, and whether it is one of the transaction's own
// additions; nil when there is none.
func (w *WriteTxn) oldestRequest() (*RequestResult, bool) {
	var stored, added *RequestResult
	if w.requestsDropped < len(w.stored) {
		stored = w.stored[w.requestsDropped]
	}
	if w.addedDropped < len(w.requestsAdded) {
		added = w.requestsAdded[w.addedDropped]
	}
	if added != nil && (stored == nil || requestBefore(added, stored)) {
		return added, true
	}
	return stored, false
}

// commitRequests hands the transaction's changes to the store's order and
// map, and returns the order to publish. Only Commit calls it, under
// writeMu.
func (w *WriteTxn) commitRequests() []*RequestResult {
	defer clear(w.requestsByID)
	order := w.stored
	if w.requestsDropped == 0 && len(w.requestsAdded) == 0 {
		return order
	}
	for _, r := range order[:w.requestsDropped] {
		delete(w.s.requestIDs, r.ID)
	}
	added := w.requestsAdded[w.addedDropped:]
	for _, r := range added {
		w.s.requestIDs[r.ID] = r
	}
	// The forgotten results stay in the array, behind the new start, while
	// a published View may list them; a later append that outgrows the
	// array copies only the kept ones.
	order = order[w.requestsDropped:]
	if len(order) > 0 && len(added) > 0 && requestBefore(added[0], order[len(order)-1]) {
		// Not written in Raft index order (only a store driven outside
		// the FSM does that): merge.
		merged := make([]*RequestResult, 0, len(order)+len(added))
		merged = append(append(merged, order...), added...)
		slices.SortFunc(merged, compareRequests)
		return merged
	}
	if len(order) == 0 {
		order = nil
	}
	return append(order, added...)
}

// Request returns the remembered result of request id, or nil, as the
// transaction's state holds it: a result this transaction forgot is gone,
// one it remembered is there.
func (w *WriteTxn) Request(id string) (*RequestResult, error) {
	// requestsByID holds only the additions not forgotten again
	// (pruneRequests deletes those): the additions are not in one order
	// once one sorting before a forgotten one was added after it.
	if r := w.requestsByID[id]; r != nil {
		return r, nil
	}
	r := w.s.requestIDs[id]
	if r == nil {
		return nil, nil
	}
	// Forgotten results are the front of the order: r is one when it does
	// not come after the last one forgotten.
	if w.requestsDropped > 0 && !requestBefore(w.stored[w.requestsDropped-1], r) {
		return nil, nil
	}
	return r, nil
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
		if added {
			if w.requestsByID[r.ID] == r {
				delete(w.requestsByID, r.ID)
			}
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
	// The caller looked the id up first (Request): an id is remembered
	// once.
	if prev, _ := w.Request(r.ID); prev != nil {
		return fmt.Errorf("remember request %q: already remembered", r.ID)
	}
	w.requestsByID[r.ID] = r
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

// requestOrder returns the restored request results in pruning order, and
// by id; an id restored twice is an error.
func (r *Restorer) requestOrder() ([]*RequestResult, map[string]*RequestResult, error) {
	order := slices.Clone(r.requests)
	slices.SortFunc(order, compareRequests)
	byID := make(map[string]*RequestResult, len(order))
	for _, res := range order {
		if _, dup := byID[res.ID]; dup {
			return nil, nil, fmt.Errorf("restore: request id %q appears twice", res.ID)
		}
		byID[res.ID] = res
	}
	return order, byID, nil
}

// Requests calls fn for every remembered request result of the view's
// state, oldest (by Raft index, then id) first; fn returning false stops.
func (v *View) Requests(fn func(*RequestResult) bool) error {
	for _, r := range v.meta.Requests {
		if !fn(r) {
			return nil
		}
	}
	return nil
}

// Request returns the remembered result of request id in the view's state,
// or nil. It scans the results newest first (a retry usually follows its
// first attempt closely), one step per result it passes: for rare paths,
// such as a retry the leader's limit pre-check would refuse, never for
// every write.
func (v *View) Request(id string) *RequestResult {
	for i := len(v.meta.Requests) - 1; i >= 0; i-- {
		if r := v.meta.Requests[i]; r.ID == id {
			return r
		}
	}
	return nil
}

// LatestRequestTime returns the largest stamp (RequestResult.Time) among the
// view's remembered request results, and false when it remembers none. It
// looks at every result, since stamps need not grow with the Raft index: a
// new leader calls it once, to go on stamping from there.
func (v *View) LatestRequestTime() (int64, bool) {
	if len(v.meta.Requests) == 0 {
		return 0, false
	}
	latest := v.meta.Requests[0].Time
	for _, r := range v.meta.Requests[1:] {
		latest = max(latest, r.Time)
	}
	return latest, true
}

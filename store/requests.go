package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
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
// it is never modified. Make one with NewRequestResult (a restore decodes
// its own): the id is held in unexported fields, and a result made
// otherwise has the all-zero hex id, which no check can tell from a
// client's.
type RequestResult struct {
	// hexID is the request id when it is 32 lowercase hex characters, as
	// clients and servers make them (newRequestID), held as its 16 bytes:
	// such an id costs no string of its own. Any other id is in rare.id.
	hexID [16]byte
	// Revision the first application returned.
	Revision uint64
	// Time is the leader's stamp on the first application (unix ns).
	Time int64
	// Index is the Raft index of the first application.
	Index uint64
	// Digest identifies what the request asked for: the SHA-256 the leader
	// put in the request's log entry.
	Digest [DigestSize]byte
	// rare holds what few results have: the first application's domain
	// error, and an id that is not 32 lowercase hex characters. A result
	// without either costs one pointer for them. A node keeps up to
	// 100,000 results by default; this one is 80 bytes.
	rare *requestRare
}

// DigestSize is the size of a request's digest (SHA-256).
const DigestSize = 32

// requestRare is what few request results have: a domain error (its kind
// and text, when hasErr) and an id not held as hex bytes (when otherID).
type requestRare struct {
	id      string
	otherID bool
	hasErr  bool
	kind    RequestError
	msg     string
}

// hexIDSize is the length of a request id held as bytes (RequestResult.hexID).
const hexIDSize = 32

// parseHexID returns the 16 bytes of id when it is 32 lowercase hex
// characters, and false for any other id. Uppercase hex is another id: it
// would not come back from the bytes as it was written.
func parseHexID(id string) (b [16]byte, ok bool) {
	if len(id) != hexIDSize {
		return b, false
	}
	for i := range b {
		hi, ok1 := lowerHexDigit(id[2*i])
		lo, ok2 := lowerHexDigit(id[2*i+1])
		if !ok1 || !ok2 {
			return b, false
		}
		b[i] = hi<<4 | lo
	}
	return b, true
}

func lowerHexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// setID sets the result's request id, as bytes when it is 32 lowercase hex
// characters; only constructors call it, before the result is stored.
func (r *RequestResult) setID(id string) {
	if b, ok := parseHexID(id); ok {
		r.hexID = b
		if r.rare != nil {
			r.rare.id, r.rare.otherID = "", false
		}
		return
	}
	if r.rare == nil {
		r.rare = &requestRare{}
	}
	r.rare.id, r.rare.otherID = id, true
}

// hasHexID reports whether the result's id is held as bytes (hexID).
func (r *RequestResult) hasHexID() bool { return r.rare == nil || !r.rare.otherID }

// hasEmptyID reports whether the result has no id: an id that is not hex
// and empty (a hex id is never empty).
func (r *RequestResult) hasEmptyID() bool { return !r.hasHexID() && r.rare.id == "" }

// ID returns the request id. For the usual (hex) id it builds the string:
// for snapshots, errors and tests, not for every write.
func (r *RequestResult) ID() string {
	if !r.hasHexID() {
		return r.rare.id
	}
	return hex.EncodeToString(r.hexID[:])
}

// compareID compares the ids of a and b as strings, as ordering their ID()
// would, without building them: lowercase hex digits sort as the values
// they stand for, so two hex ids compare as their bytes; a hex id and
// another one compare through the hex text, built on the stack.
func compareID(a, b *RequestResult) int {
	ah, bh := a.hasHexID(), b.hasHexID()
	switch {
	case ah && bh:
		return bytes.Compare(a.hexID[:], b.hexID[:])
	case !ah && !bh:
		return strings.Compare(a.rare.id, b.rare.id)
	case ah:
		return compareHexText(a.hexID, b.rare.id)
	default:
		return -compareHexText(b.hexID, a.rare.id)
	}
}

// compareHexText compares the hex text of id with s. The text is on the
// stack, and the comparisons read it in place: strings.Compare would take
// a string made on the heap.
func compareHexText(id [16]byte, s string) int {
	var buf [hexIDSize]byte
	hex.Encode(buf[:], id[:])
	switch {
	case string(buf[:]) < s:
		return -1
	case string(buf[:]) > s:
		return 1
	}
	return 0
}

// requestID is a request id parsed once for lookups: hex holds its bytes
// when isHex, and other the id otherwise.
type requestID struct {
	hex   [16]byte
	isHex bool
	other string
}

func parseRequestID(id string) requestID {
	if b, ok := parseHexID(id); ok {
		return requestID{hex: b, isHex: true}
	}
	return requestID{other: id}
}

// key returns r's id as lookups take it.
func (r *RequestResult) key() requestID {
	if r.hasHexID() {
		return requestID{hex: r.hexID, isHex: true}
	}
	return requestID{other: r.rare.id}
}

// is reports whether r's id is id.
func (r *RequestResult) is(id requestID) bool {
	if id.isHex {
		return r.hasHexID() && r.hexID == id.hex
	}
	return !r.hasHexID() && r.rare.id == id.other
}

// requestIndex finds request results by id. A hex id is keyed by its 16
// bytes folded to 8 (fold), so that the map holds no string and its slot
// is 16 bytes, not 24; the result found is checked against the whole id,
// and an id folding as one already there (two random ids do so once in
// 2^64; a client could choose such ids) goes to collided, by its whole
// bytes. Other ids, which are rare, have a map of their own.
type requestIndex struct {
	hex      map[uint64]*RequestResult
	collided map[[16]byte]*RequestResult
	other    map[string]*RequestResult
}

func newRequestIndex(n int) requestIndex {
	return requestIndex{hex: make(map[uint64]*RequestResult, n), collided: map[[16]byte]*RequestResult{}, other: map[string]*RequestResult{}}
}

// fold folds a hex id's bytes to a map key: both halves count, so ids that
// share either half (a counter in one, a prefix in the other) still spread.
func fold(b [16]byte) uint64 {
	return binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])
}

func (x requestIndex) get(id requestID) *RequestResult {
	if !id.isHex {
		return x.other[id.other]
	}
	if r := x.hex[fold(id.hex)]; r != nil && r.hexID == id.hex {
		return r
	}
	return x.collided[id.hex]
}

// of returns the result stored under r's id, r or another one, or nil.
func (x requestIndex) of(r *RequestResult) *RequestResult { return x.get(r.key()) }

// put stores r under its id, replacing a result stored under the same id.
func (x requestIndex) put(r *RequestResult) {
	if !r.hasHexID() {
		x.other[r.rare.id] = r
		return
	}
	k := fold(r.hexID)
	if prev := x.hex[k]; prev != nil && prev.hexID != r.hexID {
		x.collided[r.hexID] = r
		return
	}
	if len(x.collided) > 0 {
		// It went to collided while another id held k.
		delete(x.collided, r.hexID)
	}
	x.hex[k] = r
}

// remove forgets whatever result is stored under r's id.
func (x requestIndex) remove(r *RequestResult) {
	if !r.hasHexID() {
		delete(x.other, r.rare.id)
		return
	}
	k := fold(r.hexID)
	if prev := x.hex[k]; prev != nil && prev.hexID == r.hexID {
		delete(x.hex, k)
		return
	}
	delete(x.collided, r.hexID)
}

func (x requestIndex) len() int { return len(x.hex) + len(x.collided) + len(x.other) }

func (x requestIndex) clear() {
	clear(x.hex)
	clear(x.collided)
	clear(x.other)
}

// NewRequestResult records the outcome (rev, err) of request id, applied at
// index with the leader's stamp now. digest must be DigestSize bytes; err
// must be nil or a domain error (ErrNotFound, ErrStaleRegistration,
// ErrLimitExceeded).
func NewRequestResult(id string, digest []byte, now int64, index, rev uint64, err error) (*RequestResult, error) {
	if len(digest) != DigestSize {
		return nil, fmt.Errorf("request %q: digest is %d bytes, want %d", id, len(digest), DigestSize)
	}
	r := &RequestResult{Revision: rev, Time: now, Index: index, Digest: [DigestSize]byte(digest)}
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		r.setErr(RequestNotFound, err.Error())
	case errors.Is(err, ErrStaleRegistration):
		r.setErr(RequestStaleRegistration, err.Error())
	case errors.Is(err, ErrLimitExceeded):
		r.setErr(RequestLimitExceeded, err.Error())
	default:
		return nil, fmt.Errorf("request %q: cannot remember error %w", id, err)
	}
	r.setID(id)
	return r, nil
}

// setErr sets the first application's domain error; only constructors call
// it, before the result is stored.
func (r *RequestResult) setErr(kind RequestError, msg string) {
	if r.rare == nil {
		r.rare = &requestRare{}
	}
	r.rare.hasErr, r.rare.kind, r.rare.msg = true, kind, msg
}

// failed returns the rare part when the first application had a domain
// error, nil when it succeeded.
func (r *RequestResult) failed() *requestRare {
	if r.rare == nil || !r.rare.hasErr {
		return nil
	}
	return r.rare
}

// ErrKind returns the kind of the first application's domain error,
// RequestOK when it succeeded.
func (r *RequestResult) ErrKind() RequestError {
	if e := r.failed(); e != nil {
		return e.kind
	}
	return RequestOK
}

// ErrMessage returns the text of the first application's domain error, ""
// when it succeeded.
func (r *RequestResult) ErrMessage() string {
	if e := r.failed(); e != nil {
		return e.msg
	}
	return ""
}

// Err returns the first application's error, nil when it succeeded. It has
// the same text and wraps the same sentinel.
func (r *RequestResult) Err() error {
	e := r.failed()
	if e == nil {
		return nil
	}
	switch e.kind {
	case RequestNotFound:
		return &rememberedError{msg: e.msg, kind: ErrNotFound}
	case RequestStaleRegistration:
		return &rememberedError{msg: e.msg, kind: ErrStaleRegistration}
	case RequestLimitExceeded:
		return &rememberedError{msg: e.msg, kind: ErrLimitExceeded}
	default:
		return &rememberedError{msg: e.msg, kind: fmt.Errorf("unknown error kind %d", e.kind)}
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
	return a.Index < b.Index || (a.Index == b.Index && compareID(a, b) < 0)
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
	defer w.requestsByID.clear()
	order := w.stored
	if w.requestsDropped == 0 && len(w.requestsAdded) == 0 {
		return order
	}
	for _, r := range order[:w.requestsDropped] {
		w.s.requestIDs.remove(r)
	}
	added := w.requestsAdded[w.addedDropped:]
	for _, r := range added {
		w.s.requestIDs.put(r)
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
	return w.request(parseRequestID(id)), nil
}

func (w *WriteTxn) request(id requestID) *RequestResult {
	// requestsByID holds only the additions not forgotten again
	// (pruneRequests deletes those): the additions are not in one order
	// once one sorting before a forgotten one was added after it.
	if r := w.requestsByID.get(id); r != nil {
		return r
	}
	r := w.s.requestIDs.get(id)
	if r == nil {
		return nil
	}
	// Forgotten results are the front of the order: r is one when it does
	// not come after the last one forgotten.
	if w.requestsDropped > 0 && !requestBefore(w.stored[w.requestsDropped-1], r) {
		return nil
	}
	return r
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
			if w.requestsByID.of(r) == r {
				w.requestsByID.remove(r)
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
	if r.hasEmptyID() {
		return errors.New("remember request: empty id")
	}
	// The caller looked the id up first (Request): an id is remembered
	// once.
	if w.request(r.key()) != nil {
		return fmt.Errorf("remember request %q: already remembered", r.ID())
	}
	w.requestsByID.put(r)
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
func (r *Restorer) requestOrder() ([]*RequestResult, requestIndex, error) {
	order := slices.Clone(r.requests)
	slices.SortFunc(order, compareRequests)
	byID := newRequestIndex(len(order))
	for _, res := range order {
		if byID.of(res) != nil {
			return nil, requestIndex{}, fmt.Errorf("restore: request id %q appears twice", res.ID())
		}
		byID.put(res)
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
	want := parseRequestID(id)
	for i := len(v.meta.Requests) - 1; i >= 0; i-- {
		if r := v.meta.Requests[i]; r.is(want) {
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

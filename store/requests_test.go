package store

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// requestModel is the request table's rules written plainly: results in
// (Raft index, id) order, the oldest forgotten first.
type requestModel struct {
	max  int
	age  int64
	rows []*RequestResult
}

func (m *requestModel) prune(cutoff int64) {
	for len(m.rows) > 0 && (len(m.rows) > m.max || m.rows[0].Time < cutoff) {
		m.rows = m.rows[1:]
	}
}

func (m *requestModel) remember(r *RequestResult) {
	// The plain rule, not the store's comparison: by index, then the ids
	// as strings, however the store holds them.
	plain := func(a, b *RequestResult) int {
		if a.Index != b.Index {
			return cmp.Compare(a.Index, b.Index)
		}
		return strings.Compare(a.ID(), b.ID())
	}
	i, _ := slices.BinarySearchFunc(m.rows, r, plain)
	m.rows = slices.Insert(slices.Clip(m.rows), i, r)
	if len(m.rows) > m.max {
		m.prune(math.MinInt64)
	}
}

func (m *requestModel) has(id string) bool {
	return slices.ContainsFunc(m.rows, func(r *RequestResult) bool { return r.ID() == id })
}

// TestRequestTableFollowsItsRules: the store forgets and remembers request
// results exactly as the plain rules do (requestModel), through several
// requests at one index in shuffled id order, pruning by age and by count
// (inside a transaction too), aborted transactions, indexes written out of
// order, and restores of another state; and a view lists them in order,
// finds them by id and knows their largest stamp.
func TestRequestTableFollowsItsRules(t *testing.T) {
	opts := Options{HistoryEvents: 100, HistoryBytes: 1 << 20, RequestResults: 6, RequestResultAge: 40}
	s := New(opts)
	model := &requestModel{max: 6, age: 40}
	rng := rand.New(rand.NewSource(1))
	// The ids: other ids, hex ids (held as bytes), and pairs of hex ids
	// whose bytes fold to the same map key (one of each pair goes to the
	// map of collided ids, whichever comes second).
	var pool []string
	for k := range 150 {
		pool = append(pool, fmt.Sprintf("r%03d", k))
		var a [16]byte
		binary.LittleEndian.PutUint64(a[:8], rng.Uint64())
		binary.LittleEndian.PutUint64(a[8:], rng.Uint64())
		pool = append(pool, fmt.Sprintf("%x", a))
		if k%2 == 0 {
			c := rng.Uint64()
			b := a
			binary.LittleEndian.PutUint64(b[:8], binary.LittleEndian.Uint64(a[:8])^c)
			binary.LittleEndian.PutUint64(b[8:], binary.LittleEndian.Uint64(a[8:])^c)
			if fold(a) != fold(b) {
				t.Fatal("the crafted pair does not fold alike")
			}
			pool = append(pool, fmt.Sprintf("%x", b))
		}
	}
	now := int64(1000)
	index := uint64(0)
	forgotten := 0
	var held *View
	var heldRows []*RequestResult
	for step := 0; step < 3000; step++ {
		if step%50 == 0 {
			held, heldRows = s.View(), slices.Clone(model.rows)
		}
		now += int64(rng.Intn(12))
		index++
		at := index
		if rng.Intn(40) == 0 && at > 5 {
			// A store written outside the FSM may go back.
			at -= uint64(rng.Intn(5))
		}
		next := &requestModel{max: model.max, age: model.age, rows: slices.Clone(model.rows)}
		added := 0
		w := s.Begin(at)
		if err := w.PruneRequests(now); err != nil {
			t.Fatal(err)
		}
		next.prune(now - next.age)
		var used []string
		for range rng.Intn(8) {
			if rng.Intn(10) == 0 {
				// A stamp jumps inside one entry (the leader's clock
				// stepped): this request's prune forgets earlier
				// additions of the same transaction too.
				now += next.age + int64(rng.Intn(20))
				if err := w.PruneRequests(now); err != nil {
					t.Fatal(err)
				}
				next.prune(now - next.age)
			}
			id := pool[rng.Intn(len(pool))]
			if len(used) > 0 && rng.Intn(3) == 0 {
				// A retry within the same entry.
				id = used[rng.Intn(len(used))]
			}
			used = append(used, id)
			prev, err := w.Request(id)
			if err != nil {
				t.Fatal(err)
			}
			if (prev != nil) != next.has(id) {
				t.Fatalf("step %d: request %s remembered: %v, the rules say %v", step, id, prev != nil, next.has(id))
			}
			if prev != nil {
				continue
			}
			r := withID(&RequestResult{Time: now, Index: at, Revision: at}, id)
			if err := w.RememberRequest(r); err != nil {
				t.Fatal(err)
			}
			next.remember(r)
			added++
		}
		if rng.Intn(8) == 0 {
			w.Abort()
		} else {
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			forgotten += len(model.rows) + added - len(next.rows)
			model = next
		}
		if rng.Intn(60) == 0 && len(model.rows) > 0 {
			// Restore a state without the oldest result.
			model.rows = slices.Clone(model.rows[1:])
			rows := slices.Clone(model.rows)
			rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
			if err := s.Restore(func(r *Restorer) error {
				for _, row := range rows {
					if err := r.Request(row); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := requestRows(t, s), model.rows; !slices.Equal(got, want) {
			t.Fatalf("step %d: the store holds %v, the rules say %v", step, ids(got), ids(want))
		}
		if got := s.meta.Load().Requests; !slices.Equal(got, model.rows) {
			t.Fatalf("step %d: the store's pruning order is %v, the rules say %v", step, ids(got), ids(model.rows))
		}
		if s.requestIDs.len() != len(model.rows) {
			t.Fatalf("step %d: %d results by id, the rules say %d", step, s.requestIDs.len(), len(model.rows))
		}
		for _, r := range model.rows {
			if s.requestIDs.of(r) != r {
				t.Fatalf("step %d: result %s by id is %v", step, r.ID(), s.requestIDs.of(r))
			}
		}
		// A view finds its state's results by id, and their largest stamp.
		v := s.View()
		for _, id := range []string{fmt.Sprintf("r%03d", rng.Intn(400)), "absent"} {
			var want *RequestResult
			for _, r := range model.rows {
				if r.ID() == id {
					want = r
				}
			}
			if got := v.Request(id); got != want {
				t.Fatalf("step %d: view finds request %s as %v, the rules say %v", step, id, got, want)
			}
		}
		for _, r := range model.rows {
			if got := v.Request(r.ID()); got != r {
				t.Fatalf("step %d: view finds request %s as %v", step, r.ID(), got)
			}
		}
		latest, ok := v.LatestRequestTime()
		if ok != (len(model.rows) > 0) {
			t.Fatalf("step %d: a latest stamp %v with %d results", step, ok, len(model.rows))
		}
		for _, r := range model.rows {
			if r.Time > latest {
				t.Fatalf("step %d: latest stamp %d, but %s is stamped %d", step, latest, r.ID(), r.Time)
			}
		}
		if ok && !slices.ContainsFunc(model.rows, func(r *RequestResult) bool { return r.Time == latest }) {
			t.Fatalf("step %d: latest stamp %d is no result's", step, latest)
		}
		// A view taken earlier still lists its own state's results.
		var got []*RequestResult
		_ = held.Requests(func(r *RequestResult) bool { got = append(got, r); return true })
		if !slices.Equal(got, heldRows) {
			t.Fatalf("step %d: a view from step %d lists %v, it held %v", step, step/50*50, ids(got), ids(heldRows))
		}
	}
	if forgotten < 100 || len(model.rows) == 0 {
		t.Fatalf("%d results forgotten, %d left: the comparison proves little", forgotten, len(model.rows))
	}
}

func requestRows(t *testing.T, s *Store) []*RequestResult {
	t.Helper()
	var out []*RequestResult
	if err := s.View().Requests(func(r *RequestResult) bool { out = append(out, r); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func ids(rs []*RequestResult) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%d/%s@%d", r.Index, r.ID(), r.Time))
	}
	return out
}

// TestRestoreRefusesARequestIDTwice: a state holding one request id twice
// is refused, and the store keeps what it held.
func TestRestoreRefusesARequestIDTwice(t *testing.T) {
	s := New(Options{RequestResults: 10, RequestResultAge: 1000})
	w := s.Begin(1)
	kept := withID(&RequestResult{Index: 1, Time: 5}, "kept")
	if err := w.RememberRequest(kept); err != nil {
		t.Fatal(err)
	}
	if err := w.RememberRequest(withID(&RequestResult{Index: 1, Time: 5}, "kept")); err == nil {
		t.Fatal("an id remembered twice in one transaction was accepted")
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	err := s.Restore(func(r *Restorer) error {
		for _, id := range []string{"a", "b", "a"} {
			if err := r.Request(withID(&RequestResult{Index: 2, Time: 6}, id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), `request id "a" appears twice`) {
		t.Fatalf("restore with a repeated id: %v", err)
	}
	if got := requestRows(t, s); len(got) != 1 || got[0] != kept {
		t.Fatalf("after the refused restore the store holds %v", ids(got))
	}
	w = s.Begin(3)
	defer w.Abort()
	if r, _ := w.Request("kept"); r != kept {
		t.Fatalf("request kept: %v", r)
	}
}

// TestRequestAddedAfterAForgottenOneIsFound: inside one entry the leader's
// stamps may jump (its clock stepped), so a request's prune forgets an
// addition of the same transaction; a request whose id sorts before the
// forgotten one, added after it, is still found, and its id cannot be
// remembered twice.
func TestRequestAddedAfterAForgottenOneIsFound(t *testing.T) {
	s := New(Options{RequestResults: 10, RequestResultAge: 100})
	w := s.Begin(5)
	if err := w.PruneRequests(1000); err != nil {
		t.Fatal(err)
	}
	b := withID(&RequestResult{Index: 5, Time: 1000}, "b")
	if err := w.RememberRequest(b); err != nil {
		t.Fatal(err)
	}
	if err := w.PruneRequests(1200); err != nil { // forgets b
		t.Fatal(err)
	}
	if r, _ := w.Request("b"); r != nil {
		t.Fatalf("forgotten request b found: %+v", r)
	}
	a := withID(&RequestResult{Index: 5, Time: 1200}, "a")
	if err := w.RememberRequest(a); err != nil {
		t.Fatal(err)
	}
	if r, _ := w.Request("a"); r != a {
		t.Fatalf("request a, added after the forgotten b, looked up as %v", r)
	}
	if err := w.RememberRequest(withID(&RequestResult{Index: 5, Time: 1200}, "a")); err == nil {
		t.Fatal("request a remembered twice")
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := requestRows(t, s); len(got) != 1 || got[0] != a {
		t.Fatalf("committed %v, want just a", ids(got))
	}
}

// TestRequestResultRecordRoundTrip: a result's snapshot form gives back the
// same result, its error included, and a record whose digest is not a
// SHA-256 is refused instead of restored as another digest.
func TestRequestResultRecordRoundTrip(t *testing.T) {
	digest := make([]byte, DigestSize)
	digest[0], digest[DigestSize-1] = 7, 9
	for _, id := range []string{"req-1", "0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789abcdef"} {
		for _, applied := range []error{nil, ErrNotFound, fmt.Errorf("web/a: %w", ErrStaleRegistration)} {
			r, err := NewRequestResult(id, digest, 5, 6, 7, applied)
			if err != nil {
				t.Fatal(err)
			}
			rec := RequestResultToRecord(r)
			if rec.GetRequestId() != id {
				t.Fatalf("request %q is recorded as %q", id, rec.GetRequestId())
			}
			back, err := RequestResultFromRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			if back.ID() != id || back.Revision != r.Revision || back.Time != r.Time || back.Index != r.Index ||
				back.Digest != r.Digest || back.ErrKind() != r.ErrKind() || back.ErrMessage() != r.ErrMessage() {
				t.Fatalf("round trip of %+v gave %+v", r, back)
			}
			if (applied == nil) != (back.Err() == nil) || (applied != nil && back.Err().Error() != applied.Error()) {
				t.Fatalf("error %v came back as %v", applied, back.Err())
			}
		}
	}
	for _, n := range []int{0, 16, 33} {
		rec := RequestResultToRecord(withID(&RequestResult{}, "req-2"))
		rec.Digest = make([]byte, n)
		if _, err := RequestResultFromRecord(rec); err == nil {
			t.Fatalf("a record with a %d-byte digest was restored", n)
		}
		if _, err := NewRequestResult("req-2", make([]byte, n), 1, 1, 1, nil); err == nil {
			t.Fatalf("a result with a %d-byte digest was made", n)
		}
	}
}

// TestLatestRequestTimeIsTheLargestStamp: stamps need not grow with the
// Raft index (a leader whose clock was behind its predecessor's), so the
// latest stamp is the largest one, not the newest result's.
func TestLatestRequestTimeIsTheLargestStamp(t *testing.T) {
	s := New(Options{RequestResults: 10, RequestResultAge: 1000})
	if latest, ok := s.View().LatestRequestTime(); ok {
		t.Fatalf("an empty store has a latest stamp %d", latest)
	}
	for i, stamp := range []int64{500, 700, 300} {
		w := s.Begin(uint64(i + 1))
		if err := w.RememberRequest(withID(&RequestResult{Index: uint64(i + 1), Time: stamp}, fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if latest, ok := s.View().LatestRequestTime(); !ok || latest != 700 {
		t.Fatalf("latest stamp %d (%v), want 700", latest, ok)
	}
}

// withID sets r's request id, as the constructors do.
func withID(r *RequestResult, id string) *RequestResult {
	r.setID(id)
	return r
}

// mixedRequestIDs are ids that a hex id held as bytes must order, find and
// give back exactly as their strings: lowercase hex (held as bytes), and
// ids next to them in string order that are not (uppercase, a character
// short or long, a non-hex letter, short names).
var mixedRequestIDs = []string{
	"0123456789abcdef0123456789abcdef",
	"0123456789ABCDEF0123456789ABCDEF",
	"0123456789abcdef0123456789abcde",
	"0123456789abcdef0123456789abcdef0",
	"0123456789abcdef0123456789abcdeg",
	"0123456789abcdef0123456789abcdeF",
	"00000000000000000000000000000000",
	"ffffffffffffffffffffffffffffffff",
	"fffffffffffffffffffffffffffffffe",
	"ffffffffffffffffffffffffffffffff ",
	"0", "A", "f", "g", "req-1", "~",
}

// TestRequestIDsOrderAsStrings: the pruning order (Raft index, then id) is
// part of the replicated state, so every node must keep it as it always
// was, by the ids' strings, whichever ids are held as bytes; and an id is
// given back, and found, exactly as it was written.
func TestRequestIDsOrderAsStrings(t *testing.T) {
	results := make([]*RequestResult, len(mixedRequestIDs))
	for i, id := range mixedRequestIDs {
		r, err := NewRequestResult(id, make([]byte, DigestSize), 1, 1, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, hex := parseHexID(id); r.hasHexID() != hex || (hex && r.rare != nil) {
			t.Fatalf("request %q: held as bytes %v, has a rare part %v", id, r.hasHexID(), r.rare != nil)
		}
		if r.ID() != id {
			t.Fatalf("request %q gives back %q", id, r.ID())
		}
		results[i] = r
	}
	for _, a := range results {
		for _, b := range results {
			if got, want := compareID(a, b), strings.Compare(a.ID(), b.ID()); got != want {
				t.Fatalf("compare %q with %q: %d, strings say %d", a.ID(), b.ID(), got, want)
			}
		}
	}

	// Remembered at one index, they are listed, found and forgotten in
	// string order.
	s := New(Options{RequestResults: len(results), RequestResultAge: 1000})
	w := s.Begin(1)
	for _, r := range results {
		if err := w.RememberRequest(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(mixedRequestIDs))
	var got []string
	for _, r := range requestRows(t, s) {
		got = append(got, r.ID())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %q, want %q", got, want)
	}
	v := s.View()
	for _, r := range results {
		if got := v.Request(r.ID()); got != r {
			t.Fatalf("view finds %q as %v", r.ID(), got)
		}
	}
	if got := v.Request("0123456789abcdef0123456789ABCDEF"); got != nil {
		t.Fatalf("an uppercase spelling of a hex id finds %q", got.ID())
	}
	w = s.Begin(2)
	if err := w.RememberRequest(withID(&RequestResult{Index: 2, Time: 1}, "x")); err != nil {
		t.Fatal(err)
	}
	for _, id := range want[1:] {
		if r, _ := w.Request(id); r == nil || r.ID() != id {
			t.Fatalf("transaction finds %q as %v", id, r)
		}
	}
	if r, _ := w.Request(want[0]); r != nil {
		t.Fatalf("the first in string order, %q, was not the one forgotten: found %q", want[0], r.ID())
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if s.requestIDs.len() != len(results) {
		t.Fatalf("%d results by id, want %d", s.requestIDs.len(), len(results))
	}
}

// TestRequestResultSize: a node keeps up to 100,000 results, so a result
// with a hex id and no error stays one 80-byte allocation.
func TestRequestResultSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are pinned for 64-bit platforms")
	}
	if got := unsafe.Sizeof(RequestResult{}); got != 80 {
		t.Fatalf("RequestResult is %d bytes, want 80", got)
	}
}

// TestRequestIndexFoldedCollisions: hex ids whose bytes fold to the same
// key (a client may choose such ids) are each found, forgotten and
// remembered again as themselves, in the store as in its index.
func TestRequestIndexFoldedCollisions(t *testing.T) {
	// Swapping the halves of an id keeps its fold.
	a := "00000000000000010000000000000002"
	b := "00000000000000020000000000000001"
	c := "00000000000000030000000000000000"
	ra, _ := parseHexID(a)
	rb, _ := parseHexID(b)
	if fold(ra) != fold(rb) {
		t.Fatal("the ids do not collide")
	}
	res := func(id string, index uint64) *RequestResult {
		r, err := NewRequestResult(id, make([]byte, DigestSize), int64(index), index, index, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	x := newRequestIndex(0)
	find := func(want ...*RequestResult) {
		t.Helper()
		for _, r := range want {
			if got := x.get(parseRequestID(r.ID())); got != r {
				t.Fatalf("%s found as %v", r.ID(), got)
			}
		}
		if x.len() != len(want) {
			t.Fatalf("index holds %d results, want %d", x.len(), len(want))
		}
	}
	a1, b1 := res(a, 1), res(b, 2)
	x.put(a1)
	x.put(b1)
	find(a1, b1)
	x.remove(a1)
	find(b1)
	if got := x.get(parseRequestID(a)); got != nil {
		t.Fatalf("forgotten %s found as %v", a, got)
	}
	// b again, as a restored or replaced result: it takes the free key,
	// and the old one does not come back once it is forgotten.
	b2 := res(b, 3)
	x.put(b2)
	find(b2)
	x.remove(b2)
	find()
	a2, b3 := res(a, 4), res(b, 5)
	x.put(a2)
	x.put(b3)
	find(a2, b3)
	x.remove(b3)
	find(a2)
	x.remove(a2)
	find()

	// Through the store: the colliding ids forgotten by the count bound
	// one by one, each still found until it is.
	s := New(Options{RequestResults: 2, RequestResultAge: 1000})
	for i, id := range []string{a, b, c} {
		w := s.Begin(uint64(i + 1))
		if err := w.RememberRequest(res(id, uint64(i+1))); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	w := s.Begin(4)
	defer w.Abort()
	for id, want := range map[string]bool{a: false, b: true, c: true} {
		if r, _ := w.Request(id); (r != nil) != want || (r != nil && r.ID() != id) {
			t.Fatalf("request %s found as %v, want found %v", id, r, want)
		}
	}
	if r := s.View().Request(a); r != nil {
		t.Fatalf("forgotten %s found in the view", a)
	}
}

// TestCompareIDAllocatesNothing: a restore sorts up to 100,000 results,
// and a transaction orders its additions, by id: comparing a hex id held
// as bytes with another id builds the hex text on the stack only.
func TestCompareIDAllocatesNothing(t *testing.T) {
	a, err := NewRequestResult("0123456789abcdef0123456789abcdef", make([]byte, DigestSize), 1, 1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewRequestResult("0123456789abcdef0123456789abcdeg", make([]byte, DigestSize), 1, 1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = compareID(a, b), compareID(b, a) }); n != 0 {
		t.Fatalf("comparing a hex id with another id allocates %v times", n)
	}
}

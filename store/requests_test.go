package store

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

// TestRequestHeadMatchesAWalk: the head kept beside the database, which
// lets a prune with nothing to forget skip walking the index, never
// changes what is forgotten. The same writes (several requests at one
// index in shuffled id order, age and count pruning, aborted
// transactions, restores of another state) go to a store that keeps the head and to one
// made to walk every time; after every transaction both hold the same
// results, and a known head is the first of them.
func TestRequestHeadMatchesAWalk(t *testing.T) {
	opts := Options{HistoryEvents: 100, HistoryBytes: 1 << 20, RequestResults: 6, RequestResultAge: 40}
	kept, walked := New(opts), New(opts)
	rng := rand.New(rand.NewSource(1))
	now := int64(1000)
	known := 0
	for index := uint64(1); index <= 2000; index++ {
		now += int64(rng.Intn(12))
		var ids []string
		for range rng.Intn(4) {
			ids = append(ids, fmt.Sprintf("r%03d", rng.Intn(1000)))
		}
		abort := rng.Intn(8) == 0
		restore := rng.Intn(50) == 0
		for _, s := range []*Store{kept, walked} {
			w := s.Begin(index)
			if s == walked {
				w.requestHead = requestHead{}
			}
			if err := w.PruneRequests(now); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if s == walked {
					w.requestHead = requestHead{}
				}
				if prev, err := w.Request(id); err != nil || prev != nil {
					continue
				}
				if err := w.RememberRequest(&RequestResult{ID: id, Time: now, Index: index, Revision: index}); err != nil {
					t.Fatal(err)
				}
			}
			if abort {
				w.Abort()
				continue
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			if restore {
				// The restored state lacks the first result: a head kept
				// from before would be wrong.
				rows := requestRows(t, s)
				if len(rows) > 0 {
					rows = rows[1:]
				}
				if err := s.Restore(func(r *Restorer) error {
					for _, row := range rows {
						c := *row
						if err := r.Request(&c); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
		got, want := requestRows(t, kept), requestRows(t, walked)
		if !slices.Equal(ids2(got), ids2(want)) {
			t.Fatalf("index %d: the store keeping the head holds %v, a walk gives %v", index, ids2(got), ids2(want))
		}
		if h := kept.requestHead; h.known {
			known++
			if len(got) == 0 || headOf(got[0]) != h {
				t.Fatalf("index %d: head %+v, first result %+v", index, h, got)
			}
		}
	}
	if known < 1000 || len(requestRows(t, kept)) == 0 {
		t.Fatalf("head known after %d of 2000 transactions; the comparison proves little", known)
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

func ids2(rs []*RequestResult) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%d/%s@%d", r.Index, r.ID, r.Time))
	}
	return out
}

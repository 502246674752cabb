package cluster

import (
	"errors"
	"testing"

	"github.com/roster-registry/roster/fsm"
)

// TestEveryProposalOfAnEntryIsAnswered: whatever the state machine
// returns for an entry, each of its proposals gets an answer at once,
// none waits out its caller's deadline and the node does not panic: one
// Result for a batch (a batch that did not decode: none of it applied)
// answers them all, a batch answered with too few or too many results
// fails them all, and a batch's results go each to its own proposal.
func TestEveryProposalOfAnEntryIsAnswered(t *testing.T) {
	proposals := func(n int) []*proposal {
		ps := make([]*proposal, n)
		for i := range ps {
			ps[i] = &proposal{done: make(chan fsm.Result, 1)}
		}
		return ps
	}
	got := func(t *testing.T, ps []*proposal) []fsm.Result {
		t.Helper()
		out := make([]fsm.Result, len(ps))
		for i, p := range ps {
			select {
			case out[i] = <-p.done:
			default:
				t.Fatalf("proposal %d of %d got no answer", i, len(ps))
			}
		}
		return out
	}
	malformed := errors.New("entry 9: malformed command")

	ps := proposals(3)
	answer(ps, fsm.Result{Err: malformed})
	for i, r := range got(t, ps) {
		if !errors.Is(r.Err, malformed) {
			t.Fatalf("proposal %d: %v, want the entry's verdict", i, r.Err)
		}
	}

	for _, n := range []int{2, 4} {
		ps = proposals(3)
		answer(ps, make(fsm.BatchResult, n))
		for i, r := range got(t, ps) {
			if r.Err == nil {
				t.Fatalf("%d results for a batch of 3: proposal %d answered without an error", n, i)
			}
		}
	}

	ps = proposals(3)
	answer(ps, fsm.BatchResult{{Revision: 7}, {Err: malformed}, {Revision: 7}})
	if r := got(t, ps); r[0].Revision != 7 || !errors.Is(r[1].Err, malformed) || r[2].Revision != 7 {
		t.Fatalf("a batch's results: %+v", r)
	}

	ps = proposals(2)
	answer(ps, "something else")
	for i, r := range got(t, ps) {
		if r.Err == nil {
			t.Fatalf("an unexpected response: proposal %d answered without an error", i)
		}
	}
}

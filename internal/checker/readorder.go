package checker

import (
	"fmt"
	"sort"
)

// CheckReadOrder is checker R (promise 6: reads never go back in time).
// Over every successful linearizable get, whichever node served it and
// whichever service it read, a get called after another get returned must
// report a header revision at least as high. Per-key linearizability (L)
// misses a violation between two gets of different services; this compares
// all of them in real-time order. Stale gets, failed gets and gets with no
// known revision (zero) are not judged.
func CheckReadOrder(h *History) Result {
	res := Result{Checker: "R", Verdict: VerdictOK}
	var reads []Op
	for _, op := range h.Ops {
		if op.Kind == KindGet && op.Outcome == OutcomeOK && !op.Stale && op.Revision > 0 {
			reads = append(reads, op)
		}
	}
	byReturn := append([]Op(nil), reads...)
	sort.SliceStable(byReturn, func(i, j int) bool { return byReturn[i].Return < byReturn[j].Return })
	byCall := reads
	sort.SliceStable(byCall, func(i, j int) bool { return byCall[i].Call < byCall[j].Call })

	// Sweep the gets in call order, keeping the highest revision among
	// those that returned strictly before the current call.
	var newest *Op
	next, back := 0, 0
	for i := range byCall {
		op := &byCall[i]
		for next < len(byReturn) && byReturn[next].Return < op.Call {
			if newest == nil || byReturn[next].Revision > newest.Revision {
				newest = &byReturn[next]
			}
			next++
		}
		if newest != nil && op.Revision < newest.Revision {
			back++
			res.addf("get of %s by client %d on %s called at %s reports revision %d, but a get of %s by client %d on %s had already returned revision %d at %s",
				op.Service, op.ClientID, nodeName(op.Node), h.since(op.Call), op.Revision,
				newest.Service, newest.ClientID, nodeName(newest.Node), newest.Revision, h.since(newest.Return))
		}
	}
	if res.OK() {
		res.Short = fmt.Sprintf("R ok reads=%d", len(reads))
		res.Summary = fmt.Sprintf("%d linearizable gets in real-time order never went back to an older revision", len(reads))
	} else {
		res.Short = fmt.Sprintf("R violation back=%d reads=%d", back, len(reads))
		res.Summary = fmt.Sprintf("%d of %d linearizable gets reported an older revision than a get that returned before they were called", back, len(reads))
	}
	return res
}

func nodeName(n string) string {
	if n == "" {
		return "?"
	}
	return n
}

package chaos

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/roster-registry/roster/internal/checker"
)

// readPairClients is how many clients make back-to-back read pairs.
const readPairClients = 2

// readPairs is one recorded client that makes pairs of linearizable gets
// back to back on two different nodes, the leader and another, in either
// order, of two different services, while the other clients write. The
// second get starts after the first returned, so checker R demands it
// report a revision at least as new; L alone would not notice, as the two
// gets read different keys. Reads on the leader are the point: the other
// clients pick nodes at random and reach it only now and then.
func (w *workload) readPairs(ctx context.Context, r *rand.Rand) {
	id := w.clientID()
	var leader *node
	var found time.Time
	for ctx.Err() == nil {
		if leader == nil || time.Since(found) > 500*time.Millisecond {
			leader, found = w.c.leader(ctx), time.Now()
		}
		var others []*node
		for _, n := range w.c.serving() {
			if n != leader {
				others = append(others, n)
			}
		}
		if leader == nil || len(others) == 0 {
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		first, second := leader, others[r.IntN(len(others))]
		if r.IntN(2) == 0 {
			first, second = second, first
		}
		i, j := r.IntN(len(w.services)), 0
		if len(w.services) > 1 {
			j = (i + 1 + r.IntN(len(w.services)-1)) % len(w.services)
		}
		if op, _ := w.get(ctx, id, first, w.services[i], readTimeout); op.Outcome == checker.OutcomeOK {
			w.get(ctx, id, second, w.services[j], readTimeout)
		} else {
			leader = nil
		}
		sleep(ctx, time.Duration(r.IntN(5))*time.Millisecond)
	}
}

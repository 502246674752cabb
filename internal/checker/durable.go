package checker

import (
	"fmt"
	"sort"
	"strings"
)

// CheckDurable is checker D. For every key whose last write is
// acknowledged and concurrent with no other write, each final list taken
// after it must show it: an acknowledged register(v) as v, an acknowledged
// deregister as absent. Keys with any unknown-outcome write are skipped (a
// delayed forward may still apply such a write after later ones; L judges
// them), as is a leased register whose lease may have run out before the
// final list. Separately, every node must report the same state hash at the
// same applied index. An unknown-outcome register whose value was seen
// later counts as acknowledged at the moment it was first seen.
func CheckDurable(h *History) Result {
	res := Result{Checker: "D", Verdict: VerdictOK}
	h = withSeenRegisters(h)
	writes := map[string][]int{}
	for i, op := range h.Ops {
		if (op.Kind == KindRegister || op.Kind == KindDeregister) && op.Outcome != OutcomeFail {
			writes[op.Key] = append(writes[op.Key], i)
		}
	}
	keys := make([]string, 0, len(writes))
	for k := range writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var checked, lost, skippedUnknown, skippedConcurrent, skippedLease, noFinal int
	for _, key := range keys {
		w, why := lastWrite(h, writes[key])
		switch why {
		case "unknown":
			skippedUnknown++
			continue
		case "concurrent":
			skippedConcurrent++
			continue
		}
		seenByFinal := false
		for _, snap := range h.Final {
			if !strings.HasPrefix(key, scopePrefix(snap.Namespace, snap.Service)) || w.Return >= snap.Call {
				continue
			}
			seenByFinal = true
			have, present := snap.Instances[key]
			switch {
			case w.Kind == KindDeregister && present:
				lost++
				res.addf("key %s: acknowledged deregister by client %d (call at %s, revision %d) is its last write, but the final list at revision %d still has %q",
					key, w.ClientID, h.since(w.Call), w.Revision, snap.Revision, have)
			case w.Kind == KindRegister && present && have != w.Value:
				lost++
				res.addf("key %s: acknowledged register(%q) by client %d (call at %s, revision %d) is its last write, but the final list at revision %d has %q",
					key, w.Value, w.ClientID, h.since(w.Call), w.Revision, snap.Revision, have)
			case w.Kind == KindRegister && !present:
				if w.TTL > 0 && snap.Return >= leaseDeadline(h, w, snap.Call) {
					skippedLease++
					continue
				}
				lost++
				res.addf("key %s: acknowledged register(%q) by client %d (call at %s, revision %d) is its last write, but the final list at revision %d lacks the key",
					key, w.Value, w.ClientID, h.since(w.Call), w.Revision, snap.Revision)
			}
		}
		if seenByFinal {
			checked++
		} else {
			noFinal++
		}
	}
	hashIndexes, hashBad := checkHashes(h.NodeHashes, &res)

	scope := fmt.Sprintf("%d keys checked against final lists (skipped: %d unknown-outcome, %d concurrent last writes, %d lease may have run out, %d not covered by a final list); node hashes compared at %d applied indexes",
		checked, skippedUnknown, skippedConcurrent, skippedLease, noFinal, hashIndexes)
	if res.OK() {
		res.Short = "D ok"
		res.Summary = "acknowledged writes durable: " + scope
	} else {
		res.Short = fmt.Sprintf("D violation lost=%d hashes=%d", lost, hashBad)
		res.Summary = fmt.Sprintf("%d acknowledged writes lost, %d applied indexes with differing hashes (%s)", lost, hashBad, scope)
	}
	return res
}

// withSeenRegisters returns a shallow copy of h in which every
// unknown-outcome register whose value was later seen is acknowledged,
// returning when it was first seen (see firstSeen).
func withSeenRegisters(h *History) *History {
	seen := firstSeen(h)
	c := *h
	c.Ops = append([]Op(nil), h.Ops...)
	for i, op := range c.Ops {
		if op.Kind != KindRegister || op.Outcome != OutcomeUnknown {
			continue
		}
		if t, ok := seen[[2]string{op.Key, op.Value}]; ok {
			c.Ops[i].Outcome, c.Ops[i].Return = OutcomeOK, max(t, op.Call)
		}
	}
	return &c
}

// lastWrite returns the key's write with the latest call, or why it cannot
// be judged: "unknown" if any write's outcome is unknown, "concurrent" if
// another write overlaps the last one.
func lastWrite(h *History, idx []int) (Op, string) {
	li := idx[0]
	for _, i := range idx {
		if h.Ops[i].Outcome == OutcomeUnknown {
			return Op{}, "unknown"
		}
		if h.Ops[i].Call > h.Ops[li].Call {
			li = i
		}
	}
	for _, i := range idx {
		if i != li && h.Ops[i].Return >= h.Ops[li].Call {
			return Op{}, "concurrent"
		}
	}
	return h.Ops[li], ""
}

// leaseDeadline returns the earliest time an acknowledged leased register
// may expire, as seen from a read called at before: its call time plus TTL,
// pushed later by every acknowledged heartbeat that returned before the read.
func leaseDeadline(h *History, reg Op, before int64) int64 {
	deadline := reg.Call + int64(reg.TTL)
	for _, op := range h.Ops {
		if op.Kind == KindHeartbeat && op.Key == reg.Key && op.Outcome == OutcomeOK &&
			op.Call > reg.Call && op.Return < before && op.TTL > 0 {
			deadline = max(deadline, op.Call+int64(op.TTL))
		}
	}
	return deadline
}

// checkHashes reports applied indexes at which nodes disagree on the state
// hash; it returns how many indexes two or more nodes reported, and how
// many of those disagree.
func checkHashes(hashes []NodeHash, res *Result) (compared, bad int) {
	byIndex := map[uint64][]NodeHash{}
	for _, nh := range hashes {
		byIndex[nh.AppliedIndex] = append(byIndex[nh.AppliedIndex], nh)
	}
	indexes := make([]uint64, 0, len(byIndex))
	for i := range byIndex {
		indexes = append(indexes, i)
	}
	sort.Slice(indexes, func(a, b int) bool { return indexes[a] < indexes[b] })
	for _, i := range indexes {
		group := byIndex[i]
		if len(group) < 2 {
			continue
		}
		compared++
		differ := false
		for _, nh := range group[1:] {
			differ = differ || nh.Hash != group[0].Hash
		}
		if !differ {
			continue
		}
		bad++
		parts := make([]string, 0, len(group))
		for _, nh := range group {
			parts = append(parts, fmt.Sprintf("%s=%s", nh.Node, nh.Hash))
		}
		res.addf("applied index %d: nodes report different state hashes: %s", i, strings.Join(parts, ", "))
	}
	return compared, bad
}

package checker

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// CheckLeases is checker X: no instance is seen expired (gone or critical)
// before the call time of its last acknowledged renewal (register,
// heartbeat, or a KeepAlive stream's renewal, whose call time is when its
// message was sent) plus the TTL; in particular a late expire of an older
// registration never removes a re-registered instance, and an instance
// registered without a lease never expires.
//
// Why the call time: the leader starts a lease at the instant p it applies
// the renewal, somewhere in [call, return], and owes the instance until
// p+TTL. Since p ≥ call, an expiry before call+TTL is before p+TTL whatever
// p was: a certain violation. Using the return time would flag legitimate
// expiries in [p+TTL, return+TTL). The observation time is the client's
// earliest sight of the absence, after the deletion happened, so it bounds
// the deletion from above and never makes a violation out of a correct
// expiry. slack forgives clock disagreement between client and leader.
//
// Renewals count only when they are certainly before the observation (by
// revision when both are known, else by time). A register or deregister
// that may lie between the last acknowledged register and the observation
// is handled conservatively: a possible deregister explains the absence; a
// possible later register supplies its own, possibly shorter, lease.
func CheckLeases(h *History, slack time.Duration) Result {
	res := Result{Checker: "X", Verdict: VerdictOK}
	byKey := map[string][]int{}
	for i, op := range h.Ops {
		if op.Kind != KindGet {
			byKey[op.Key] = append(byKey[op.Key], i)
		}
	}
	rel := h.since

	expiries := append([]Expiry(nil), h.Expiries...)
	sort.SliceStable(expiries, func(i, j int) bool { return expiries[i].Time < expiries[j].Time })
	var checked, skipped, early int
	for _, e := range expiries {
		v, ok := judgeExpiry(h, byKey[e.Key], e)
		if !ok {
			skipped++
			continue
		}
		checked++
		if v.deadline == math.MaxInt64 {
			early++
			res.addf("key %s seen %s at %s (%s, revision %d), but its last registration (client %d, call %s) holds no lease: an expire of an older registration removed it",
				e.Key, goneWord(e), rel(e.Time), e.Source, e.Revision, v.by.ClientID, rel(v.by.Call))
			continue
		}
		if e.Time+int64(slack) >= v.deadline {
			continue
		}
		early++
		msg := fmt.Sprintf("key %s seen %s at %s (%s, revision %d), %s before its lease could end at %s (%s by client %d called at %s + ttl %s)",
			e.Key, goneWord(e), rel(e.Time), e.Source, e.Revision, time.Duration(v.deadline-e.Time),
			rel(v.deadline), renewalWord(v.by), v.by.ClientID, rel(v.by.Call), v.ttl)
		if v.reregistered && v.by.Kind == KindRegister {
			msg += "; the instance was re-registered then, so this looks like a late expire of the older registration"
		}
		res.addf("%s", msg)
	}
	if res.OK() {
		res.Short = fmt.Sprintf("X ok expiries=%d", checked)
		res.Summary = fmt.Sprintf("leases safe: %d observed expiries checked, %d skipped (no registration certainly before them, or a deregister may explain them)", checked, skipped)
	} else {
		res.Short = fmt.Sprintf("X violation early=%d", early)
		res.Summary = fmt.Sprintf("%d of %d observed expiries came before the lease could end (%d skipped)", early, checked, skipped)
	}
	return res
}

// expiryJudgement is the earliest moment an observed expiry was allowed.
type expiryJudgement struct {
	deadline     int64 // math.MaxInt64: never (no lease)
	by           Op    // the renewal that set the deadline
	ttl          time.Duration
	reregistered bool // an earlier registration preceded the last one
}

// judgeExpiry computes the earliest legitimate expiry time for one
// observation, or reports false when the history cannot tell.
func judgeExpiry(h *History, idx []int, e Expiry) (expiryJudgement, bool) {
	before := func(op Op) bool {
		if e.Revision > 0 && op.Revision > 0 && op.Outcome == OutcomeOK {
			return op.Revision < e.Revision
		}
		if op.Outcome != OutcomeOK {
			return false
		}
		if e.NotBefore > 0 {
			return op.Return < e.NotBefore
		}
		return op.Return < e.Time
	}
	after := func(op Op) bool {
		if e.Revision > 0 && op.Revision > 0 && op.Outcome == OutcomeOK {
			return op.Revision > e.Revision
		}
		return op.Call > e.Time
	}

	last := -1
	for _, i := range idx {
		op := h.Ops[i]
		if op.Kind == KindRegister && op.Outcome == OutcomeOK && before(op) &&
			(last < 0 || op.Call > h.Ops[last].Call) {
			last = i
		}
	}
	if last < 0 {
		return expiryJudgement{}, false
	}
	reg := h.Ops[last]
	leaseEnd := func(base int64, ttl time.Duration) int64 {
		if ttl <= 0 {
			return math.MaxInt64
		}
		return base + int64(ttl)
	}
	j := expiryJudgement{deadline: leaseEnd(reg.Call, reg.TTL), by: reg, ttl: reg.TTL}
	ambiguous := false
	laterRegCall := int64(math.MaxInt64)
	for _, i := range idx {
		op := h.Ops[i]
		if i == last || op.Outcome == OutcomeFail || op.Kind == KindHeartbeat {
			continue
		}
		strictlyBefore := op.Outcome == OutcomeOK && op.Return < reg.Call
		if op.Kind == KindRegister && strictlyBefore {
			j.reregistered = true
		}
		if strictlyBefore {
			continue
		}
		if after(op) {
			if op.Kind == KindRegister {
				laterRegCall = min(laterRegCall, op.Call)
			}
			continue
		}
		if op.Kind == KindDeregister {
			return expiryJudgement{}, false
		}
		// A register that may have applied after the last one: if it is the
		// one expired, its lease began no earlier than reg's call.
		ambiguous = true
		if d := leaseEnd(max(op.Call, reg.Call), op.TTL); d < j.deadline {
			j.deadline, j.by, j.ttl = d, op, op.TTL
		}
	}
	if ambiguous || j.deadline == math.MaxInt64 {
		return j, true
	}
	seenBy := e.Time
	if e.NotBefore > 0 {
		seenBy = e.NotBefore
	}
	for _, i := range idx {
		hb := h.Ops[i]
		if hb.Kind != KindHeartbeat || hb.Outcome != OutcomeOK || hb.Call <= reg.Call ||
			hb.Return >= seenBy || hb.Return >= laterRegCall {
			continue
		}
		ttl := hb.TTL
		if ttl <= 0 {
			ttl = reg.TTL
		}
		if d := hb.Call + int64(ttl); d > j.deadline {
			j.deadline, j.by, j.ttl = d, hb, ttl
		}
	}
	return j, true
}

// renewalWord names the kind of a renewal: a heartbeat sent on a KeepAlive
// stream is "keepalive", and its call time is its message's send time.
func renewalWord(op Op) string {
	if op.Kind == KindHeartbeat && op.Stream {
		return "keepalive"
	}
	return string(op.Kind)
}

func goneWord(e Expiry) string {
	if e.Critical {
		return "critical"
	}
	return "gone"
}

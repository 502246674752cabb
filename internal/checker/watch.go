package checker

import (
	"fmt"
	"maps"
	"sort"
	"strings"
)

// revKey identifies one event: one key changed at one revision.
type revKey struct {
	Rev uint64
	Key string
}

// fact is one event of the merged history and who reported it first.
type fact struct {
	revKey
	Type   EventType
	Value  string
	Source string
}

// mergeEvents builds the merged history: every event a full (not
// healthy-only) watcher received outside a reset, and every acknowledged
// write whose revision is known. Sources that disagree about one
// (revision, key) are a violation.
func mergeEvents(h *History, res *Result) []fact {
	byKey := map[revKey]fact{}
	add := func(f fact) {
		old, ok := byKey[f.revKey]
		if !ok {
			byKey[f.revKey] = f
			return
		}
		if old.Type != f.Type || old.Value != f.Value {
			res.addf("revision %d key %s: %s says %s %q, %s says %s %q",
				f.Rev, f.Key, old.Source, old.Type, old.Value, f.Source, f.Type, f.Value)
		}
	}
	for i, op := range h.Ops {
		if op.Outcome != OutcomeOK || op.Revision == 0 {
			continue
		}
		src := fmt.Sprintf("acked %s by client %d (op %d)", op.Kind, op.ClientID, i)
		switch op.Kind {
		case KindRegister:
			add(fact{revKey{op.Revision, op.Key}, EventPut, op.Value, src})
		case KindDeregister:
			add(fact{revKey{op.Revision, op.Key}, EventDelete, "", src})
		}
	}
	for _, w := range h.Watches {
		if w.HealthyOnly {
			continue
		}
		for _, s := range w.Subscriptions {
			for _, m := range s.Messages {
				if m.Reset {
					continue
				}
				for _, e := range m.Events {
					add(fact{revKey{e.Revision, e.Key}, e.Type, e.Value, "watcher " + w.Watcher})
				}
			}
		}
	}
	out := make([]fact, 0, len(byKey))
	for _, f := range byKey {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Rev != out[j].Rev {
			return out[i].Rev < out[j].Rev
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// CheckWatches is checker W. Over each watcher's messages it checks that
// revisions never go down; no (revision, key) arrives twice; no revision is
// split across messages; nothing at or below a bookmark (or an earlier
// message's revision) follows it; a resumed stream starts after the
// requested revision and misses nothing after it; every merged event
// matching the filter inside a stream's covered range arrived; a reset
// replaces the state; and the replayed state equals each final list at
// its revision.
func CheckWatches(h *History) Result {
	res := Result{Checker: "W", Verdict: VerdictOK}
	merged := mergeEvents(h, &res)
	var events, messages, compared, unobservable int
	for i := range h.Watches {
		wk := newWatchWalker(h, i, merged, &res)
		wk.walk()
		events += wk.events
		messages += wk.messages
		c, u := wk.compareFinal()
		compared += c
		unobservable += u
	}
	scope := fmt.Sprintf("%d events in %d messages from %d watchers, %d merged events, replay compared with final lists at %d points (%d not observable: state unknown or revision not reached)",
		events, messages, len(h.Watches), len(merged), compared, unobservable)
	if res.OK() {
		res.Short = fmt.Sprintf("W ok events=%d", events)
		res.Summary = "watch invariants hold: " + scope
	} else {
		res.Short = fmt.Sprintf("W violation issues=%d", len(res.Details)+res.Dropped)
		res.Summary = fmt.Sprintf("%d watch invariant violations; first: %s (%s)",
			len(res.Details)+res.Dropped, res.Details[0], scope)
	}
	return res
}

// segment is a stretch of one stream that promises every change in
// (lo, hi]: from the start (or a reset) to the last revision completed.
type segment struct {
	lo, hi  uint64
	got     map[revKey]bool
	first   uint64 // first event revision received, 0 if none
	resumed bool   // started by a resume at a requested revision
	where   string
}

// target is a final list the replayed state is compared with.
type target struct {
	rev  uint64
	snap int
}

// watchWalker replays one watcher's stream.
type watchWalker struct {
	h      *History
	w      *WatchStream
	res    *Result
	merged []fact
	prefix string

	seen   map[revKey]bool
	maxRev uint64
	// known: state is the replayed state, complete through stateRev, the
	// last revision the stream has delivered everything up to.
	known    bool
	state    map[string]string
	stateRev uint64
	pending  []target
	captured map[int]map[string]string
	segments []*segment

	events, messages int
}

func newWatchWalker(h *History, i int, merged []fact, res *Result) *watchWalker {
	w := &h.Watches[i]
	wk := &watchWalker{
		h: h, w: w, res: res, merged: merged,
		prefix:   scopePrefix(w.Namespace, w.Service),
		seen:     map[revKey]bool{},
		captured: map[int]map[string]string{},
	}
	if !w.HealthyOnly {
		for si, s := range h.Final {
			if _, ok := overlap(wk.prefix, scopePrefix(s.Namespace, s.Service)); ok {
				wk.pending = append(wk.pending, target{s.Revision, si})
			}
		}
		sort.Slice(wk.pending, func(a, b int) bool { return wk.pending[a].rev < wk.pending[b].rev })
	}
	return wk
}

// overlap returns the narrower of two key prefixes when one contains the
// other.
func overlap(a, b string) (string, bool) {
	switch {
	case strings.HasPrefix(a, b):
		return a, true
	case strings.HasPrefix(b, a):
		return b, true
	}
	return "", false
}

// advance settles every pending final list at or below rev: the stream has
// delivered everything up to rev, so the replayed state now is the state
// at that list's revision, if the state is known.
func (wk *watchWalker) advance(rev uint64) {
	for len(wk.pending) > 0 && wk.pending[0].rev <= rev {
		t := wk.pending[0]
		wk.pending = wk.pending[1:]
		if wk.known {
			wk.captured[t.snap] = maps.Clone(wk.state)
		}
	}
}

// skipBelow drops pending final lists below rev, which a reset or resume
// jumped over.
func (wk *watchWalker) skipBelow(rev uint64) {
	for len(wk.pending) > 0 && wk.pending[0].rev < rev {
		wk.pending = wk.pending[1:]
	}
}

func (wk *watchWalker) walk() {
	for si := range wk.w.Subscriptions {
		wk.walkSubscription(si)
	}
	if !wk.w.HealthyOnly {
		for _, seg := range wk.segments {
			wk.checkGaps(seg)
		}
	}
}

func (wk *watchWalker) walkSubscription(si int) {
	sub := &wk.w.Subscriptions[si]
	start := sub.StartRevision
	name := fmt.Sprintf("watcher %s subscription %d (start %d, node %s)", wk.w.Watcher, si, start, sub.Node)
	floor, floorWhy := start, fmt.Sprintf("the requested start revision %d", start)
	var seg *segment
	if start > 0 {
		for rk := range wk.seen {
			if rk.Rev > start {
				delete(wk.seen, rk)
			}
		}
		if !wk.known || wk.stateRev != start {
			wk.known = false
		}
		seg = &segment{lo: start, hi: start, got: map[revKey]bool{}, resumed: si > 0, where: name}
		wk.segments = append(wk.segments, seg)
	} else {
		wk.known = false
	}
	var prevMsgMax uint64
	for mi, m := range sub.Messages {
		wk.messages++
		wk.events += len(m.Events)
		where := fmt.Sprintf("%s message %d (revision %d)", name, mi, m.Revision)
		if mi == 0 && start == 0 && !m.Reset {
			wk.res.addf("%s: start revision 0 must begin with a reset, got a %s", where, describeMsg(m))
		}
		if m.Reset {
			wk.reset(m, where)
			floor, floorWhy = m.Revision, fmt.Sprintf("the reset revision %d", m.Revision)
			seg = &segment{lo: m.Revision, hi: m.Revision, got: map[revKey]bool{}, where: where}
			wk.segments = append(wk.segments, seg)
			prevMsgMax = 0
			continue
		}
		if seg == nil {
			// start 0 without a reset: treat as covering from its first message.
			seg = &segment{lo: floor, hi: floor, got: map[revKey]bool{}, where: name}
			wk.segments = append(wk.segments, seg)
		}
		var last, msgMax uint64
		for ei, e := range m.Events {
			rk := revKey{e.Revision, e.Key}
			switch {
			case ei > 0 && e.Revision < last:
				wk.res.addf("%s: revision went down inside the message: %s after revision %d", where, describeEvent(e), last)
			case prevMsgMax > 0 && e.Revision == prevMsgMax && floor == prevMsgMax && !wk.seen[rk]:
				wk.res.addf("%s: revision %d split across messages: %s arrived after an earlier message already carried revision %d",
					where, e.Revision, describeEvent(e), prevMsgMax)
			case e.Revision <= floor && wk.seen[rk]:
				wk.res.addf("%s: duplicate %s, already received, and at or below %s", where, describeEvent(e), floorWhy)
			case e.Revision <= floor:
				wk.res.addf("%s: %s is at or below %s", where, describeEvent(e), floorWhy)
			case wk.seen[rk]:
				wk.res.addf("%s: duplicate %s (revision %d, key %s already received)", where, describeEvent(e), e.Revision, e.Key)
			}
			if m.Revision > 0 && e.Revision > m.Revision {
				wk.res.addf("%s: %s is above the message's revision %d", where, describeEvent(e), m.Revision)
			}
			if !strings.HasPrefix(e.Key, wk.prefix) {
				wk.res.addf("%s: %s is outside the watch filter %q", where, describeEvent(e), wk.prefix)
			}
			wk.seen[rk] = true
			seg.got[rk] = true
			if seg.first == 0 {
				seg.first = e.Revision
			}
			last, msgMax = e.Revision, max(msgMax, e.Revision)
			wk.apply(e, where)
		}
		if m.Revision > 0 && m.Revision < floor {
			wk.res.addf("%s: %s revision %d went below %s", where, describeMsg(m), m.Revision, floorWhy)
		}
		covered := max(m.Revision, msgMax)
		if covered > floor {
			floor = covered
			floorWhy = fmt.Sprintf("the revision %d of an earlier message", covered)
			if m.Progress {
				floorWhy = fmt.Sprintf("the bookmark at revision %d", covered)
			}
		}
		if len(m.Events) > 0 {
			prevMsgMax = msgMax
		}
		seg.hi = max(seg.hi, covered)
		wk.maxRev = max(wk.maxRev, covered)
		wk.advance(covered)
		if wk.known {
			wk.stateRev = max(wk.stateRev, covered)
		}
	}
}

// reset replaces the replayed state with a reset message's snapshot.
func (wk *watchWalker) reset(m WatchMessage, where string) {
	if m.Revision < wk.maxRev {
		wk.res.addf("%s: reset at revision %d is below revision %d the watcher already had: its view went back",
			where, m.Revision, wk.maxRev)
	}
	state := map[string]string{}
	for _, e := range m.Events {
		switch {
		case e.Type != EventPut:
			wk.res.addf("%s: reset carries a %s", where, describeEvent(e))
		case e.Revision > m.Revision:
			wk.res.addf("%s: reset carries %s above its revision %d", where, describeEvent(e), m.Revision)
		}
		if _, dup := state[e.Key]; dup {
			wk.res.addf("%s: reset carries key %s twice", where, e.Key)
		}
		state[e.Key] = e.Value
	}
	wk.skipBelow(m.Revision)
	wk.state, wk.stateRev, wk.known = state, m.Revision, true
	wk.maxRev = max(wk.maxRev, m.Revision)
	wk.advance(m.Revision)
}

// apply replays one event onto the state, first settling final lists that
// the event's revision passes.
func (wk *watchWalker) apply(e WatchEvent, where string) {
	if e.Revision > 0 {
		wk.advance(e.Revision - 1)
	}
	if !wk.known {
		return
	}
	switch e.Type {
	case EventPut:
		wk.state[e.Key] = e.Value
	case EventDelete:
		if _, ok := wk.state[e.Key]; !ok && !wk.w.HealthyOnly {
			wk.res.addf("%s: %s of a key the replayed state does not hold", where, describeEvent(e))
		}
		delete(wk.state, e.Key)
	default:
		wk.res.addf("%s: event of unknown type %q", where, e.Type)
	}
}

// checkGaps reports merged events the segment promised but did not carry.
func (wk *watchWalker) checkGaps(seg *segment) {
	i := sort.Search(len(wk.merged), func(i int) bool { return wk.merged[i].Rev > seg.lo })
	missed := 0
	for ; i < len(wk.merged) && wk.merged[i].Rev <= seg.hi; i++ {
		f := wk.merged[i]
		if !strings.HasPrefix(f.Key, wk.prefix) || seg.got[f.revKey] {
			continue
		}
		missed++
		if missed > 5 {
			continue
		}
		ev := describeEvent(WatchEvent{Type: f.Type, Revision: f.Rev, Key: f.Key, Value: f.Value})
		if seg.resumed && (seg.first == 0 || f.Rev < seg.first) {
			wk.res.addf("%s: resumed after revision %d but its first event came at revision %d, missing %s (seen by %s)",
				seg.where, seg.lo, seg.first, ev, f.Source)
			continue
		}
		wk.res.addf("%s: gap: missing %s (seen by %s) inside its covered range (%d, %d]",
			seg.where, ev, f.Source, seg.lo, seg.hi)
	}
	if missed > 5 {
		wk.res.addf("%s: %d more missing events in (%d, %d]", seg.where, missed-5, seg.lo, seg.hi)
	}
}

// compareFinal compares the replayed state with each final list the
// stream reached with a known state, and returns how many it compared and
// how many it could not (the stream never reached the list's revision, or
// started from a revision without a reset, so its state is unknown).
func (wk *watchWalker) compareFinal() (compared, unobservable int) {
	if wk.w.HealthyOnly {
		return 0, 0
	}
	for si, snap := range wk.h.Final {
		prefix, ok := overlap(wk.prefix, scopePrefix(snap.Namespace, snap.Service))
		if !ok {
			continue
		}
		got, ok := wk.captured[si]
		if !ok {
			unobservable++
			continue
		}
		compared++
		var diffs []string
		for _, k := range unionKeys(got, snap.Instances) {
			if !strings.HasPrefix(k, prefix) {
				continue
			}
			want, inWant := snap.Instances[k]
			have, inHave := got[k]
			if inWant != inHave || want != have {
				diffs = append(diffs, fmt.Sprintf("%s: final list %s, replay %s", k, show(want, inWant), show(have, inHave)))
			}
		}
		if len(diffs) > 0 {
			wk.res.addf("watcher %s replayed to revision %d differs from the final list on %d keys: %s",
				wk.w.Watcher, snap.Revision, len(diffs), strings.Join(firstN(diffs, 5), "; "))
		}
	}
	return compared, unobservable
}

func unionKeys(a, b map[string]string) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func show(v string, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprintf("%q", v)
}

func describeEvent(e WatchEvent) string {
	if e.Type == EventPut {
		return fmt.Sprintf("PUT %s=%q at revision %d", e.Key, e.Value, e.Revision)
	}
	return fmt.Sprintf("%s %s at revision %d", e.Type, e.Key, e.Revision)
}

func describeMsg(m WatchMessage) string {
	switch {
	case m.Reset:
		return "reset"
	case m.Progress:
		return "bookmark"
	default:
		return fmt.Sprintf("message of %d events", len(m.Events))
	}
}

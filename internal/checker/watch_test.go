package checker

import "testing"

func TestWatchGoodHistory(t *testing.T) {
	wantOK(t, CheckWatches(goodHistory()))
}

// w1 returns the first watcher's subscriptions of a copy of the good
// history, to break.
func w1(h *History) []Subscription { return h.Watches[0].Subscriptions }

func TestWatchViolations(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(h *History)
		want   string
	}{
		{"duplicate revision and key in one message", func(h *History) {
			m := &w1(h)[1].Messages[0]
			m.Events = append(m.Events, del(8, keyA))
		}, "duplicate DELETE default/web/a at revision 8"},
		{"duplicate revision and key in a later message", func(h *History) {
			s := &w1(h)[1]
			s.Messages = append(s.Messages[:2:2], msg(9, 95, put(9, keyB, "w2")), s.Messages[2])
		}, "duplicate PUT default/web/b=\"w2\" at revision 9"},
		{"gap", func(h *History) {
			s := &w1(h)[0]
			s.Messages = append(s.Messages[:2:2], s.Messages[3])
		}, "gap: missing PUT default/web/b=\"w1\" at revision 6"},
		{"split revision", func(h *History) {
			s := &w1(h)[1]
			s.Messages = append(s.Messages[:2:2], msg(9, 92, put(9, keyC, "x1")), s.Messages[2])
		}, "revision 9 split across messages"},
		{"event at the bookmark", func(h *History) {
			s := &w1(h)[0]
			s.Messages = append(s.Messages, msg(7, 56, put(7, keyC, "x1")))
		}, "at or below the bookmark at revision 7"},
		{"event below the bookmark", func(h *History) {
			s := &w1(h)[1]
			s.Messages = append(s.Messages, msg(9, 121, put(9, keyC, "x1")))
		}, "at or below the bookmark at revision 10"},
		{"resume starts at the requested revision", func(h *History) {
			s := &w1(h)[1]
			s.Messages = append([]WatchMessage{msg(7, 57, put(7, keyC, "x1"))}, s.Messages...)
		}, "at or below the requested start revision 7"},
		{"resume starts late", func(h *History) {
			s := &w1(h)[1]
			s.Messages = s.Messages[1:]
		}, "resumed after revision 7 but its first event came at revision 9, missing DELETE default/web/a at revision 8"},
		{"revision goes down", func(h *History) {
			s := &w1(h)[0]
			s.Messages[2].Events[0].Revision = 4
			s.Messages[2].Revision = 4
		}, "at or below the revision 5 of an earlier message"},
		{"replay differs from the final list", func(h *History) {
			w1(h)[0].Messages[0] = reset(4, 1, put(3, keyC, "ghost"))
		}, "differs from the final list on 1 keys: default/web/c: final list absent, replay \"ghost\""},
		{"reset goes back", func(h *History) {
			s := &h.Watches[2].Subscriptions[1]
			s.Messages[0] = reset(3, 96)
		}, "reset at revision 3 is below revision 5 the watcher already had"},
		{"start 0 without reset", func(h *History) {
			s := &h.Watches[2].Subscriptions[0]
			s.Messages = s.Messages[1:]
		}, "start revision 0 must begin with a reset"},
		{"delete of an absent key", func(h *History) {
			w1(h)[0].Messages[1].Events[0] = del(5, keyA)
		}, "DELETE default/web/a at revision 5 of a key the replayed state does not hold"},
		{"sources disagree", func(h *History) {
			h.Watches[1].Subscriptions[0].Messages[2].Events[0].Value = "other"
		}, "revision 9 key default/web/b"},
		{"event outside the filter", func(h *History) {
			m := &w1(h)[1].Messages[1]
			m.Events = append(m.Events, put(9, "default/api/x", "y"))
		}, "outside the watch filter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := clone(t, goodHistory())
			tc.break_(h)
			wantViolation(t, CheckWatches(h), tc.want)
		})
	}
}

func TestWatchResetReplacesState(t *testing.T) {
	// w3 saw a registered, then re-subscribed from a reset without a; if
	// the reset did not replace its state, a would linger and differ from
	// the final list.
	h := goodHistory()
	h.Watches = h.Watches[2:]
	wantOK(t, CheckWatches(h))

	// The same stream resumed (not reset) cannot skip the delete of a.
	h = clone(t, h)
	s := &h.Watches[0].Subscriptions[1]
	s.StartRevision = 5
	s.Messages = []WatchMessage{msg(9, 96, put(9, keyB, "w2")), progress(10, 120)}
	h.Ops = goodHistory().Ops
	wantViolation(t, CheckWatches(h), "missing PUT default/web/b=\"w1\" at revision 6")
}

func TestWatchHealthyOnlySkipsGapsAndReplay(t *testing.T) {
	h := goodHistory()
	s := &h.Watches[0].Subscriptions[0]
	s.Messages = append(s.Messages[:2:2], s.Messages[3])
	h.Watches[0].HealthyOnly = true
	wantOK(t, CheckWatches(h))

	// Order is still checked.
	s.Messages = append(s.Messages, msg(7, 56, put(7, keyC, "x1")))
	wantViolation(t, CheckWatches(h), "bookmark")
}

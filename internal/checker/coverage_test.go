package checker

import (
	"strings"
	"testing"
)

// TestNeverAppliedNeedsAWatcherThatSawEverythingAfterTheCall: an unknown
// register whose value was never received is dropped only when one watcher,
// seeing every change, received without a gap every change from before the
// call to the end.
func TestNeverAppliedNeedsAWatcherThatSawEverythingAfterTheCall(t *testing.T) {
	op := unknown(register(0, keyA, "v2", 20, 0, 0))
	stream := func(subs ...Subscription) WatchStream {
		return WatchStream{Watcher: "w", Namespace: "default", Subscriptions: subs}
	}
	sub := func(start uint64, msgs ...WatchMessage) Subscription {
		return Subscription{StartRevision: start, Messages: msgs}
	}
	for _, tc := range []struct {
		name string
		w    WatchStream
		want bool
	}{
		{"whole namespace, no gap", stream(sub(0, reset(5, 15, put(5, keyA, "v1")), progress(9, 80))), true},
		{"resumed at the last revision", stream(
			sub(0, reset(5, 15, put(5, keyA, "v1"))),
			sub(5, msg(7, 60, put(7, keyB, "x")), progress(9, 80))), true},
		{"first message after the call", stream(sub(0, reset(5, 25, put(5, keyA, "v1")), progress(9, 80))), false},
		{"a reset after the call hides changes", stream(
			sub(0, reset(5, 15, put(5, keyA, "v1"))),
			sub(0, reset(9, 60, put(9, keyA, "v1")))), false},
		{"resumed past the last revision", stream(
			sub(0, reset(5, 15, put(5, keyA, "v1"))),
			sub(7, progress(9, 80))), false},
		{"another service", WatchStream{Watcher: "w", Namespace: "default", Service: "api",
			Subscriptions: []Subscription{sub(0, reset(5, 15), progress(9, 80))}}, false},
		{"healthy only", WatchStream{Watcher: "w", Namespace: "default", HealthyOnly: true,
			Subscriptions: []Subscription{sub(0, reset(5, 15, put(5, keyA, "v1")), progress(9, 80))}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &History{Watches: []WatchStream{tc.w}}
			if got := neverApplied(coverage(h), op); got != tc.want {
				t.Fatalf("neverApplied = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLinearizableDropsOnlyWritesProvedNeverApplied: with a watcher that
// saw every change, an unknown register of a value nobody received no
// longer counts as an open write; one the watcher could have missed still
// does, so a history it explains stays linearizable.
func TestLinearizableDropsOnlyWritesProvedNeverApplied(t *testing.T) {
	h := &History{Ops: []Op{
		register(0, keyA, "v1", 0, 10, 5),
		unknown(register(0, keyA, "v2", 20, 0, 0)),
		get(1, map[string]string{"a": "v1"}, 40, 50, 5),
	}, Watches: []WatchStream{{Watcher: "w", Namespace: "default", Subscriptions: []Subscription{
		{Messages: []WatchMessage{reset(5, 15, put(5, keyA, "v1")), progress(9, 80)}},
	}}}}
	r := checkL(h)
	wantOK(t, r)
	if want := "0 unknown-outcome writes"; !strings.Contains(r.Summary, want) {
		t.Fatalf("summary %q, want %q", r.Summary, want)
	}
	h.Watches[0].Subscriptions[0].Messages[0].Time = ms(25) // first seen after the call
	r = checkL(h)
	wantOK(t, r)
	if want := "1 unknown-outcome writes"; !strings.Contains(r.Summary, want) {
		t.Fatalf("summary %q, want %q", r.Summary, want)
	}
}

package checker

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// ms turns milliseconds into the history's nanosecond clock.
func ms(n int64) int64 { return n * int64(time.Millisecond) }

const (
	svc  = "default/web"
	keyA = "default/web/a"
	keyB = "default/web/b"
	keyC = "default/web/c"
	keyD = "default/web/d"
)

func register(client int, key, value string, call, ret int64, rev uint64) Op {
	return Op{ClientID: client, Kind: KindRegister, Key: key, Value: value,
		Call: ms(call), Return: ms(ret), Outcome: OutcomeOK, Revision: rev}
}

func deregister(client int, key string, call, ret int64, rev uint64) Op {
	return Op{ClientID: client, Kind: KindDeregister, Key: key,
		Call: ms(call), Return: ms(ret), Outcome: OutcomeOK, Revision: rev}
}

func get(client int, observed map[string]string, call, ret int64, rev uint64) Op {
	return Op{ClientID: client, Kind: KindGet, Service: svc, Observed: observed,
		Call: ms(call), Return: ms(ret), Outcome: OutcomeOK, Revision: rev}
}

func unknown(op Op) Op {
	op.Outcome, op.Code, op.Return, op.Revision = OutcomeUnknown, "DeadlineExceeded", 0, 0
	return op
}

func put(rev uint64, key, value string) WatchEvent {
	return WatchEvent{Type: EventPut, Revision: rev, Key: key, Value: value}
}

func del(rev uint64, key string) WatchEvent {
	return WatchEvent{Type: EventDelete, Revision: rev, Key: key}
}

func msg(rev uint64, t int64, events ...WatchEvent) WatchMessage {
	return WatchMessage{Revision: rev, Time: ms(t), Events: events}
}

func progress(rev uint64, t int64) WatchMessage {
	return WatchMessage{Revision: rev, Time: ms(t), Progress: true}
}

func reset(rev uint64, t int64, events ...WatchEvent) WatchMessage {
	return WatchMessage{Revision: rev, Time: ms(t), Reset: true, Events: events}
}

// goodHistory is a small run every checker passes: a, b written and read,
// a deregistered, three watchers (one cut and resumed, one whole-namespace,
// one re-subscribing from a reset), a final list, agreeing node hashes, and
// a leased key d that expires after its TTL.
func goodHistory() *History {
	leased := register(0, keyD, "z1", 150, 160, 11)
	leased.TTL = 100 * time.Millisecond
	return &History{
		KeySpace: []string{keyA, keyB},
		Ops: []Op{
			register(0, keyA, "v1", 0, 10, 5),
			register(0, keyB, "w1", 20, 30, 6),
			get(1, map[string]string{"a": "v1", "b": "w1"}, 40, 50, 6),
			deregister(0, keyA, 60, 70, 8),
			register(0, keyB, "w2", 80, 90, 9),
			get(1, map[string]string{"b": "w2"}, 100, 110, 9),
			{ClientID: 1, Kind: KindDeregister, Key: keyA, Call: ms(112), Return: ms(115),
				Outcome: OutcomeFail, Code: CodeNotFound},
			leased,
			{ClientID: 2, Kind: KindHeartbeat, Key: keyD, Call: ms(170), Return: ms(175),
				Outcome: OutcomeOK, TTL: 100 * time.Millisecond},
			get(1, map[string]string{"b": "w2"}, 390, 400, 12),
		},
		Watches: []WatchStream{
			{Watcher: "w1", Namespace: "default", Service: "web", Subscriptions: []Subscription{
				{StartRevision: 0, Node: "n1", Messages: []WatchMessage{
					reset(4, 1), msg(5, 11, put(5, keyA, "v1")), msg(6, 31, put(6, keyB, "w1")), progress(7, 55),
				}, Err: "stream cut"},
				{StartRevision: 7, Node: "n2", Time: ms(56), Messages: []WatchMessage{
					msg(8, 71, del(8, keyA)), msg(9, 91, put(9, keyB, "w2")), progress(10, 120),
				}},
			}},
			{Watcher: "w2", Namespace: "default", Subscriptions: []Subscription{
				{StartRevision: 4, Node: "n3", Messages: []WatchMessage{
					msg(6, 31, put(5, keyA, "v1"), put(6, keyB, "w1")),
					msg(8, 71, del(8, keyA)), msg(9, 91, put(9, keyB, "w2")), progress(10, 120),
				}},
			}},
			{Watcher: "w3", Namespace: "default", Service: "web", Subscriptions: []Subscription{
				{StartRevision: 0, Node: "n1", Messages: []WatchMessage{reset(4, 1), msg(5, 11, put(5, keyA, "v1"))}},
				{StartRevision: 0, Node: "n2", Time: ms(95), Messages: []WatchMessage{
					reset(9, 96, put(9, keyB, "w2")), progress(10, 120),
				}},
			}},
		},
		Final: []Snapshot{{Namespace: "default", Service: "web", Revision: 9, Call: ms(130), Return: ms(140),
			Instances: map[string]string{keyB: "w2"}}},
		NodeHashes: []NodeHash{{"n1", 10, "abc"}, {"n2", 10, "abc"}, {"n3", 10, "abc"}, {"n3", 12, "def"}},
		Expiries:   []Expiry{{Key: keyD, Time: ms(400), NotBefore: ms(390), Revision: 12, Source: "get"}},
	}
}

// clone deep-copies a history through JSON, as the harness's file would.
func clone(t *testing.T, h *History) *History {
	t.Helper()
	data, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var c History
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func wantOK(t *testing.T, r Result) {
	t.Helper()
	if !r.OK() {
		t.Fatalf("%s: want ok, got %s: %s\n%s", r.Checker, r.Verdict, r.Summary, strings.Join(r.Details, "\n"))
	}
	t.Logf("%s: %s", r.Short, r.Summary)
}

func wantViolation(t *testing.T, r Result, substr string) {
	t.Helper()
	if r.Verdict != VerdictViolation {
		t.Fatalf("%s: want violation, got %s: %s", r.Checker, r.Verdict, r.Summary)
	}
	all := strings.Join(r.Details, "\n")
	if !strings.Contains(all, substr) {
		t.Fatalf("%s: details lack %q:\n%s", r.Checker, substr, all)
	}
	t.Logf("%s: %s\n%s", r.Short, r.Summary, all)
}

func TestSaveLoadRoundTrip(t *testing.T) {
	h := goodHistory()
	path := filepath.Join(t.TempDir(), "history.json")
	if err := h.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("round trip changed the history:\nwant %+v\ngot  %+v", h, got)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("loading a missing file succeeded")
	}
}

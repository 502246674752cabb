package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

func newFSM() *FSM { return New(store.New(store.DefaultOptions()), nil) }

func mustEncode(t testing.TB, ct CommandType, m proto.Message) []byte {
	t.Helper()
	b, err := Encode(ct, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func regCmd(t testing.TB, svc, id string, port uint32) []byte {
	return mustEncode(t, RegisterType, &raftcmdv1.Register{
		Instance:  &raftcmdv1.Instance{Namespace: "default", Service: svc, Id: id, Address: "10.1.1.1", Port: port, Weight: 100, TtlNs: 0, Metadata: map[string]string{"v": "1"}},
		NowUnixNs: 1000,
	})
}

func apply(f *FSM, index uint64, data []byte) any {
	return f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data})
}

func TestApplyEachCommand(t *testing.T) {
	key := &raftcmdv1.Deregister{Namespace: "default", Service: "web", Id: "a"}
	tests := []struct {
		name    string
		data    func(t testing.TB) []byte
		wantRev uint64
		wantErr error
		check   func(t *testing.T, v *store.View)
	}{
		{"register", func(t testing.TB) []byte { return regCmd(t, "web", "a", 80) }, 1, nil, func(t *testing.T, v *store.View) {
			i, err := v.Instance(nil, store.Key{Namespace: "default", Service: "web", ID: "a"})
			if err != nil || i.Port != 80 || i.ModRevision != 1 || i.StatusChangedAt != 1000 {
				t.Fatalf("%+v %v", i, err)
			}
		}},
		{"set health", func(t testing.TB) []byte {
			return mustEncode(t, SetHealthType, &raftcmdv1.SetHealth{Namespace: "default", Service: "web", Id: "a", RegistrationRevision: 1, Status: int32(store.HealthCritical), Reason: "check failed", NowUnixNs: 2000})
		}, 2, nil, func(t *testing.T, v *store.View) {
			i, _ := v.Instance(nil, store.Key{Namespace: "default", Service: "web", ID: "a"})
			if i.Status != store.HealthCritical || i.StatusReason() != "check failed" {
				t.Fatalf("%+v", i)
			}
		}},
		{"maintenance", func(t testing.TB) []byte {
			return mustEncode(t, SetMaintenanceType, &raftcmdv1.SetMaintenance{Namespace: "default", Service: "web", Id: "a", Enabled: false, Reason: "deploy"})
		}, 3, nil, nil},
		{"stale reap ignored", func(t testing.TB) []byte {
			return mustEncode(t, ReapType, &raftcmdv1.Reap{Namespace: "default", Service: "web", Id: "a", RegistrationRevision: 99})
		}, 0, store.ErrStaleRegistration, nil},
		{"member", func(t testing.TB) []byte {
			return mustEncode(t, UpsertMemberType, &raftcmdv1.UpsertMember{Member: &raftcmdv1.Member{NodeId: "n1", RaftAddr: "127.0.0.1:1", ApiAddr: "127.0.0.1:2"}})
		}, 0, nil, func(t *testing.T, v *store.View) {
			if m := v.Member("n1"); m == nil || m.APIAddr != "127.0.0.1:2" {
				t.Fatalf("member %+v", m)
			}
		}},
		{"reap", func(t testing.TB) []byte {
			return mustEncode(t, ReapType, &raftcmdv1.Reap{Namespace: "default", Service: "web", Id: "a", RegistrationRevision: 1})
		}, 6, nil, nil},
		{"deregister missing", func(t testing.TB) []byte { return mustEncode(t, DeregisterType, key) }, 0, store.ErrNotFound, nil},
		{"remove member", func(t testing.TB) []byte {
			return mustEncode(t, RemoveMemberType, &raftcmdv1.RemoveMember{NodeId: "n1"})
		}, 0, nil, func(t *testing.T, v *store.View) {
			if m := v.Member("n1"); m != nil {
				t.Fatalf("member still there: %+v", m)
			}
		}},
	}
	f := newFSM()
	for n, tt := range tests {
		index := uint64(n + 1)
		res, ok := apply(f, index, tt.data(t)).(Result)
		if !ok {
			t.Fatalf("%s: result type %T", tt.name, res)
		}
		if !errors.Is(res.Err, tt.wantErr) || res.Revision != tt.wantRev {
			t.Fatalf("%s: got (%d, %v), want (%d, %v)", tt.name, res.Revision, res.Err, tt.wantRev, tt.wantErr)
		}
		if got, _ := f.Applied(); got != index {
			t.Fatalf("%s: applied = %d, want %d", tt.name, got, index)
		}
		if tt.check != nil {
			tt.check(t, f.Store().View())
		}
	}
}

func TestBatchAppliesAtOneRevisionWithPerEntryResults(t *testing.T) {
	f := newFSM()
	missing := mustEncode(t, DeregisterType, &raftcmdv1.Deregister{Namespace: "default", Service: "web", Id: "zz"})
	batch, err := EncodeBatch([][]byte{regCmd(t, "web", "a", 80), missing, regCmd(t, "web", "b", 81)})
	if err != nil {
		t.Fatal(err)
	}
	res := apply(f, 7, batch).(BatchResult)
	if len(res) != 3 || res[0].Revision != 7 || !errors.Is(res[1].Err, store.ErrNotFound) || res[2].Revision != 7 {
		t.Fatalf("results %+v", res)
	}
	revs, _, _, _ := f.Store().History().Since(0, 100)
	if len(revs) != 1 || revs[0].Revision != 7 || len(revs[0].Events) != 2 {
		t.Fatalf("history %+v", revs)
	}
	if _, err := EncodeBatch([][]byte{batch}); err == nil {
		t.Fatal("nested batch encoded")
	}
}

func TestUnknownCommandTypes(t *testing.T) {
	f := newFSM()
	skippable := []byte{byte(SkippableFlag | 0x11), 1, 2, 3}
	if res := apply(f, 1, skippable).(Result); res.Err != nil {
		t.Fatalf("skippable unknown type: %+v", res)
	}
	if got, _ := f.Applied(); got != 1 {
		t.Fatalf("applied = %d after a skipped entry", got)
	}
	t.Run("unknown type", func(t *testing.T) {
		defer func() {
			var u *UnknownCommandError
			if err, ok := recover().(error); !ok || !errors.As(err, &u) || u.Type != 0x11 {
				t.Fatalf("want an UnknownCommandError panic: a node must stop rather than diverge")
			}
		}()
		apply(f, 2, []byte{0x11, 1, 2})
	})
}

func TestMalformedEntriesChangeNothing(t *testing.T) {
	f := newFSM()
	apply(f, 1, regCmd(t, "web", "a", 80))
	good := regCmd(t, "web", "b", 81)
	index := uint64(2)
	for name, data := range map[string][]byte{
		"garbage":               append([]byte{byte(RegisterType)}, 0xff, 0xff, 0xff),
		"empty":                 {},
		"no instance":           mustEncode(t, RegisterType, &raftcmdv1.Register{}),
		"garbage batch":         {byte(BatchType), 0x0a, 0x05, 1},
		"member without":        mustEncode(t, UpsertMemberType, &raftcmdv1.UpsertMember{}),
		"batch with garbage":    mustBatch(t, good, append([]byte{byte(DeregisterType)}, 0xff)),
		"nested batch":          mustEncode(t, BatchType, &raftcmdv1.Batch{Entries: [][]byte{good, mustBatch(t, good, good)}}),
		"garbage request":       {byte(RequestType), 0xff, 0x01},
		"request of garbage":    mustEncode(t, RequestType, &raftcmdv1.Request{RequestId: "r", Digest: make([]byte, store.DigestSize), Command: []byte{byte(RegisterType), 0xff}}),
		"request no command":    mustEncode(t, RequestType, &raftcmdv1.Request{RequestId: "r", Digest: make([]byte, store.DigestSize)}),
		"request, short digest": mustEncode(t, RequestType, &raftcmdv1.Request{RequestId: "r", Digest: make([]byte, 16), Command: good}),
		"request, no digest":    mustEncode(t, RequestType, &raftcmdv1.Request{RequestId: "r", Command: good}),
	} {
		t.Run(name, func(t *testing.T) {
			before := dump(t, f)
			index++
			res := apply(f, index, data)
			var errs []error
			switch r := res.(type) {
			case Result:
				errs = append(errs, r.Err)
			case BatchResult:
				for _, e := range r {
					errs = append(errs, e.Err)
				}
			}
			if len(errs) == 0 {
				t.Fatalf("result %#v", res)
			}
			for _, err := range errs {
				if err == nil {
					t.Fatalf("a result without error: %#v", res)
				}
			}
			if !slicesContainsMalformed(errs) {
				t.Fatalf("no ErrMalformedCommand in %v", errs)
			}
			if after := dump(t, f); after != before {
				t.Fatalf("state changed:\n%s\n%s", before, after)
			}
			if got, _ := f.Applied(); got != index {
				t.Fatalf("applied = %d, want %d", got, index)
			}
		})
	}
}

func slicesContainsMalformed(errs []error) bool {
	for _, err := range errs {
		if errors.Is(err, ErrMalformedCommand) {
			return true
		}
	}
	return false
}

func mustBatch(t testing.TB, entries ...[]byte) []byte {
	t.Helper()
	b, err := EncodeBatch(entries)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*snapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func dump(t *testing.T, f *FSM) string {
	t.Helper()
	h, err := f.Store().View().Hash()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_ = f.Store().View().Instances(func(i *store.Instance) bool {
		b.WriteString(i.Key().String())
		return true
	})
	_ = f.Store().View().ServiceRevisions(func(ns, s string, rev uint64) { b.WriteString(ns + s + string(rune(rev))) })
	_ = f.Store().View().Requests(func(r *store.RequestResult) bool {
		fmt.Fprintf(&b, " request %s %d %d %x %d %q", r.ID(), r.Revision, r.Time, r.Digest, r.ErrKind(), r.ErrMessage())
		return true
	})
	return h + b.String()
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	f := newFSM()
	apply(f, 1, regCmd(t, "web", "a", 80))
	apply(f, 2, regCmd(t, "web", "b", 80))
	apply(f, 3, regCmd(t, "api", "a", 80))
	apply(f, 4, mustEncode(t, DeregisterType, &raftcmdv1.Deregister{Namespace: "default", Service: "web", Id: "b"}))
	apply(f, 5, mustEncode(t, UpsertMemberType, &raftcmdv1.UpsertMember{Member: &raftcmdv1.Member{NodeId: "n1", RaftAddr: "r", ApiAddr: "a"}}))
	apply(f, 6, mustEncode(t, SetMaintenanceType, &raftcmdv1.SetMaintenance{Namespace: "default", Service: "api", Id: "a", Reason: "x"}))
	for i, d := range requestEntries(t) {
		apply(f, uint64(7+i), d)
	}

	data := snapshotBytes(t, f)
	// Apply continues after the snapshot was taken; it must not leak into it.
	apply(f, 9, regCmd(t, "late", "a", 80))

	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got, _ := g.Applied(); got != 8 {
		t.Fatalf("restored applied = %d, want 8", got)
	}
	want := newFSM()
	for i, d := range [][]byte{
		regCmd(t, "web", "a", 80), regCmd(t, "web", "b", 80), regCmd(t, "api", "a", 80),
		mustEncode(t, DeregisterType, &raftcmdv1.Deregister{Namespace: "default", Service: "web", Id: "b"}),
		mustEncode(t, UpsertMemberType, &raftcmdv1.UpsertMember{Member: &raftcmdv1.Member{NodeId: "n1", RaftAddr: "r", ApiAddr: "a"}}),
		mustEncode(t, SetMaintenanceType, &raftcmdv1.SetMaintenance{Namespace: "default", Service: "api", Id: "a", Reason: "x"}),
	} {
		apply(want, uint64(i+1), d)
	}
	for i, d := range requestEntries(t) {
		apply(want, uint64(7+i), d)
	}
	if got := requestIDs(t, g); fmt.Sprint(got) != "[req-reg req-gone]" {
		t.Fatalf("restored request results %v", got)
	}
	if a, b := dump(t, g), dump(t, want); a != b {
		t.Fatalf("restored state differs:\n got %s\nwant %s", a, b)
	}
	rev, _, _ := g.Store().View().Service(nil, "default", "web")
	if rev != 4 {
		t.Fatalf("web service revision after restore = %d, want 4 (the deletion)", rev)
	}
	i, _ := g.Store().View().Instance(nil, store.Key{Namespace: "default", Service: "api", ID: "a"})
	if i.CreateRevision != 3 || i.ModRevision != 6 || i.Enabled || i.Metadata()["v"] != "1" {
		t.Fatalf("restored instance %+v", i)
	}
}

// TestSnapshotKeepsTheExtinctRevision: the revision an absent service
// reports survives a snapshot, so a blocking query resumed on a restored
// node is not woken early.
func TestSnapshotKeepsTheExtinctRevision(t *testing.T) {
	f := newFSM()
	apply(f, 1, regCmd(t, "gone", "a", 80))
	apply(f, 2, mustEncode(t, DeregisterType, &raftcmdv1.Deregister{Namespace: "default", Service: "gone", Id: "a"}))
	apply(f, 3, regCmd(t, "web", "a", 80))
	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"gone", "never"} {
		if rev, _, _ := g.Store().View().Service(nil, "default", svc); rev != 2 {
			t.Fatalf("%s after restore: revision %d, want 2", svc, rev)
		}
	}
}

// requestEntries are two client writes with request ids, one succeeding and
// one failing, so a snapshot carries both kinds of remembered result.
func requestEntries(t *testing.T) [][]byte {
	return [][]byte{
		wrap(t, "req-reg", 7, RegisterType, register("reqs", "c", "10.0.0.3", time.Minute, 7)),
		wrap(t, "req-gone", 8, DeregisterType, deregister("reqs", "nope")),
	}
}

func TestRestoreGarbageKeepsState(t *testing.T) {
	f := newFSM()
	apply(f, 1, regCmd(t, "web", "a", 80))
	before := dump(t, f)
	good := snapshotBytes(t, newFSM())
	for name, data := range map[string][]byte{
		"garbage":   []byte("this is not a snapshot at all, not even close"),
		"empty":     nil,
		"truncated": good[:len(good)-3],
		"no end":    good[:len(good)-4],
	} {
		t.Run(name, func(t *testing.T) {
			if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err == nil {
				t.Fatal("restore of a bad snapshot succeeded")
			}
			if after := dump(t, f); after != before {
				t.Fatal("a failed restore changed the state")
			}
			if got, _ := f.Applied(); got != 1 {
				t.Fatalf("applied = %d after a failed restore", got)
			}
		})
	}
}

func BenchmarkApplyRegister(b *testing.B) {
	f := newFSM()
	// Two ports per key, alternating, so every apply is a real change.
	cmds := make([][]byte, 128)
	for i := range cmds {
		k := i % 64
		cmds[i] = regCmd(b, "web", string(rune('a'+k%26))+string(rune('a'+k/26)), uint32(i+1))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		apply(f, uint64(n+1), cmds[n%len(cmds)])
	}
}

func BenchmarkApplyBatch64(b *testing.B) {
	f := newFSM()
	// Two batches that move every key to another port, alternating, so
	// every entry in every batch is a real change.
	var batches [2][]byte
	for v := range batches {
		entries := make([][]byte, 64)
		for i := range entries {
			entries[i] = regCmd(b, "web", string(rune('a'+i%26))+string(rune('a'+i/26)), uint32(1000*v+i+1))
		}
		batches[v], _ = EncodeBatch(entries)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		apply(f, uint64(n+1), batches[n%2])
	}
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "registers/s")
}

// TestViewAppliedIndexMatchesItsState: the applied index is committed with
// the entry's changes, so a view taken at any moment (here: right after an
// entry's changes became visible, the moment a read index used to be taken
// one entry behind) shows the state of exactly its applied index. An entry
// that changes nothing still moves the index; a snapshot carries it.
func TestViewAppliedIndexMatchesItsState(t *testing.T) {
	f := newFSM()
	var seen []*store.View
	f.SetHooks(Hooks{AfterCommit: func(uint64) { seen = append(seen, f.Store().View()) }})
	apply(f, 1, regCmd(t, "web", "a", 80))
	// A deregister of an unknown instance changes nothing.
	apply(f, 2, mustEncode(t, DeregisterType, &raftcmdv1.Deregister{Namespace: "default", Service: "web", Id: "zz"}))
	apply(f, 3, regCmd(t, "web", "a", 81))
	for i, want := range []struct {
		applied, revision uint64
		port              uint16
	}{{1, 1, 80}, {2, 1, 80}, {3, 3, 81}} {
		v := seen[i]
		inst, err := v.Instance(nil, store.Key{Namespace: "default", Service: "web", ID: "a"})
		if err != nil {
			t.Fatal(err)
		}
		if v.Applied() != want.applied || v.Revision() != want.revision || inst.Port != want.port {
			t.Fatalf("view after entry %d: applied %d revision %d port %d, want %+v",
				i+1, v.Applied(), v.Revision(), inst.Port, want)
		}
	}
	if got, _ := f.Applied(); got != 3 {
		t.Fatalf("applied %d, want 3", got)
	}
	// Raft never hands the FSM no-op entries; barriers and configuration
	// changes reach Apply and leave the index where it was.
	f.Apply(&raft.Log{Index: 4, Term: 1, Type: raft.LogBarrier})
	if got, _ := f.Applied(); got != 3 {
		t.Fatalf("applied %d after a barrier, want 3", got)
	}
	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
		t.Fatal(err)
	}
	if v := g.Store().View(); v.Applied() != 3 || v.Revision() != 3 {
		t.Fatalf("restored view: applied %d revision %d, want 3 and 3", v.Applied(), v.Revision())
	}
}

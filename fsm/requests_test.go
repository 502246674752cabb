package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

// wrap encodes m as client request id, stamped with the leader time now.
func wrap(t testing.TB, id string, now int64, ct CommandType, m proto.Message) []byte {
	t.Helper()
	b, err := EncodeRequest(id, now, ct, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func register(svc, id, addr string, ttl time.Duration, now int64) *raftcmdv1.Register {
	return &raftcmdv1.Register{
		Instance:  &raftcmdv1.Instance{Namespace: "default", Service: svc, Id: id, Address: addr, Port: 80, Weight: 100, TtlNs: int64(ttl)},
		NowUnixNs: now,
	}
}

func deregister(svc, id string) *raftcmdv1.Deregister {
	return &raftcmdv1.Deregister{Namespace: "default", Service: svc, Id: id}
}

// results flattens what Apply returned into one Result per command.
func results(v any) []Result {
	switch r := v.(type) {
	case Result:
		return []Result{r}
	case BatchResult:
		return r
	}
	return nil
}

func batch(t testing.TB, entries ...[]byte) []byte {
	t.Helper()
	b, err := EncodeBatch(entries)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRepeatedRequestAppliesOnce: a write repeated with its request id, in
// a later entry or in the same batch, around another client's write or not,
// returns the first result and changes nothing: no event, no revision, and
// no earlier value brought back.
func TestRepeatedRequestAppliesOnce(t *testing.T) {
	a := store.Key{Namespace: "default", Service: "web", ID: "a"}
	tests := []struct {
		name string
		// entries are applied at indexes 1, 2, ...
		entries func(t testing.TB) [][]byte
		// want is the result of every command, in order.
		want []Result
		// wantAddr is a's address at the end, "" when it must be absent.
		wantAddr string
		wantRev  uint64
		events   int
	}{
		{
			name: "register repeated in a later entry",
			entries: func(t testing.TB) [][]byte {
				r := wrap(t, "r1", 1, RegisterType, register("web", "a", "10.0.0.1", time.Minute, 1))
				return [][]byte{r, wrap(t, "r1", 2, RegisterType, register("web", "a", "10.0.0.1", time.Minute, 2))}
			},
			want:     []Result{{Revision: 1}, {Revision: 1}},
			wantAddr: "10.0.0.1", wantRev: 1, events: 1,
		},
		{
			name: "register repeated after another client's write",
			entries: func(t testing.TB) [][]byte {
				return [][]byte{
					wrap(t, "A", 1, RegisterType, register("web", "a", "10.0.0.1", 0, 1)),
					wrap(t, "B", 2, RegisterType, register("web", "a", "10.0.0.2", 0, 2)),
					wrap(t, "A", 3, RegisterType, register("web", "a", "10.0.0.1", 0, 3)),
				}
			},
			want:     []Result{{Revision: 1}, {Revision: 2}, {Revision: 1}},
			wantAddr: "10.0.0.2", wantRev: 2, events: 2,
		},
		{
			name: "deregister repeated after a re-registration",
			entries: func(t testing.TB) [][]byte {
				return [][]byte{
					wrap(t, "A", 1, RegisterType, register("web", "a", "10.0.0.1", 0, 1)),
					wrap(t, "D", 2, DeregisterType, deregister("web", "a")),
					wrap(t, "B", 3, RegisterType, register("web", "a", "10.0.0.2", 0, 3)),
					wrap(t, "D", 4, DeregisterType, deregister("web", "a")),
				}
			},
			want:     []Result{{Revision: 1}, {Revision: 2}, {Revision: 3}, {Revision: 2}},
			wantAddr: "10.0.0.2", wantRev: 3, events: 3,
		},
		{
			name: "a not-found result is repeated as it was",
			entries: func(t testing.TB) [][]byte {
				return [][]byte{
					wrap(t, "D", 1, DeregisterType, deregister("web", "a")),
					wrap(t, "B", 2, RegisterType, register("web", "a", "10.0.0.2", 0, 2)),
					wrap(t, "D", 3, DeregisterType, deregister("web", "a")),
				}
			},
			want:     []Result{{Err: store.ErrNotFound}, {Revision: 2}, {Err: store.ErrNotFound}},
			wantAddr: "10.0.0.2", wantRev: 2, events: 1,
		},
		{
			name: "repeated inside one batch",
			entries: func(t testing.TB) [][]byte {
				r := register("web", "a", "10.0.0.1", time.Minute, 1)
				return [][]byte{batch(t,
					wrap(t, "r1", 1, RegisterType, r),
					wrap(t, "r2", 1, DeregisterType, deregister("web", "other")),
					wrap(t, "r1", 1, RegisterType, r),
				)}
			},
			want:     []Result{{Revision: 1}, {Err: store.ErrNotFound}, {Revision: 1}},
			wantAddr: "10.0.0.1", wantRev: 1, events: 1,
		},
		{
			name: "deregister repeated inside one batch",
			entries: func(t testing.TB) [][]byte {
				return [][]byte{
					wrap(t, "A", 1, RegisterType, register("web", "a", "10.0.0.1", 0, 1)),
					batch(t, wrap(t, "D", 2, DeregisterType, deregister("web", "a")), wrap(t, "D", 2, DeregisterType, deregister("web", "a"))),
				}
			},
			want:    []Result{{Revision: 1}, {Revision: 2}, {Revision: 2}},
			wantRev: 2, events: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFSM()
			var got []Result
			for i, e := range tt.entries(t) {
				got = append(got, results(apply(f, uint64(i+1), e))...)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d results, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				if got[i].Revision != w.Revision || !errors.Is(got[i].Err, w.Err) || (w.Err == nil) != (got[i].Err == nil) {
					t.Fatalf("command %d: got (%d, %v), want (%d, %v)", i, got[i].Revision, got[i].Err, w.Revision, w.Err)
				}
			}
			v := f.Store().View()
			inst, err := v.Instance(nil, a)
			switch {
			case tt.wantAddr == "" && err == nil:
				t.Fatalf("instance present: %+v", inst)
			case tt.wantAddr != "" && (err != nil || inst.Address != tt.wantAddr):
				t.Fatalf("instance %+v, %v; want address %s", inst, err, tt.wantAddr)
			}
			if v.Revision() != tt.wantRev {
				t.Fatalf("registry revision %d, want %d", v.Revision(), tt.wantRev)
			}
			revs, _, _, _ := f.Store().History().Since(0, 100)
			n := 0
			for _, r := range revs {
				n += len(r.Events)
			}
			if n != tt.events {
				t.Fatalf("%d events, want %d: a repeat must change nothing", n, tt.events)
			}
		})
	}
}

// TestReusedRequestIDIsRejected: the same id with a different request is a
// client bug; it gets a clear error and changes nothing. A retry stamped
// with a later time by another leader is still the same request.
func TestReusedRequestIDIsRejected(t *testing.T) {
	f := newFSM()
	apply(f, 1, wrap(t, "r1", 1, RegisterType, register("web", "a", "10.0.0.1", 0, 1)))
	res := apply(f, 2, wrap(t, "r1", 2, RegisterType, register("web", "a", "10.0.0.9", 0, 2))).(Result)
	if !errors.Is(res.Err, store.ErrRequestReused) {
		t.Fatalf("reused id with another address: %+v", res)
	}
	res = apply(f, 3, wrap(t, "r1", 3, DeregisterType, deregister("web", "a"))).(Result)
	if !errors.Is(res.Err, store.ErrRequestReused) {
		t.Fatalf("reused id with another command: %+v", res)
	}
	inst, err := f.Store().View().Instance(nil, store.Key{Namespace: "default", Service: "web", ID: "a"})
	if err != nil || inst.Address != "10.0.0.1" || f.Store().Revision() != 1 {
		t.Fatalf("state changed: %+v %v revision %d", inst, err, f.Store().Revision())
	}
	if res := apply(f, 4, wrap(t, "r1", 99, RegisterType, register("web", "a", "10.0.0.1", 0, 99))).(Result); res.Err != nil || res.Revision != 1 {
		t.Fatalf("same request stamped later: %+v", res)
	}
}

// requestIDs lists the remembered request ids, oldest first.
func requestIDs(t *testing.T, f *FSM) []string {
	t.Helper()
	var ids []string
	if err := f.Store().View().Requests(func(r *store.RequestResult) bool {
		ids = append(ids, r.ID())
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestRequestResultsArePrunedDeterministically: results are forgotten by
// count and by the commands' stamped age, oldest first, the same way on
// every node that applies the same log, whatever its clock says.
func TestRequestResultsArePrunedDeterministically(t *testing.T) {
	opts := store.DefaultOptions()
	opts.RequestResults = 3
	opts.RequestResultAge = 10 * time.Second
	sec := int64(time.Second)
	// Entry i registers instance i as request ri, stamped at the given second.
	stamps := []int64{0, 1, 2, 3, 20, 21}
	tests := []struct {
		name string
		upto int // apply entries [0, upto)
		want []string
	}{
		{"under both bounds", 3, []string{"r0", "r1", "r2"}},
		{"count bound drops the oldest", 4, []string{"r1", "r2", "r3"}},
		{"age bound drops everything older than 10s before the stamp", 5, []string{"r4"}},
		{"both", 6, []string{"r4", "r5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var nodes [2]*FSM
			for n := range nodes {
				nodes[n] = New(store.New(opts), nil)
				for i := 0; i < tt.upto; i++ {
					apply(nodes[n], uint64(i+1), wrap(t, fmt.Sprintf("r%d", i), stamps[i]*sec, RegisterType,
						register("web", fmt.Sprintf("i%d", i), "10.0.0.1", 0, stamps[i]*sec)))
				}
			}
			got := requestIDs(t, nodes[0])
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("remembered %v, want %v", got, tt.want)
			}
			if a, b := dump(t, nodes[0]), dump(t, nodes[1]); a != b {
				t.Fatal("two nodes applying the same log remember different results")
			}
		})
	}

	// A forgotten id is a new request: it applies again.
	f := New(store.New(opts), nil)
	cmd := func(now int64) []byte {
		return wrap(t, "old", now, RegisterType, register("web", "a", "10.0.0.1", time.Minute, now))
	}
	apply(f, 1, cmd(0))
	if res := apply(f, 2, cmd(5*sec)).(Result); res.Revision != 1 {
		t.Fatalf("repeat within the age: %+v", res)
	}
	if res := apply(f, 3, cmd(11*sec)).(Result); res.Revision != 3 {
		t.Fatalf("repeat after the age: %+v, want a new application at 3", res)
	}
}

// TestRequestResultsSurviveSnapshot: a repeat after a snapshot install
// still finds its first result.
func TestRequestResultsSurviveSnapshot(t *testing.T) {
	f := newFSM()
	apply(f, 1, wrap(t, "A", 1, RegisterType, register("web", "a", "10.0.0.1", 0, 1)))
	apply(f, 2, wrap(t, "D", 2, DeregisterType, deregister("web", "zz")))
	apply(f, 3, wrap(t, "B", 3, RegisterType, register("web", "a", "10.0.0.2", 0, 3)))
	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
		t.Fatal(err)
	}
	if a, b := dump(t, f), dump(t, g); a != b {
		t.Fatalf("restored state differs:\n got %s\nwant %s", b, a)
	}
	if res := apply(g, 4, wrap(t, "A", 4, RegisterType, register("web", "a", "10.0.0.1", 0, 4))).(Result); res.Revision != 1 || res.Err != nil {
		t.Fatalf("repeat after restore: %+v", res)
	}
	if res := apply(g, 5, wrap(t, "D", 5, DeregisterType, deregister("web", "zz"))).(Result); !errors.Is(res.Err, store.ErrNotFound) {
		t.Fatalf("repeated not-found after restore: %+v", res)
	}
	inst, _ := g.Store().View().Instance(nil, store.Key{Namespace: "default", Service: "web", ID: "a"})
	if inst.Address != "10.0.0.2" || g.Store().Revision() != 3 {
		t.Fatalf("repeat after restore changed the state: %+v revision %d", inst, g.Store().Revision())
	}
}

// TestObserveRequestStamps: the node is told the largest stamp of each
// entry applied (a repeat's too, as the stamp prunes), nothing for an entry
// without requests or one rejected whole, and the largest stamp a restored
// state remembers; and the state and results are the same as without the
// observer.
func TestObserveRequestStamps(t *testing.T) {
	entries := [][]byte{
		wrap(t, "A", 10, RegisterType, register("web", "a", "10.0.0.1", 0, 10)),
		plainRegister(t, "b"),
		batch(t, wrap(t, "B", 30, RegisterType, register("web", "c", "10.0.0.3", 0, 30)),
			wrap(t, "C", 20, RegisterType, register("web", "d", "10.0.0.4", 0, 20))),
		batch(t, wrap(t, "D", 90, RegisterType, register("web", "e", "10.0.0.5", 0, 90)), append([]byte{byte(DeregisterType)}, 0xff)),
		wrap(t, "A", 40, RegisterType, register("web", "a", "10.0.0.1", 0, 40)),
	}
	f, plain := newFSM(), newFSM()
	var seen []int64
	f.ObserveRequestStamps(func(stamp int64) { seen = append(seen, stamp) })
	for i, e := range entries {
		got, want := apply(f, uint64(i+1), e), apply(plain, uint64(i+1), e)
		if fmt.Sprint(results(got)) != fmt.Sprint(results(want)) {
			t.Fatalf("entry %d: %v with the observer, %v without", i+1, got, want)
		}
	}
	if fmt.Sprint(seen) != "[10 30 40]" {
		t.Fatalf("stamps observed %v, want [10 30 40]", seen)
	}
	if a, b := dump(t, f), dump(t, plain); a != b {
		t.Fatalf("the observer changed the state:\n%s\n%s", a, b)
	}

	g := newFSM()
	seen = nil
	g.ObserveRequestStamps(func(stamp int64) { seen = append(seen, stamp) })
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seen) != "[30]" {
		t.Fatalf("stamps observed on restore %v, want the largest remembered, [30]", seen)
	}
}

// plainRegister registers web/id without a request id.
func plainRegister(t testing.TB, id string) []byte {
	t.Helper()
	b, err := Encode(RegisterType, register("web", id, "10.0.0.9", 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkApplyRegisterRequest is BenchmarkApplyRegister with every command
// carrying a request id: the cost of remembering results (and of pruning
// once the count bound is reached).
func BenchmarkApplyRegisterRequest(b *testing.B) {
	opts := store.DefaultOptions()
	opts.RequestResults = 10_000
	f := New(store.New(opts), nil)
	cmds := make([]*raftcmdv1.Register, 128)
	for i := range cmds {
		k := i % 64
		cmds[i] = register("web", string(rune('a'+k%26))+string(rune('a'+k/26)), "10.0.0.1", 0, 1)
		cmds[i].Instance.Port = uint32(i + 1)
	}
	data := make([][]byte, b.N)
	for n := range data {
		data[n] = wrap(b, fmt.Sprintf("req-%d", n), int64(n), RegisterType, cmds[n%len(cmds)])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		apply(f, uint64(n+1), data[n])
	}
}

// cloneDigest is requestDigest as it was first written: a deep clone with
// the leader's stamps cleared, encoded deterministically. Retries of one
// request may reach leaders of different versions, so the digest's bytes
// must never change.
func cloneDigest(t CommandType, m proto.Message) []byte {
	c := proto.Clone(m)
	r := c.ProtoReflect()
	for _, name := range leaderStamped {
		if fd := r.Descriptor().Fields().ByName(name); fd != nil {
			r.Clear(fd)
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		panic(err)
	}
	h := sha256.New()
	h.Write([]byte{byte(t)})
	h.Write(b)
	return h.Sum(nil)
}

// TestRequestDigestNeverChanges: the digest of a command, stamps or not,
// unknown fields or not, is the one a clone with its stamps cleared gives,
// and it leaves the command as it was.
func TestRequestDigestNeverChanges(t *testing.T) {
	full := &raftcmdv1.Register{
		Instance: &raftcmdv1.Instance{Namespace: "default", Service: "web", Id: "a", Address: "10.0.0.1", Port: 80, Weight: 100,
			Tags: []string{"v2", "http"}, Metadata: map[string]string{"z": "1", "a": "2", "m": "3"}, Zone: "eu-1a", TtlNs: int64(time.Second)},
		NowUnixNs: 1234,
		Limits:    &raftcmdv1.InstanceLimits{PerService: 10, PerNamespace: 100},
	}
	withUnknown := proto.Clone(full).(*raftcmdv1.Register)
	withUnknown.ProtoReflect().SetUnknown([]byte{0xf8, 0x3e, 0x01}) // field 999, varint 1
	cases := []struct {
		ct CommandType
		m  proto.Message
	}{
		{RegisterType, full},
		{RegisterType, withUnknown},
		{RegisterType, register("web", "b", "10.0.0.2", 0, 0)},
		{DeregisterType, &raftcmdv1.Deregister{Namespace: "default", Service: "web", Id: "a"}},
		{SetMaintenanceType, &raftcmdv1.SetMaintenance{Namespace: "default", Service: "web", Id: "a", Enabled: true, Reason: "deploy"}},
	}
	for _, c := range cases {
		before := proto.Clone(c.m)
		got, err := requestDigest(c.ct, c.m)
		if err != nil {
			t.Fatal(err)
		}
		if want := cloneDigest(c.ct, c.m); !bytes.Equal(got, want) {
			t.Errorf("%T %v: digest %x, want %x", c.m, c.m, got, want)
		}
		if !proto.Equal(before, c.m) {
			t.Errorf("digesting changed the command: %v, was %v", c.m, before)
		}
	}
	stamped := proto.Clone(full).(*raftcmdv1.Register)
	stamped.NowUnixNs, stamped.Limits = 99, nil
	a, _ := requestDigest(RegisterType, full)
	b, _ := requestDigest(RegisterType, stamped)
	if !bytes.Equal(a, b) {
		t.Error("the leader's stamps changed the digest")
	}
	other := proto.Clone(full).(*raftcmdv1.Register)
	other.Instance.Port = 81
	if c, _ := requestDigest(RegisterType, other); bytes.Equal(a, c) {
		t.Error("a different port gave the same digest")
	}
}

// TestRequestDigestIsTheEntrys: RequestDigest gives the digest EncodeRequest
// writes into a Request entry, whatever the leader stamped: the leader
// compares it with a remembered result's to let a retry past its limit
// pre-check (cluster RegisterWithin).
func TestRequestDigestIsTheEntrys(t *testing.T) {
	m := register("web", "a", "10.0.0.1", 0, 1234)
	m.Limits = &raftcmdv1.InstanceLimits{PerService: 1}
	var req raftcmdv1.Request
	if err := proto.Unmarshal(wrap(t, "r1", 1000, RegisterType, m)[1:], &req); err != nil {
		t.Fatal(err)
	}
	retry := proto.Clone(m).(*raftcmdv1.Register)
	retry.NowUnixNs, retry.Limits = 5678, nil
	got, err := RequestDigest(RegisterType, retry)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, req.Digest) {
		t.Fatalf("RequestDigest %x, the entry holds %x", got, req.Digest)
	}
	retry.Instance.Address = "10.0.0.2"
	if other, _ := RequestDigest(RegisterType, retry); bytes.Equal(other, req.Digest) {
		t.Fatal("another address gave the entry's digest")
	}
}

// BenchmarkEncodeRequest is the leader's cost of wrapping a register in a
// request: the command's encoding, its digest and the wrapper's encoding.
func BenchmarkEncodeRequest(b *testing.B) {
	m := &raftcmdv1.Register{Instance: &raftcmdv1.Instance{Namespace: "default", Service: "bench", Id: "bench-00000001",
		Address: "10.1.1.1", Port: 80, Weight: 100, Tags: []string{"v2", "http", "canary=false"},
		Metadata: map[string]string{"version": "2.14.3", "commit": "4f9c2e1d7a", "region": "eu-west-1", "team": "payments"}},
		NowUnixNs: 1000}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeRequest("0123456789abcdef0123456789abcdef", 1000, RegisterType, m); err != nil {
			b.Fatal(err)
		}
	}
}

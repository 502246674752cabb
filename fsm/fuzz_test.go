package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// The fuzz targets run from their committed seed corpora (testdata/fuzz)
// with every go test, and explore with
//
//	go test -run '^$' -fuzz '^FuzzApply$' -fuzztime 30s ./fsm
//
// ROSTER_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./fsm rewrites
// the seed files from the seeds below.

// fuzzBase returns an FSM holding a little of everything, at index 3.
func fuzzBase(t testing.TB) *FSM {
	f := newFSM()
	apply(f, 1, regCmd(t, "web", "a", 80))
	req, err := EncodeRequest("r1", 1000, RegisterType, &raftcmdv1.Register{
		Instance:  &raftcmdv1.Instance{Namespace: "default", Service: "api", Id: "b", Address: "10.1.1.2", Port: 81, Weight: 100, TtlNs: 10e9},
		NowUnixNs: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	apply(f, 2, req)
	apply(f, 3, mustEncode(t, UpsertMemberType, &raftcmdv1.UpsertMember{Member: &raftcmdv1.Member{NodeId: "n1", RaftAddr: "h:1", ApiAddr: "h:2"}}))
	return f
}

func applySeeds(t testing.TB) [][]byte {
	good := regCmd(t, "web", "c", 82)
	req, _ := EncodeRequest("r2", 2000, DeregisterType, &raftcmdv1.Deregister{Namespace: "default", Service: "web", Id: "a"})
	return [][]byte{
		good,
		req,
		mustBatch(t, good, req),
		mustEncode(t, SetHealthType, &raftcmdv1.SetHealth{Namespace: "default", Service: "web", Id: "a", RegistrationRevision: 1, Status: 3, NowUnixNs: 5}),
		mustEncode(t, SelfPreservationType, &raftcmdv1.SelfPreservation{}),
		limitedReg(t, "default", "web", "d", 1, 0),
		{byte(BatchType), 0x0a, 0x05, 1},
		{byte(RequestType), 0xff},
		{byte(SkippableFlag | 3), 1, 2},
		{},
	}
}

// FuzzApply feeds arbitrary log entries to an FSM. Nothing may panic but
// the deliberate stop on an unknown command type; an entry answered with
// errors only must leave the state as it was.
func FuzzApply(f *testing.F) {
	for _, s := range applySeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := fuzzBase(t)
		before := dump(t, m)
		res, stopped := applyOrStop(m, 4, data)
		if stopped {
			if dump(t, m) != before {
				t.Fatal("state changed by an entry that stopped the node")
			}
			return
		}
		var results []Result
		switch r := res.(type) {
		case Result:
			results = []Result{r}
		case BatchResult:
			results = r
		default:
			t.Fatalf("result %T", res)
		}
		malformed := len(results) > 0
		for _, r := range results {
			malformed = malformed && errors.Is(r.Err, ErrMalformedCommand)
		}
		// A malformed entry changes nothing; so does a plain command that
		// fails (a failed request is remembered: that is a change).
		plainFailed := len(data) > 0 && CommandType(data[0]) != RequestType && CommandType(data[0]) != BatchType && results[0].Err != nil
		if (malformed || plainFailed) && dump(t, m) != before {
			t.Fatalf("a failed entry changed the state: %v", results)
		}
		if got, _ := m.Applied(); got != 4 {
			t.Fatalf("applied %d, want 4", got)
		}
	})
}

// applyOrStop applies data, reporting an UnknownCommandError panic (and
// only that) as stopped.
func applyOrStop(m *FSM, index uint64, data []byte) (res any, stopped bool) {
	defer func() {
		if r := recover(); r != nil {
			var u *UnknownCommandError
			if err, ok := r.(error); ok && errors.As(err, &u) {
				stopped = true
				return
			}
			panic(r)
		}
	}()
	return apply(m, index, data), false
}

// FuzzRestore restores arbitrary snapshots. Nothing may panic; a snapshot
// refused with an error must leave the previous state intact.
func FuzzRestore(f *testing.F) {
	m := fuzzBase(f)
	snap, err := m.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	var full bytes.Buffer
	if err := snap.(*snapshot).write(&full); err != nil {
		f.Fatal(err)
	}
	b := full.Bytes()
	for _, s := range [][]byte{b, b[:len(b)/2], b[:3], {}, append(bytes.Clone(b), 0x00, 0x01)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := fuzzBase(t)
		before := dump(t, m)
		applied, _ := m.Applied()
		if err := m.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if dump(t, m) != before {
				t.Fatalf("a refused snapshot (%v) changed the state", err)
			}
			if got, _ := m.Applied(); got != applied {
				t.Fatalf("a refused snapshot moved the applied index %d to %d", applied, got)
			}
			return
		}
		// A snapshot that restored must snapshot again and restore alike.
		again := snapshotBytes(t, m)
		m2 := newFSM()
		if err := m2.Restore(io.NopCloser(bytes.NewReader(again))); err != nil {
			t.Fatalf("restore of a re-taken snapshot: %v", err)
		}
		if dump(t, m2) != dump(t, m) {
			t.Fatal("a restored snapshot does not round-trip")
		}
	})
}

// TestWriteFuzzSeeds writes the seeds above as the committed corpus.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ROSTER_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set ROSTER_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	m := fuzzBase(t)
	snap := snapshotBytes(t, m)
	writeSeeds(t, "FuzzApply", applySeeds(t))
	writeSeeds(t, "FuzzRestore", [][]byte{snap, snap[:len(snap)/2], snap[:3], {}, append(bytes.Clone(snap), 0, 1)})
}

// writeSeeds writes one corpus file per seed in Go's fuzz corpus format.
func writeSeeds(t *testing.T, target string, seeds [][]byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

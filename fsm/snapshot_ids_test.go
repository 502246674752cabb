package fsm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// snapshotRequestIDs are request ids applied in one entry, so that only
// their ids order them: lowercase hex ids as clients make them, and ids
// beside them in string order that are not (uppercase, a character short
// or long, a non-hex letter, short names).
var snapshotRequestIDs = []string{
	"0123456789abcdef0123456789abcdef",
	"0123456789ABCDEF0123456789ABCDEF",
	"0123456789abcdef0123456789abcde",
	"0123456789abcdef0123456789abcdef0",
	"0123456789abcdef0123456789abcdeg",
	"00000000000000000000000000000000",
	"fffffffffffffffffffffffffffffffe",
	"0", "A", "f", "req-1", "~",
}

// requestIDGolden is the snapshot of requestIDState as the build before
// hex ids were held as bytes wrote it.
var requestIDGolden = filepath.Join("testdata", "snapshot-request-ids.bin")

// requestIDState applies snapshotRequestIDs in one batch, then a failed
// request under a hex id and one under another id, then one more write.
func requestIDState(t *testing.T) *FSM {
	f := newFSM()
	var entries [][]byte
	for i, id := range snapshotRequestIDs {
		entries = append(entries, wrap(t, id, 1, RegisterType, register("web", fmt.Sprintf("i%d", i), "10.0.0.1", 0, 1)))
	}
	apply(f, 1, batch(t, entries...))
	apply(f, 2, wrap(t, "ffffffffffffffffffffffffffffffff", 2, DeregisterType, deregister("web", "missing")))
	apply(f, 3, wrap(t, "req-gone", 3, DeregisterType, deregister("web", "missing")))
	apply(f, 4, wrap(t, "00000000000000000000000000000001", 4, RegisterType, register("web", "late", "10.0.0.2", 0, 4)))
	return f
}

// TestRequestIDsSurviveSnapshotsAcrossVersions: request results are written
// to a snapshot byte for byte as the build before hex ids were held as bytes
// wrote them, so that either build restores the other's snapshots (rolling
// upgrades); and a restored node lists them in the same order, by Raft
// index then id string, and finds every one of them again.
func TestRequestIDsSurviveSnapshotsAcrossVersions(t *testing.T) {
	golden, err := os.ReadFile(requestIDGolden)
	if err != nil {
		t.Fatal(err)
	}
	f := requestIDState(t)
	if !bytes.Equal(snapshotBytes(t, f), golden) {
		t.Fatal("the snapshot differs from the one the earlier build wrote for the same log")
	}
	want := slices.Sorted(slices.Values(snapshotRequestIDs))
	want = append(want, "ffffffffffffffffffffffffffffffff", "req-gone", "00000000000000000000000000000001")
	if got := requestIDs(t, f); !slices.Equal(got, want) {
		t.Fatalf("remembered %q, want %q", got, want)
	}

	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(golden))); err != nil {
		t.Fatal(err)
	}
	if got := requestIDs(t, g); !slices.Equal(got, want) {
		t.Fatalf("restored %q, want %q", got, want)
	}
	if a, b := dump(t, f), dump(t, g); a != b {
		t.Fatalf("restored state differs:\n got %s\nwant %s", b, a)
	}
	if !bytes.Equal(snapshotBytes(t, g), golden) {
		t.Fatal("a restored snapshot does not round-trip byte for byte")
	}
	for i, id := range snapshotRequestIDs {
		res := apply(g, uint64(5+i), wrap(t, id, 5, RegisterType, register("web", fmt.Sprintf("i%d", i), "10.0.0.1", 0, 1))).(Result)
		if res.Revision != 1 || res.Err != nil {
			t.Fatalf("repeat of %q after restore: %+v, want its first result at 1", id, res)
		}
	}
	if res := apply(g, 20, wrap(t, "ffffffffffffffffffffffffffffffff", 5, DeregisterType, deregister("web", "missing"))).(Result); res.Revision != 0 || res.Err == nil || !strings.Contains(res.Err.Error(), "missing") {
		t.Fatalf("repeated failed request after restore: %+v", res)
	}
	// Another spelling of a hex id is another request.
	if res := apply(g, 21, wrap(t, "0123456789ABCDEF0123456789abcdef", 5, RegisterType, register("web", "new", "10.0.0.3", 0, 5))).(Result); res.Revision != 21 || res.Err != nil {
		t.Fatalf("an uppercase spelling of a hex id: %+v, want a new application at 21", res)
	}
}

// TestWriteRequestIDGolden writes requestIDGolden; it was run on the build
// before hex ids were held as bytes, and must not be rerun on a later one
// to make TestRequestIDsSurviveSnapshotsAcrossVersions pass.
func TestWriteRequestIDGolden(t *testing.T) {
	if os.Getenv("ROSTER_WRITE_REQUEST_ID_GOLDEN") == "" {
		t.Skip("set ROSTER_WRITE_REQUEST_ID_GOLDEN=1 to rewrite " + requestIDGolden)
	}
	if err := os.WriteFile(requestIDGolden, snapshotBytes(t, requestIDState(t)), 0o644); err != nil {
		t.Fatal(err)
	}
}

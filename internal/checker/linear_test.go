package checker

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func checkL(h *History) Result {
	return CheckLinearizable(h, LinearizableOptions{Timeout: time.Minute})
}

func TestLinearizableGoodHistory(t *testing.T) {
	wantOK(t, checkL(goodHistory()))
}

func TestLinearizableStaleRead(t *testing.T) {
	h := &History{Ops: []Op{
		register(0, keyA, "v1", 0, 10, 5),
		register(0, keyA, "v2", 20, 30, 6),
		// called after v2 was acknowledged, yet sees v1
		get(1, map[string]string{"a": "v1"}, 40, 50, 5),
	}}
	viz := filepath.Join(t.TempDir(), "linearizability.html")
	r := CheckLinearizable(h, LinearizableOptions{Timeout: time.Minute, VisualizationPath: viz})
	wantViolation(t, r, "get -> v1")
	if r.Visualization != viz {
		t.Fatalf("visualization path %q, want %q", r.Visualization, viz)
	}
	data, err := os.ReadFile(viz)
	if err != nil || !strings.Contains(string(data), "<html") {
		t.Fatalf("visualization not written: %v", err)
	}
}

func TestLinearizableAbsenceIsObserved(t *testing.T) {
	// A get that misses a key acknowledged before it was called.
	missing := &History{Ops: []Op{
		register(0, keyA, "v1", 0, 10, 5),
		get(1, map[string]string{}, 20, 30, 5),
	}}
	wantViolation(t, checkL(missing), "get -> absent")

	// A deregister failing NotFound while the key is registered.
	notFound := &History{Ops: []Op{
		register(0, keyA, "v1", 0, 10, 5),
		{ClientID: 1, Kind: KindDeregister, Key: keyA, Call: ms(20), Return: ms(30),
			Outcome: OutcomeFail, Code: CodeNotFound},
	}}
	wantViolation(t, checkL(notFound), "deregister -> NotFound")

	// Other failures changed nothing and observed nothing.
	invalid := clone(t, notFound)
	invalid.Ops[1].Code = "InvalidArgument"
	wantOK(t, checkL(invalid))
}

func TestLinearizableUnknownWrite(t *testing.T) {
	base := []Op{
		register(0, keyA, "v1", 0, 10, 5),
		unknown(register(0, keyA, "v2", 20, 0, 0)),
	}
	cases := []struct {
		name  string
		reads []Op
		ok    bool
	}{
		{"happened", []Op{
			get(1, map[string]string{"a": "v2"}, 40, 50, 6),
			get(1, map[string]string{"a": "v2"}, 60, 70, 6),
		}, true},
		{"did not happen", []Op{
			get(1, map[string]string{"a": "v1"}, 40, 50, 5),
			get(1, map[string]string{"a": "v1"}, 60, 70, 5),
		}, true},
		{"happened late", []Op{
			get(1, map[string]string{"a": "v1"}, 40, 50, 5),
			get(1, map[string]string{"a": "v2"}, 60, 70, 6),
		}, true},
		{"undone", []Op{
			get(1, map[string]string{"a": "v2"}, 40, 50, 6),
			get(1, map[string]string{"a": "v1"}, 60, 70, 5),
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &History{Ops: append(append([]Op(nil), base...), tc.reads...)}
			if tc.ok {
				wantOK(t, checkL(h))
			} else {
				wantViolation(t, checkL(h), "register(v2) -> unknown")
			}
		})
	}
}

func TestLinearizableUnknownDeregister(t *testing.T) {
	for _, tc := range []struct {
		name     string
		observed map[string]string
	}{
		{"happened", map[string]string{}},
		{"did not happen", map[string]string{"a": "v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &History{Ops: []Op{
				register(0, keyA, "v1", 0, 10, 5),
				unknown(deregister(0, keyA, 20, 0, 0)),
				get(1, tc.observed, 40, 50, 6),
			}}
			wantOK(t, checkL(h))
		})
	}
}

// TestLinearizableRandomCorrectHistories feeds L histories produced by a
// correct store: each op takes effect at its own instant inside its
// interval; some writes end unknown, applied or not.
func TestLinearizableRandomCorrectHistories(t *testing.T) {
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 1))
		keys := []string{keyA, keyB, keyC}
		state := map[string]string{}
		h := &History{KeySpace: keys}
		for i := range 300 {
			at := int64(i) * 10 // the op's linearization point, in ms
			op := Op{ClientID: i % 8, Call: ms(at - rng.Int64N(40)), Return: ms(at + rng.Int64N(40)), Outcome: OutcomeOK}
			key := keys[rng.IntN(len(keys))]
			switch rng.IntN(3) {
			case 0:
				op.Kind, op.Key, op.Value = KindRegister, key, fmt.Sprintf("v%d", i)
				if rng.IntN(8) == 0 {
					op = unknown(op)
					if rng.IntN(2) == 0 {
						break
					}
				}
				state[key] = op.Value
			case 1:
				op.Kind, op.Key = KindDeregister, key
				_, present := state[key]
				switch {
				case rng.IntN(8) == 0:
					op = unknown(op)
					if rng.IntN(2) == 0 {
						break
					}
					delete(state, key)
				case !present:
					op.Outcome, op.Code = OutcomeFail, CodeNotFound
				default:
					delete(state, key)
				}
			default:
				op.Kind, op.Service, op.Observed = KindGet, svc, map[string]string{}
				for k, v := range state {
					op.Observed[k[len(svc)+1:]] = v
				}
			}
			h.Ops = append(h.Ops, op)
		}
		r := checkL(h)
		if !r.OK() {
			t.Fatalf("seed %d: correct history judged %s: %s\n%s", seed, r.Verdict, r.Summary, strings.Join(r.Details, "\n"))
		}
		t.Logf("seed %d: %s", seed, r.Summary)
	}
}

func TestLinearizableLeaseMayEmptyKey(t *testing.T) {
	leased := register(0, keyA, "v1", 0, 10, 5)
	leased.TTL = time.Second
	h := &History{Ops: []Op{leased, get(1, map[string]string{}, 20, 30, 6)}}
	wantOK(t, checkL(h))

	// Once gone, a leased instance does not come back by itself.
	h.Ops = append(h.Ops, get(1, map[string]string{"a": "v1"}, 40, 50, 6))
	wantViolation(t, checkL(h), "get -> v1")
}

func TestLinearizableInitialState(t *testing.T) {
	h := &History{Initial: map[string]string{keyA: "v0"}, Ops: []Op{
		get(1, map[string]string{"a": "v0"}, 0, 10, 3),
	}}
	wantOK(t, checkL(h))
	h.Initial = nil
	wantViolation(t, checkL(h), "get -> v0")
}

// ambiguousHistory has many unknown-outcome writes open to the end of the
// history and a read no subset of them explains: porcupine must try every
// subset before it can say Illegal.
func ambiguousHistory() *History {
	h := &History{}
	for i := range 48 {
		h.Ops = append(h.Ops, unknown(register(i, keyA, "v"+string(rune('A'+i)), int64(i), 0, 0)))
	}
	h.Ops = append(h.Ops, get(99, map[string]string{"a": "never-written"}, 100, 110, 0))
	return h
}

func TestLinearizableTimeoutIsNotAPass(t *testing.T) {
	r := CheckLinearizable(ambiguousHistory(), LinearizableOptions{Timeout: 20 * time.Millisecond})
	if r.Verdict != VerdictUnknown {
		t.Fatalf("want unknown, got %s: %s", r.Verdict, r.Summary)
	}
	t.Logf("%s: %s", r.Short, r.Summary)

	// Injected: porcupine answering Unknown on a history that is fine.
	r = CheckLinearizable(goodHistory(), LinearizableOptions{
		Timeout: time.Minute,
		check: func(porcupine.Model, []porcupine.Operation, time.Duration) porcupine.CheckResult {
			return porcupine.Unknown
		},
	})
	if r.OK() || r.Verdict != VerdictUnknown || !strings.Contains(r.Short, "unknown") {
		t.Fatalf("want unknown, got %s: %s", r.Verdict, r.Short)
	}
	rep := Report{L: r, W: Result{Verdict: VerdictOK, Short: "W ok"},
		D: Result{Verdict: VerdictOK, Short: "D ok"}, X: Result{Verdict: VerdictOK, Short: "X ok"},
		R: Result{Verdict: VerdictOK, Short: "R ok"}}
	if line := rep.VerdictLine(); !strings.HasPrefix(line, "verdict: FAIL (L unknown") {
		t.Fatalf("verdict line %q", line)
	}
}

func TestLinearizableMalformedHistory(t *testing.T) {
	h := &History{Ops: []Op{register(0, keyA, "v1", 10, 5, 5)}}
	if r := checkL(h); r.Verdict != VerdictUnknown {
		t.Fatalf("want unknown for a return before its call, got %s", r.Verdict)
	}
}

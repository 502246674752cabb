package checker

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckAllPass(t *testing.T) {
	var out strings.Builder
	r := CheckAll(goodHistory(), Options{LinearizableTimeout: time.Minute, Out: &out})
	if !r.OK() {
		t.Fatalf("good history failed:\n%s", out.String())
	}
	want := "verdict: PASS (L ok ops=15, W ok events=10, D ok, X ok expiries=1, R ok reads=3)"
	if line := r.VerdictLine(); line != want {
		t.Fatalf("verdict line\n got %q\nwant %q", line, want)
	}
	if !strings.HasSuffix(out.String(), want+"\n") {
		t.Fatalf("output does not end with the verdict line:\n%s", out.String())
	}
	t.Log(out.String())
}

func TestCheckAllFail(t *testing.T) {
	h := goodHistory()
	// A stale read (which also goes back in time), a lost write and a split
	// hash.
	h.Ops = append(h.Ops, get(3, map[string]string{"b": "w1"}, 200, 210, 6))
	h.Final[0].Instances = map[string]string{}
	h.NodeHashes[1].Hash = "bad"
	var out strings.Builder
	viz := filepath.Join(t.TempDir(), "l.html")
	r := CheckAll(h, Options{LinearizableTimeout: time.Minute, VisualizationPath: viz, Out: &out})
	line := r.VerdictLine()
	if r.OK() || !strings.HasPrefix(line, "verdict: FAIL (L violation keys=1, W violation") ||
		!strings.Contains(line, "D violation lost=1 hashes=1") || !strings.HasSuffix(line, "R violation back=1 reads=4)") {
		t.Fatalf("verdict line %q", line)
	}
	for _, want := range []string{"key default/web/b: no linearization", "visualization: " + viz, "applied index 10"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
}

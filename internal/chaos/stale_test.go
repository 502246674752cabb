package chaos

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/checker"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TestChaosCatchesStaleReads proves the harness can fail: rosterd built with
// -tags chaos_stale_reads serves linearizable reads from local state, and a
// short run of the deposed-leader scenario (pause the leader, write through
// the new one, resume, read from the old one at once; with network
// namespaces also cut the leader off) must end in FAIL with an L violation.
func TestChaosCatchesStaleReads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cluster for about a minute")
	}
	bin := filepath.Join(t.TempDir(), "rosterd")
	build := exec.Command("go", "build", "-tags", "chaos_stale_reads", "-o", bin, "./cmd/rosterd")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags chaos_stale_reads: %v\n%s", err, out)
	}
	var log bytes.Buffer
	results := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := Run(ctx, Config{
		Duration: 20 * time.Second, Seed: 7, Scenario: "stale-read",
		Results: results, Rosterd: bin, RepoRoot: repoRoot(),
		Warmup: 3 * time.Second, Settle: 2 * time.Second,
		LinearizableTimeout: time.Minute, AllowSkips: true, Out: &log,
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	t.Log(out.Verdict)
	if out.Code != ExitFail || out.Report.L.Verdict != checker.VerdictViolation {
		t.Fatalf("a build serving stale linearizable reads was not caught: code %d, %s\n%s", out.Code, out.Verdict, log.String())
	}
}

package checker

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Verdict is a checker's conclusion.
type Verdict string

// The verdicts. Only VerdictOK is a pass.
const (
	VerdictOK        Verdict = "ok"
	VerdictViolation Verdict = "violation"
	// VerdictUnknown: the checker could not decide (porcupine timed out).
	VerdictUnknown Verdict = "unknown"
)

// maxDetails bounds the details one checker reports, so a badly broken run
// stays readable; Result.Dropped counts the rest.
const maxDetails = 50

// Result is one checker's conclusion.
type Result struct {
	// Checker is "L", "W", "D", "X" or "R".
	Checker string  `json:"checker"`
	Verdict Verdict `json:"verdict"`
	// Short is the checker's part of the verdict line, e.g. "L ok ops=120".
	Short string `json:"short"`
	// Summary is one line a person reads first.
	Summary string `json:"summary"`
	// Details say which key, watcher or revision, and what was expected
	// versus seen.
	Details []string `json:"details,omitempty"`
	// Dropped counts details left out beyond the first few dozen.
	Dropped int `json:"dropped,omitempty"`
	// Visualization is the path of porcupine's HTML, when L wrote one.
	Visualization string `json:"visualization,omitempty"`
}

// OK reports whether the result is a pass.
func (r Result) OK() bool { return r.Verdict == VerdictOK }

// addf records one violation detail and marks the result a violation.
func (r *Result) addf(format string, args ...any) {
	r.Verdict = VerdictViolation
	if len(r.Details) >= maxDetails {
		r.Dropped++
		return
	}
	r.Details = append(r.Details, fmt.Sprintf(format, args...))
}

// Options tune CheckAll.
type Options struct {
	// LinearizableTimeout bounds porcupine; zero means 5 minutes. Running
	// out is VerdictUnknown, a failure.
	LinearizableTimeout time.Duration
	// VisualizationPath is where L writes porcupine's HTML on a violation;
	// empty writes none.
	VisualizationPath string
	// LeaseSlack forgives X this much clock disagreement between the
	// client's monotonic clock and the leader's timers.
	LeaseSlack time.Duration
	// Out, when set, receives every failing checker's details and then the
	// verdict line.
	Out io.Writer
}

// Report is the outcome of CheckAll.
type Report struct {
	L, W, D, X, R Result
}

// Results returns the results in L, W, D, X, R order.
func (r Report) Results() []Result { return []Result{r.L, r.W, r.D, r.X, r.R} }

// OK reports whether every checker passed.
func (r Report) OK() bool {
	for _, res := range r.Results() {
		if !res.OK() {
			return false
		}
	}
	return true
}

// VerdictLine returns the one line a run ends with:
// "verdict: PASS (L ok ops=…, W ok events=…, D ok, X ok, R ok reads=…)" or
// "verdict: FAIL (…)".
func (r Report) VerdictLine() string {
	parts := make([]string, 0, 5)
	for _, res := range r.Results() {
		parts = append(parts, res.Short)
	}
	word := "PASS"
	if !r.OK() {
		word = "FAIL"
	}
	return fmt.Sprintf("verdict: %s (%s)", word, strings.Join(parts, ", "))
}

// Write prints each checker's summary, the details of those that did not
// pass, and the verdict line last.
func (r Report) Write(w io.Writer) error {
	var b strings.Builder
	for _, res := range r.Results() {
		fmt.Fprintf(&b, "%s: %s\n", res.Checker, res.Summary)
		if res.OK() {
			continue
		}
		for _, d := range res.Details {
			fmt.Fprintf(&b, "  %s\n", d)
		}
		if res.Dropped > 0 {
			fmt.Fprintf(&b, "  ... and %d more\n", res.Dropped)
		}
		if res.Visualization != "" {
			fmt.Fprintf(&b, "  visualization: %s\n", res.Visualization)
		}
	}
	b.WriteString(r.VerdictLine())
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// CheckAll runs L, W, D, X and R over the history and, when opts.Out is set,
// prints the report ending in the verdict line.
func CheckAll(h *History, opts Options) Report {
	r := Report{
		L: CheckLinearizable(h, LinearizableOptions{
			Timeout:           opts.LinearizableTimeout,
			VisualizationPath: opts.VisualizationPath,
		}),
		W: CheckWatches(h),
		D: CheckDurable(h),
		X: CheckLeases(h, opts.LeaseSlack),
		R: CheckReadOrder(h),
	}
	if opts.Out != nil {
		_ = r.Write(opts.Out)
	}
	return r
}

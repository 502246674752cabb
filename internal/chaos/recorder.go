package chaos

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/internal/checker"
)

// recorder collects the history. Times are nanoseconds of Go's monotonic
// clock since the run began.
type recorder struct {
	base time.Time

	mu       sync.Mutex
	h        checker.History
	counts   map[string]int
	codes    map[string]int
	faults   []faultRecord
	problems []string
}

// faultRecord is one injected fault, for the report.
type faultRecord struct {
	At, End time.Duration
	Name    string
	Detail  string
}

func newRecorder() *recorder {
	return &recorder{base: time.Now(), counts: map[string]int{}, codes: map[string]int{}}
}

func (r *recorder) now() int64 { return int64(time.Since(r.base)) }

func (r *recorder) add(op checker.Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Ops = append(r.h.Ops, op)
	kind := string(op.Kind)
	if op.Stale {
		kind += "(stale)"
	}
	if op.Node == viaSDK.id {
		kind += "(sdk)"
	}
	if op.Stream {
		kind += "(stream)"
	}
	r.counts[kind+" "+string(op.Outcome)]++
	if op.Code != "" {
		r.codes[kind+" "+op.Code]++
	}
}

func (r *recorder) expiry(e checker.Expiry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Expiries = append(r.h.Expiries, e)
}

func (r *recorder) fault(start time.Time, name, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, faultRecord{At: start.Sub(r.base), End: time.Since(r.base), Name: name, Detail: detail})
}

// problem notes something that makes the run less than a full check, for
// the report.
func (r *recorder) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// outcome classifies one RPC's error. A write is OutcomeFail only when the
// error proves nothing was applied: a validation or state error, or a
// connection that was never made. Everything else (deadline, Unavailable
// from a node that may have relayed it, cancellation) may have happened.
func outcome(err error) (checker.Outcome, string) {
	if err == nil {
		return checker.OutcomeOK, ""
	}
	st, _ := status.FromError(err)
	code := st.Code()
	if errors.Is(err, context.DeadlineExceeded) {
		code = codes.DeadlineExceeded
	}
	switch code {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists,
		codes.PermissionDenied, codes.Unauthenticated, codes.OutOfRange, codes.Unimplemented,
		codes.ResourceExhausted:
		return checker.OutcomeFail, code.String()
	case codes.Unavailable:
		// grpc-go fails an RPC with the dial error when no connection could
		// be made: the request was never sent.
		if strings.Contains(st.Message(), "Error while dialing") {
			return checker.OutcomeFail, "Unavailable(dial)"
		}
	}
	return checker.OutcomeUnknown, code.String()
}

// outcomeVia classifies the error of a write sent to node n. A write
// through the SDK is OutcomeFail only on a domain error: the SDK may have
// sent it to one endpoint before it failed to dial the next, so even a
// dial error in its message proves nothing.
func outcomeVia(n *node, err error) (checker.Outcome, string) {
	o, code := outcome(err)
	if n != viaSDK || err == nil {
		return o, code
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists,
		codes.PermissionDenied, codes.Unauthenticated, codes.OutOfRange, codes.Unimplemented,
		codes.ResourceExhausted:
		return o, code
	}
	return checker.OutcomeUnknown, status.Code(err).String()
}

// countsReport lists operation counts by kind and outcome.
func (r *recorder) countsReport() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for k := range r.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	total := 0
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-28s %d\n", k, r.counts[k])
		total += r.counts[k]
	}
	fmt.Fprintf(&b, "  %-28s %d\n", "total", total)
	keys = keys[:0]
	for k := range r.codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		b.WriteString("error codes:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "  %-28s %d\n", k, r.codes[k])
		}
	}
	return b.String()
}

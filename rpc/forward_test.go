package rpc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/store"
)

// TestJudgeRetriesByWhatTheCallIs: no error text is parsed. A write with a
// request id is retried after any failure that leaves its outcome open
// (after a GOAWAY grpc-go reports "connection error" on streams that were
// sent, which once passed for "never sent"); a call without one is retried
// only when provably not applied; the leader's answers are final.
func TestJudgeRetriesByWhatTheCallIs(t *testing.T) {
	goaway := status.Error(codes.Unavailable, `connection error: desc = "transport is closing"`)
	brokeMidCall := status.Error(codes.Unavailable, "error reading from server: EOF")
	attemptTimedOut := status.Error(codes.DeadlineExceeded, "context deadline exceeded")
	neverSent := fmt.Errorf("%w: n1 at 127.0.0.1:1: not connected", errLeaderUnreachable)
	leaderSaidNoLeader := withReason(codes.Unavailable, "no leader", ReasonNoLeader)
	leaderSaidUnknown := withReason(codes.Unavailable, "outcome unknown", ReasonOutcomeUnknown)
	notFound := withReason(codes.NotFound, "instance not found", ReasonNotFound)
	localUnknown := fmt.Errorf("%w: %w", cluster.ErrOutcomeUnknown, context.DeadlineExceeded)
	// A write that waited for a new leader's barrier until the hold
	// timeout: nothing was proposed (cluster's requestStamp).
	localNotReady := fmt.Errorf("%w: %w", cluster.ErrLeaderNotReady, context.DeadlineExceeded)

	tests := []struct {
		name   string
		err    error
		kind   callKind
		want   verdict
		wantIs error
	}{
		{"write after goaway", goaway, deduplicated, retryMaybeApplied, nil},
		{"write broke mid-call", brokeMidCall, deduplicated, retryMaybeApplied, nil},
		{"write attempt timed out", attemptTimedOut, deduplicated, retryMaybeApplied, nil},
		{"write, leader lost leadership", leaderSaidUnknown, deduplicated, retryMaybeApplied, nil},
		{"local write, leadership lost", localUnknown, deduplicated, retryMaybeApplied, nil},
		{"local write, waited for the barrier until the hold timeout", localNotReady, deduplicated, retryNotApplied, nil},
		{"write never sent", neverSent, deduplicated, retryNotApplied, nil},
		{"write, leader said no leader", leaderSaidNoLeader, deduplicated, retryNotApplied, nil},
		{"write, not found is the answer", notFound, deduplicated, stop, nil},
		{"write, reused id is the answer", fmt.Errorf("request: %w", store.ErrRequestReused), deduplicated, stop, store.ErrRequestReused},
		{"read broke mid-call", brokeMidCall, repeatable, retryMaybeApplied, nil},
		{"remove node after goaway", goaway, applyOnce, stop, cluster.ErrOutcomeUnknown},
		{"remove node never sent", neverSent, applyOnce, retryNotApplied, nil},
		{"remove node, leader said outcome unknown", leaderSaidUnknown, applyOnce, stop, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := judge(tt.err, tt.kind)
			if v != tt.want {
				t.Fatalf("judge(%v) = %v, want %v", tt.err, v, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("got %v, want it to wrap %v", err, tt.wantIs)
			}
			if tt.wantIs == cluster.ErrOutcomeUnknown && Reason(toStatus(err)) != ReasonOutcomeUnknown {
				t.Fatalf("client sees %v, want reason %s", toStatus(err), ReasonOutcomeUnknown)
			}
			if v == retryNotApplied && Reason(toStatus(err)) != "" && !notApplied(toStatus(err)) {
				t.Fatalf("client sees %v, which does not say nothing was applied", toStatus(err))
			}
		})
	}
}

func TestRequestIDValidation(t *testing.T) {
	for _, id := range []string{"a b", "tab\there", "é", string(make([]byte, MaxRequestIDLen+1))} {
		if _, err := requestID(id); err == nil {
			t.Errorf("request id %q accepted", id)
		}
	}
	ok := "0123456789abcdef-_.:@/+="
	if got, err := requestID(ok); err != nil || got != ok {
		t.Fatalf("requestID(%q) = %q, %v", ok, got, err)
	}
	a, _ := requestID("")
	b, _ := requestID("")
	if a == "" || a == b {
		t.Fatalf("generated ids %q and %q", a, b)
	}
}

package rpc

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/cluster"
)

// TestRelayFailureNeverRetriesAWriteThatMayHaveApplied: a write relayed to
// the leader whose connection broke mid-call may have been applied; sending
// it again could apply it twice around another client's write. It must come
// back as outcome unknown, while a write that was never sent (the dial
// failed) and harmless repeats are retried.
func TestRelayFailureNeverRetriesAWriteThatMayHaveApplied(t *testing.T) {
	dialFailed := status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7420: connect: connection refused"`)
	brokeMidCall := status.Error(codes.Unavailable, "error reading from server: EOF")
	leaderSaidNoLeader := withReason(codes.Unavailable, "no leader", ReasonNoLeader)
	leaderSaidUnknown := withReason(codes.Unavailable, "outcome unknown", ReasonOutcomeUnknown)
	notFound := status.Error(codes.NotFound, "instance not found")

	tests := []struct {
		name      string
		err       error
		kind      callKind
		wantRetry bool
		wantIs    error
	}{
		{"write, dial failed", dialFailed, applyOnce, true, cluster.ErrNoLeader},
		{"write, broke mid-call", brokeMidCall, applyOnce, false, cluster.ErrOutcomeUnknown},
		{"read, broke mid-call", brokeMidCall, repeatable, true, cluster.ErrNoLeader},
		{"leader said no leader", leaderSaidNoLeader, applyOnce, true, nil},
		{"leader said outcome unknown", leaderSaidUnknown, applyOnce, false, nil},
		{"domain error passes through", notFound, applyOnce, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := relayFailure(tt.err, tt.kind)
			if retryable(got) != tt.wantRetry {
				t.Fatalf("retryable(%v) = %v, want %v", got, retryable(got), tt.wantRetry)
			}
			if tt.wantIs != nil && !errors.Is(got, tt.wantIs) {
				t.Fatalf("got %v, want it to wrap %v", got, tt.wantIs)
			}
			if tt.wantIs == cluster.ErrOutcomeUnknown && Reason(toStatus(got)) != ReasonOutcomeUnknown {
				t.Fatalf("client sees %v, want reason %s", toStatus(got), ReasonOutcomeUnknown)
			}
		})
	}
}

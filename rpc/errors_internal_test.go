package rpc

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/cluster"
)

// TestToStatusNamesRaftFailures: every error raft can hand a call, as
// cluster passes it on, reaches the client with a fitting code and reason,
// never Internal or Unknown; and what onLeader makes of it, here and as a
// follower relaying the leader's answer, is unchanged: only what proves
// nothing was applied is retried, a transfer is never retried, and the
// leader's verdict passes through a follower as it is.
func TestToStatusNamesRaftFailures(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		// verdict is judge's, of the local error and of the relayed
		// status alike, for a call that must not apply twice; stop
		// passes the error on as it is.
		verdict verdict
	}{
		{"raft: not the leader", fmt.Errorf("%w (%v)", cluster.ErrNotLeader, raft.ErrNotLeader),
			codes.Unavailable, ReasonNotLeader, retryNotApplied},
		{"raft: a write refused during a transfer", fmt.Errorf("%w (%v)", cluster.ErrNotLeader, raft.ErrLeadershipTransferInProgress),
			codes.Unavailable, ReasonNotLeader, retryNotApplied},
		{"raft: enqueue timed out", cluster.ErrEnqueueTimeout, codes.Unavailable, ReasonNotLeader, retryNotApplied},
		{"raft: leadership lost", fmt.Errorf("%w (%v)", cluster.ErrOutcomeUnknown, raft.ErrLeadershipLost),
			codes.Unavailable, ReasonOutcomeUnknown, stop},
		{"raft: aborted by restore", fmt.Errorf("%w (%v)", cluster.ErrOutcomeUnknown, raft.ErrAbortedByRestore),
			codes.Unavailable, ReasonOutcomeUnknown, stop},
		{"raft: shut down", cluster.ErrShutdown, codes.Unavailable, ReasonShutdown, stop},
		{"transfer: another under way", fmt.Errorf("%w: another transfer is under way", cluster.ErrTransferInProgress),
			codes.Aborted, ReasonTransferInProgress, stop},
		{"transfer: raft's timeout", fmt.Errorf("%w (target n2); n1 still leads", cluster.ErrTransferTimeout),
			codes.Aborted, ReasonTransferFailed, stop},
		{"transfer: target unreachable", fmt.Errorf("%w (target n2): failed to make TimeoutNow RPC; n1 still leads", cluster.ErrTransferFailed),
			codes.Aborted, ReasonTransferFailed, stop},
		{"transfer: new leader unknown", fmt.Errorf("%w: n1 stepped down", cluster.ErrNewLeaderUnknown),
			codes.Unavailable, ReasonNewLeaderUnknown, stop},
		{"restore: taken, then not committed past", fmt.Errorf("restore: %w: raft took the backup", cluster.ErrOutcomeUnknown),
			codes.Unavailable, ReasonOutcomeUnknown, stop},
	}
	for _, tt := range tests {
		st := toStatus(tt.err)
		if status.Code(st) != tt.code || Reason(st) != tt.reason {
			t.Errorf("%s: toStatus(%v) = %v (reason %q), want %v with reason %q", tt.name, tt.err, st, Reason(st), tt.code, tt.reason)
		}
		if v, got := judge(tt.err, applyOnce); v != tt.verdict || (v == stop && got != tt.err) {
			t.Errorf("%s: here, judge = %v, %v; want %v with the error as it is", tt.name, v, got, tt.verdict)
		}
		if v, got := judge(st, applyOnce); v != tt.verdict || (v == stop && got != st) {
			t.Errorf("%s: relayed, judge = %v, %v; want %v with the status as it is", tt.name, v, got, tt.verdict)
		}
	}
	// Raft refusing a restore until a membership change commits: nothing
	// was restored, and the message says to try again.
	pending := fmt.Errorf("restore: %w; nothing was restored, try again once it is", cluster.ErrConfigurationPending)
	// Or because writes went on while the backup was checked.
	raced := fmt.Errorf("restore: %w (70000 of them); nothing was restored, try again when writes are quieter", cluster.ErrRestoreRaced)
	for _, err := range []error{pending, raced} {
		if st := toStatus(err); status.Code(st) != codes.Aborted {
			t.Errorf("toStatus(%v) = %v, want Aborted", err, st)
		}
	}
}

// TestNoLeaderKeepsWhatTheErrorAdds: a NO_LEADER status says why there is
// no leader and keeps what the error adds to it.
func TestNoLeaderKeepsWhatTheErrorAdds(t *testing.T) {
	const why = "no leader: the cluster is electing one or has lost its quorum"
	for _, tc := range []struct {
		err  error
		want string
	}{
		{cluster.ErrNoLeader, why},
		{fmt.Errorf("%w (this node is shutting down: not waiting for another attempt)", cluster.ErrNoLeader),
			why + " (this node is shutting down: not waiting for another attempt)"},
		{errLeaderless, why + "; this node has no leader; resume the watch on another node"},
		{fmt.Errorf("read: %w", cluster.ErrNoLeader), why + ": read: no leader"},
	} {
		st := status.Convert(toStatus(tc.err))
		if st.Code() != codes.Unavailable || st.Message() != tc.want || Reason(st.Err()) != ReasonNoLeader {
			t.Errorf("%v: %s %q (reason %q); want Unavailable %q, NO_LEADER", tc.err, st.Code(), st.Message(), Reason(st.Err()), tc.want)
		}
	}
}

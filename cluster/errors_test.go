package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// TestMapRaftErrorNamesMembershipRefusals: raft's own refusals of a
// membership change, which carry no sentinel, become this package's.
func TestMapRaftErrorNamesMembershipRefusals(t *testing.T) {
	tests := []struct {
		raft error
		want error
	}{
		{fmt.Errorf("cannot transfer leadership to itself"), ErrAlreadyLeader},
		{fmt.Errorf("cannot find peer"), ErrNoOtherVoter},
		{fmt.Errorf("cannot find replication state for %v", "r1"), ErrUnknownNode},
		{fmt.Errorf("need at least one voter in configuration: %v", "{[]}"), ErrLastVoter},
	}
	for _, tt := range tests {
		if got := mapRaftError(tt.raft); !errors.Is(got, tt.want) {
			t.Errorf("mapRaftError(%q) = %v, want %v", tt.raft, got, tt.want)
		}
	}
}

// TestMapRaftErrorCoversRaftSentinels: every error raft can hand a client
// call becomes a sentinel rpc maps to a code, so none reaches a client as
// Internal; the rest never reach one.
func TestMapRaftErrorCoversRaftSentinels(t *testing.T) {
	tests := []struct {
		raft error
		// want is the sentinel; nil: left as it is, for the reason given.
		want error
		why  string
	}{
		{raft.ErrNotLeader, ErrNotLeader, ""},
		// A leader handing over refuses writes, membership changes and
		// restores without taking them (a transfer refused so is
		// TestTransferErrorSaysWhatHappened's).
		{raft.ErrLeadershipTransferInProgress, ErrNotLeader, ""},
		{raft.ErrLeadershipLost, ErrOutcomeUnknown, ""},
		{raft.ErrAbortedByRestore, ErrOutcomeUnknown, ""},
		{raft.ErrRaftShutdown, ErrShutdown, ""},
		{raft.ErrEnqueueTimeout, ErrEnqueueTimeout, ""},
		{fmt.Errorf("cannot restore snapshot now, wait until the configuration entry at %v has been applied (have applied %v)", 9, 8), ErrConfigurationPending, ""},
		{raft.ErrCantBootstrap, nil, "only bootstrap returns it, at start, handled there"},
		{raft.ErrNothingNewToSnapshot, nil, "only Node.Snapshot returns it, which no call serves"},
		{raft.ErrUnsupportedProtocol, nil, "roster runs raft's newest protocol"},
		{raft.ErrNotVoter, nil, "only a live bootstrap returns it"},
	}
	for _, tt := range tests {
		got := mapRaftError(tt.raft)
		switch {
		case tt.want == nil && got != tt.raft:
			t.Errorf("mapRaftError(%q) = %v, want it as it is (%s)", tt.raft, got, tt.why)
		case tt.want != nil && !errors.Is(got, tt.want):
			t.Errorf("mapRaftError(%q) = %v, want %v", tt.raft, got, tt.want)
		}
	}
}

// TestTransferErrorSaysWhatHappened: raft's failures of a leadership
// transfer, text without sentinels most of them, become sentinels saying
// what happened and who leads. One refused because another transfer is
// under way is not ErrNotLeader: a retry of it would move leadership again.
func TestTransferErrorSaysWhatHappened(t *testing.T) {
	n := newReadyLeader(t)
	tests := []struct {
		raft   error
		target string
		want   error
		says   string
	}{
		{raft.ErrLeadershipTransferInProgress, "", ErrTransferInProgress, "n1 still leads"},
		{errors.New("leadership transfer timeout"), "n2", ErrTransferTimeout, "(target n2); n1 still leads"},
		{errors.New("failed to make TimeoutNow RPC to n2: connection refused"), "n2", ErrTransferFailed, "connection refused; n1 still leads"},
		{errors.New("replication failed"), "", ErrTransferFailed, "(target picked by raft)"},
		{raft.ErrNotLeader, "n2", ErrNotLeader, ""},
		{raft.ErrRaftShutdown, "n2", ErrShutdown, ""},
		{errors.New("cannot find peer"), "", ErrNoOtherVoter, ""},
	}
	for _, tt := range tests {
		got := n.transferError(tt.raft, tt.target)
		if !errors.Is(got, tt.want) || !strings.Contains(got.Error(), tt.says) {
			t.Errorf("transferError(%q) = %v, want %v saying %q", tt.raft, got, tt.want, tt.says)
		}
		if tt.want != ErrNotLeader && errors.Is(got, ErrNotLeader) {
			t.Errorf("transferError(%q) = %v, which would be retried", tt.raft, got)
		}
	}
}

// TestAwaitNewLeaderSaysWhatItKnows: a wait that ends before another
// leader is heard from fails with ErrNewLeaderUnknown, naming this node and
// its term, not with the context's error.
func TestAwaitNewLeaderSaysWhatItKnows(t *testing.T) {
	n := newReadyLeader(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := n.AwaitNewLeader(ctx)
	says := []string{"n1 stepped down and heard from no other leader within ", fmt.Sprintf("(term %d: n1 was elected again)", n.Term())}
	for _, s := range says {
		if !errors.Is(err, ErrNewLeaderUnknown) || errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), s) {
			t.Fatalf("AwaitNewLeader = %v, want %v saying %q", err, ErrNewLeaderUnknown, s)
		}
	}
}

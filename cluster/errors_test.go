package cluster

import (
	"errors"
	"fmt"
	"testing"
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

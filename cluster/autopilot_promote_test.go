package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// TestPromotionsNeedStabilityAndVoterIntent: only a non-voter that joined
// to vote and has been healthy for the stabilization time is promoted; a
// read replica never is, however long it has been healthy.
func TestPromotionsNeedStabilityAndVoterIntent(t *testing.T) {
	now := time.Now()
	stab := 10 * time.Second
	conf := &autopilot.Config{ServerStabilizationTime: stab}
	srv := func(id string, state autopilot.RaftState, typ autopilot.NodeType, healthy bool, since time.Duration) *autopilot.ServerState {
		return &autopilot.ServerState{
			Server: autopilot.Server{ID: raft.ServerID(id), NodeType: typ},
			State:  state,
			Health: autopilot.ServerHealth{Healthy: healthy, StableSince: now.Add(-since)},
		}
	}
	state := func(servers ...*autopilot.ServerState) *autopilot.State {
		s := &autopilot.State{Servers: map[raft.ServerID]*autopilot.ServerState{}}
		for _, x := range servers {
			s.Servers[x.Server.ID] = x
		}
		return s
	}
	// A State made here has no first-update time, which autopilot takes
	// as long ago: as on a leader that has run autopilot for a while.
	old := func(s *autopilot.State) *autopilot.State { return s }
	logger := hclog.NewNullLogger()
	for _, tc := range []struct {
		name  string
		state *autopilot.State
		want  []raft.ServerID
	}{
		{"stable staged server", old(state(srv("a", autopilot.RaftNonVoter, autopilot.NodeVoter, true, stab+time.Second))), []raft.ServerID{"a"}},
		{"healthy, not yet stable", old(state(srv("a", autopilot.RaftNonVoter, autopilot.NodeVoter, true, stab-time.Second))), nil},
		{"stable but unhealthy", old(state(srv("a", autopilot.RaftNonVoter, autopilot.NodeVoter, false, time.Hour))), nil},
		{"read replica", old(state(srv("r", autopilot.RaftNonVoter, nodeTypeReplica, true, time.Hour))), nil},
		{"already a voter", old(state(srv("v", autopilot.RaftVoter, autopilot.NodeVoter, true, time.Hour))), nil},
		{"several, in id order", old(state(
			srv("c", autopilot.RaftNonVoter, autopilot.NodeVoter, true, time.Hour),
			srv("b", autopilot.RaftNonVoter, autopilot.NodeVoter, true, time.Hour),
			srv("r", autopilot.RaftNonVoter, nodeTypeReplica, true, time.Hour),
		)), []raft.ServerID{"b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := promotions(conf, tc.state, now, logger).Promotions
			if len(got) != len(tc.want) {
				t.Fatalf("promotions %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("promotions %v, want %v", got, tc.want)
				}
			}
		})
	}
}

package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/roster-registry/roster/cluster"
)

// autopilotFlags configure the leader's autopilot (dead-server cleanup and
// the promotion of servers that --join).
type autopilotFlags struct {
	enabled           bool
	cleanup           bool
	deadAfter         time.Duration
	minQuorum         uint
	lastContact       time.Duration
	maxTrailingLogs   uint64
	stabilizationTime time.Duration
}

func (a *autopilotFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&a.enabled, "autopilot", true, "run autopilot on the leader: a server that --joins enters as a non-voter and becomes a voter once healthy "+
		"for --autopilot-server-stabilization-time, and failed servers are cleaned up; false: a joining server votes at once and failed ones stay until roster remove-node removes them")
	fs.BoolVar(&a.cleanup, "autopilot-cleanup-dead-servers", true, "remove a server the leader has not reached for --autopilot-dead-server-after, never leaving fewer than --autopilot-min-quorum voters")
	fs.DurationVar(&a.deadAfter, "autopilot-dead-server-after", cluster.DefaultAutopilotDeadServerAfter, "how long the leader must fail to reach a server before autopilot counts it as failed")
	fs.UintVar(&a.minQuorum, "autopilot-min-quorum", cluster.DefaultAutopilotMinQuorum, "the fewest voters dead-server cleanup leaves (set it to the number of servers you run)")
	fs.DurationVar(&a.lastContact, "autopilot-last-contact-threshold", cluster.DefaultAutopilotLastContactThreshold, "a server not heard from by the leader in this long is unhealthy")
	fs.Uint64Var(&a.maxTrailingLogs, "autopilot-max-trailing-logs", cluster.DefaultAutopilotMaxTrailingLogs, "a server this many log entries behind the leader is unhealthy")
	fs.DurationVar(&a.stabilizationTime, "autopilot-server-stabilization-time", cluster.DefaultAutopilotServerStabilizationTime, "how long a new server must be healthy before it becomes a voter")
}

// config checks the flags and returns the autopilot configuration, nil
// when autopilot is off.
func (a *autopilotFlags) config() (*cluster.AutopilotConfig, error) {
	if !a.enabled {
		return nil, nil
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"--autopilot-dead-server-after", a.deadAfter},
		{"--autopilot-last-contact-threshold", a.lastContact},
		{"--autopilot-server-stabilization-time", a.stabilizationTime},
	} {
		if d.v <= 0 {
			return nil, usagef("%s %v must be positive", d.name, d.v)
		}
	}
	if a.maxTrailingLogs == 0 {
		return nil, usagef("--autopilot-max-trailing-logs must be positive")
	}
	return &cluster.AutopilotConfig{
		CleanupDeadServers:      a.cleanup,
		DeadServerAfter:         a.deadAfter,
		MinQuorum:               a.minQuorum,
		LastContactThreshold:    a.lastContact,
		MaxTrailingLogs:         a.maxTrailingLogs,
		ServerStabilizationTime: a.stabilizationTime,
	}, nil
}

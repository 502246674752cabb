package cluster

import "time"

// Raft timers for a LAN, rosterd's defaults. hashicorp/raft's own
// defaults (1 s heartbeat and election timeouts, 500 ms leader lease) are
// made for WANs and slow disks: a follower notices a dead leader only after
// 1-2 s. Pre-vote, on by default in raft v1.7, keeps a node that was cut
// off from disrupting the cluster when it comes back.
const (
	LANHeartbeatTimeout   = 300 * time.Millisecond
	LANElectionTimeout    = 300 * time.Millisecond
	LANLeaderLeaseTimeout = 250 * time.Millisecond
	// LANCommitTimeout is how long a leader with nothing new to send waits
	// before sending followers an AppendEntries anyway: raft's default.
	// It no longer decides how soon followers learn a commit: Roster's
	// raft (third_party/raft) tells them as soon as the commit index moves
	// with nothing uncommitted left to carry it. At 2 ms, the setting
	// before that change, an idle 3-node cluster used about five times the
	// CPU (docs/performance.md).
	LANCommitTimeout = 50 * time.Millisecond
)

// UseLANTimeouts sets the LAN timers, the failure-detection ones scaled by
// scale (2 doubles them, for slow disks or a WAN); the commit timeout is
// not scaled.
func (c *Config) UseLANTimeouts(scale float64) {
	if scale <= 0 {
		scale = 1
	}
	s := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	c.HeartbeatTimeout = s(LANHeartbeatTimeout)
	c.ElectionTimeout = s(LANElectionTimeout)
	c.LeaderLeaseTimeout = s(LANLeaderLeaseTimeout)
	c.CommitTimeout = LANCommitTimeout
}

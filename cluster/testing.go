package cluster

import "time"

// Raft timeouts of in-process test clusters: elections and failovers in
// about a hundred milliseconds.
const (
	fastHeartbeatTimeout   = 100 * time.Millisecond
	fastElectionTimeout    = 100 * time.Millisecond
	fastLeaderLeaseTimeout = 100 * time.Millisecond
	fastCommitTimeout      = 5 * time.Millisecond
)

// UseFastTimeouts sets the Raft timeouts every in-process test cluster uses
// (internal/testcluster and the cluster package's own tests), so that there
// is one set of test timings: elections and failovers take about a hundred
// milliseconds on an in-memory transport. Timeouts this short suit only
// in-memory transports on an unloaded machine; never use them in production.
func (c *Config) UseFastTimeouts() {
	c.HeartbeatTimeout = fastHeartbeatTimeout
	c.ElectionTimeout = fastElectionTimeout
	c.LeaderLeaseTimeout = fastLeaderLeaseTimeout
	c.CommitTimeout = fastCommitTimeout
}

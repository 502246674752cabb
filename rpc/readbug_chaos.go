//go:build chaos_stale_reads

package rpc

// linearizableFromLocalState plants a bug for the chaos harness to catch: a
// build with -tags chaos_stale_reads serves LINEARIZABLE reads from this
// node's local state, with no read index, so a follower behind the leader or
// a deposed leader answers stale data while claiming linearizability.
// cmd/roster-chaos's TestChaosCatchesStaleReads proves checker L fails such
// a build. Never ship it.
const linearizableFromLocalState = true

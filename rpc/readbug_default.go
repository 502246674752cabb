//go:build !chaos_stale_reads

package rpc

// linearizableFromLocalState is the chaos harness's planted bug, off in every
// real build: see readbug_chaos.go.
const linearizableFromLocalState = false

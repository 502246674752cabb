// Package chaos is Roster's fault-injection harness: it starts a real rosterd
// cluster (processes on loopback or in network namespaces, or the compose
// cluster in Docker), runs a recorded workload against it through raw
// per-node gRPC connections, injects the faults of the repository's
// RELIABILITY.md (kill -9, SIGSTOP, partitions, a slow network, snapshot
// catch-up, membership changes, a slow watcher), heals, settles, takes final
// linearizable lists and state hashes, and judges the history with
// internal/checker (L, W, D, X, R).
//
// Every recorded client call is one attempt: the workload never uses the
// retrying SDK, so an op's outcome is exactly what one RPC learned. Parts the
// server does not implement yet (Heartbeat, Watch) are detected by
// codes.Unimplemented and reported as SKIPPED, never as a pass.
//
// cmd/roster-chaos is the command; scripts/chaos.sh builds and runs it.
package chaos

// Package checker holds the history model that Roster's chaos harness records
// and the five checkers that judge it, as RELIABILITY.md (at the repository
// root) names them:
//
//   - L: linearizability of register, deregister and linearizable get, by
//     porcupine over the history partitioned per instance key.
//   - W: watch invariants over every watcher's received messages: ordered,
//     unique, atomic per revision, gapless against the merged history,
//     resumable, bookmarked, and replaying to the same state as a
//     linearizable list.
//   - D: durability: every acknowledged write is present at the end, and
//     every node reports the same state hash at the same applied index.
//   - X: lease safety: no instance is seen expired before its last
//     acknowledged renewal's call time plus its TTL.
//   - R: reads never go back in time: over all successful linearizable
//     gets, on any node and of any service, a get called after another
//     returned reports a header revision at least as high.
//
// The package depends only on the standard library and porcupine, never on
// the wire types, so a history is a plain JSON document (History.Save,
// Load) that a person can read and that outlives API changes.
//
// A checker never passes what it could not decide: porcupine timing out is
// reported as VerdictUnknown, and CheckAll treats anything but VerdictOK as
// a failure.
package checker

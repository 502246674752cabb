// Package client is Roster's Go SDK: a multi-endpoint gRPC client for the
// registry and cluster APIs.
//
// A Client holds one connection per configured address and sends every call
// to its current endpoint. When that endpoint is unreachable (the connection
// cannot be made within the connect timeout, or the call fails with
// codes.Unavailable) the client moves on to the next address and retries
// there, with a short backoff in between; the caller's context bounds
// everything. Connections use gRPC keepalive, so a server that stops
// answering is noticed within seconds.
//
// What is retried:
//
//   - Reads and Heartbeat: after any Unavailable, each address at most once.
//   - Register, Deregister and SetMaintenance: every call carries a request
//     id (a fresh one when the request's RequestId is empty; the caller's
//     request is not changed). The cluster applies an id at most once and
//     answers a repeat with the first result — same revision, same error —
//     so these writes are retried after any Unavailable, OUTCOME_UNKNOWN
//     included, with the same id: round the addresses until the context's
//     deadline, or each address once when it has none. A retry never
//     brings back a value another client has since overwritten, and a
//     retried Deregister never deletes a later re-registration. A write
//     that may have been applied without any attempt returning its result
//     fails with codes.Unavailable and reason OUTCOME_UNKNOWN (or the
//     context's error). Set RequestId yourself to retry across calls (after
//     a restart of your process, say) within the cluster's memory of ids,
//     10 minutes; never reuse one for a different request (InvalidArgument,
//     reason REQUEST_ID_REUSED).
//   - RemoveNode, TransferLeadership, SetSelfPreservation, CreateToken,
//     DeleteToken, ACLBootstrap and SnapshotRestore: only when the request
//     was never sent, or the node answered that nothing was applied
//     (NO_LEADER, NOT_LEADER).
//
// Two long-lived helpers build on that:
//
//   - Client.Watch returns an iterator of WatchResponse values that survives
//     stream failures: it reconnects (to the next endpoint when the current
//     one is down) and resumes from the last revision it fully delivered, so
//     the caller sees neither a gap nor a repeat. The client's watches to
//     one endpoint share one Registry.WatchMany stream, and a message
//     several of them receive alike is one read-only value for all.
//   - Client.KeepAlive starts a Session that renews the leases of a set of
//     instances over one Registry.KeepAlive stream and reports leases lost
//     and restored on a channel.
//
// Discovery builds on those two:
//
//   - Client.RegisterInstance registers an instance and keeps it registered
//     over a keepalive session shared by the client's registrations: when
//     the cluster loses the lease it registers the instance again and says
//     so on the Registration's events, and an instance closed with
//     Registration.Close is never brought back. A client holds an instance
//     in one Registration at a time. DeregisterOnSignal ties Close to
//     SIGINT and SIGTERM. (Client.Register stays the raw call.)
//   - Client.Instances and Client.CachedService answer from a discovery
//     cache: one watch per service, resumed by revision, healthy instances
//     by default. While the cluster is unreachable the cache serves the last
//     known list and reports its age; WithCacheDir keeps the lists on disk
//     for a process that starts while the cluster is down; an update that
//     would leave a service with no healthy instance is held for a grace
//     period (WithEmptyListGrace) and logged. A service nobody subscribes
//     to or looks up for a while (WithCacheIdleTimeout) is let go of, its
//     watch ended, until the next lookup.
//   - Package client/resolver resolves roster:///SERVICE for gRPC from the
//     cache, package client/balancer balances over the result (and over
//     anything else, as a plain Picker), and package client/microregistry
//     puts the client behind go-micro's registry interface.
//
// The request and response types are the generated ones from
// github.com/roster-registry/roster/proto/roster/v1.
package client

// Package client is Roster's Go SDK: a multi-endpoint gRPC client for the
// registry and cluster APIs.
//
// A Client holds one connection per configured address and sends every call
// to its current endpoint. When that endpoint is unreachable (the connection
// cannot be made within the connect timeout, or the call fails with
// codes.Unavailable) the client moves on to the next address and, for calls
// that are safe to repeat, retries there: reads, Heartbeat, and the
// idempotent writes Register, Deregister and SetMaintenance. Each address is
// tried at most once per call, with a short backoff in between, and the
// caller's context bounds everything.
//
// Two long-lived helpers build on that:
//
//   - Client.Watch returns an iterator of WatchResponse values that survives
//     stream failures: it reconnects (to the next endpoint when the current
//     one is down) and resumes from the last revision it fully delivered, so
//     the caller sees neither a gap nor a repeat.
//   - Client.KeepAlive starts a Session that renews the leases of a set of
//     instances over one Registry.KeepAlive stream and reports leases lost
//     and restored on a channel.
//
// The request and response types are the generated ones from
// github.com/roster-registry/roster/proto/roster/v1.
package client

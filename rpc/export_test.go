package rpc

import "time"

// WatchHooks are test hooks on the WatchMany group readers of a Server;
// nil fields are skipped.
type WatchHooks struct {
	// BeforePark runs as a caught-up watch at pos is about to park.
	BeforePark func(pos uint64)
	// AfterPass runs after each pass of a group, with the head it took
	// before the pass.
	AfterPass func(head uint64)
	// BeforeQueue runs in a pass that has made messages for n watches,
	// before the group tells the stream's sender of them.
	BeforeQueue func(n int)
	// BeforePass runs before each pass of a group.
	BeforePass func()
	// SenderWaits runs when a stream's sender, with messages to send,
	// waits for a watch to reach the head.
	SenderWaits func()
	// AheadWait runs when a watch whose start is beyond the node's head
	// begins to wait for it.
	AheadWait func(start, head uint64)
	// AheadTimer replaces the timer bounding that wait.
	AheadTimer func(d time.Duration) <-chan time.Time
}

// SetWatchHooks installs h on s (the zero WatchHooks removes them).
func SetWatchHooks(s *Server, h WatchHooks) {
	s.watch.hooks.Store(&watchHooks{beforePark: h.BeforePark, afterPass: h.AfterPass, beforeQueue: h.BeforeQueue,
		beforePass: h.BeforePass, senderWaits: h.SenderWaits, aheadWait: h.AheadWait, aheadTimer: h.AheadTimer})
}

// ReadHooks are test hooks of a Server's blocking reads; nil fields are
// skipped.
type ReadHooks struct {
	// WaitTimer replaces the timer of a blocking GetService's wait.
	WaitTimer func(wait time.Duration) <-chan time.Time
	// Waiting runs each time a blocking GetService is about to wait.
	Waiting func(svcRev uint64)
}

// SetReadHooks installs h on s (the zero ReadHooks removes them).
func SetReadHooks(s *Server, h ReadHooks) {
	s.readHooks.Store(&readHooks{waitTimer: h.WaitTimer, waiting: h.Waiting})
}

// TokenHooks are test hooks of the calls a Server ends once their token is
// gone; nil fields are skipped.
type TokenHooks struct {
	// BeforeAdd runs as a stream or blocking read whose token was resolved
	// is about to be added to them.
	BeforeAdd func()
	// Passed runs after each look at them, with the applied index of the
	// state looked at.
	Passed func(applied uint64)
	// AwaitLeader runs as a token lookup that missed on a leader not yet
	// through its barrier starts waiting for it.
	AwaitLeader func()
}

// SetTokenHooks installs h on s (the zero TokenHooks removes them).
func SetTokenHooks(s *Server, h TokenHooks) {
	s.tokenCalls.hooks.Store(&tokenHooks{beforeAdd: h.BeforeAdd, passed: h.Passed, awaitLeader: h.AwaitLeader})
}

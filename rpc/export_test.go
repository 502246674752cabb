package rpc

// SetWatchHooks installs test hooks on s's WatchMany group readers:
// beforePark runs as a caught-up watch at pos is about to park, afterPass
// after each pass of a group with the head it took before the pass. Either
// may be nil.
func SetWatchHooks(s *Server, beforePark func(pos uint64), afterPass func(head uint64)) {
	s.watch.hooks.Store(&watchHooks{beforePark: beforePark, afterPass: afterPass})
}

package cluster

import "time"

// SetTestHookPromote sets testHookPromote for the external tests and
// returns how to clear it.
func SetTestHookPromote(f func(id string, healthyFor time.Duration)) func() {
	testHookPromote = f
	return func() { testHookPromote = nil }
}

package cluster

import "time"

// SetAutopilotHooks sets the autopilot test hooks for the external tests
// and returns how to clear them.
func SetAutopilotHooks(round func(minStable time.Duration), promote func(id string, healthyFor time.Duration)) func() {
	testAutopilotHooks.Store(&autopilotHooks{round: round, promote: promote})
	return func() { testAutopilotHooks.Store(nil) }
}

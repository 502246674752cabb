package httpapi

import "time"

// SetHeartbeatIndexAge sets how old an ID index check updates may trust
// (heartbeatIndexAge) and returns what restores it.
func SetHeartbeatIndexAge(d time.Duration) func() {
	old := heartbeatIndexAge
	heartbeatIndexAge = d
	return func() { heartbeatIndexAge = old }
}

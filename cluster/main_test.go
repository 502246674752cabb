package cluster

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// node a test starts must leave nothing behind when it shuts down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

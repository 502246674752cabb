package main

import (
	"encoding/json"
	"testing"

	"github.com/roster-registry/roster/internal/testcluster"
)

// TestBenchWatchAgainstACluster runs roster bench watch against a real
// node, its watchers sharing a WatchMany stream per connection, then each
// on a Watch stream of its own: every write reaches every watcher.
func TestBenchWatchAgainstACluster(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	ctx := testContext(t)
	nd := c.Leader()
	for _, own := range []bool{false, true} {
		args := []string{"bench", "watch", "--watchers", "30", "--conns", "2", "--count", "10", "--duration", "0", "-o", "json"}
		if own {
			args = append(args, "--own-streams")
		}
		code, stdout, stderr := runCLI(t, ctx, nd.Addr, args...)
		if code != 0 {
			t.Fatalf("own streams %v: exit %d: %s", own, code, stderr)
		}
		var res watchResult
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("bad JSON %q: %v", stdout, err)
		}
		if res.OwnStreams != own || res.Watchers != 30 || res.Ops != 10 || res.Errors != 0 || res.WatchersFailed != 0 || res.Deliveries != 30*10 {
			t.Fatalf("own streams %v: result %+v", own, res)
		}
	}
}

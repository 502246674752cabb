package client

import (
	"context"
	"sync/atomic"
	"testing"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestABehindWatchIsCancelledOnce: a watch of a shared stream whose caller
// falls behind is cancelled on the server once, when it falls behind, and
// not again when its caller reads again and the watch resumes; the watch
// sharing its stream goes on, and the resumed one misses nothing.
func TestABehindWatchIsCancelledOnce(t *testing.T) {
	st := newFakeState()
	st.appendRevisions(1, 1)
	f := startFake(t, st)
	f.watchMany = true
	c := newTestClient(t, f.addr)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()

	// follow ranges over a watch of web, recording the last revision it
	// saw; hold, when set, stops it after its first message until closed.
	follow := func(last *atomic.Uint64, hold chan struct{}) {
		go func() {
			for resp, err := range c.Watch(ctx, &rosterv1.WatchRequest{Service: "web"}) {
				if err != nil {
					return
				}
				last.Store(resp.GetRevision())
				if hold != nil {
					<-hold
					hold = nil
				}
			}
		}()
	}
	var fast, slow atomic.Uint64
	follow(&fast, nil)
	waitFor(t, "the first watch's first message", func() bool { return fast.Load() == 1 })
	release := make(chan struct{})
	follow(&slow, release)
	waitFor(t, "the second watch's first message", func() bool { return slow.Load() == 1 })

	// More messages than a watch holds unread: the held one falls behind.
	const last = 2 * watchBuffer
	st.appendRevisions(2, last)
	waitFor(t, "the held watch cancelled", func() bool { return f.cancels()[2] == 1 })
	waitFor(t, "the first watch at the last revision", func() bool { return fast.Load() == last })
	close(release)
	// The resumed watch is created after anything its end sent (one
	// stream, in order): once it has delivered, every cancel is counted.
	waitFor(t, "the held watch, resumed, at the last revision", func() bool { return slow.Load() == last })
	if n := f.count("WatchMany"); n != 1 {
		t.Fatalf("%d WatchMany streams, want the watches on one", n)
	}
	for id, n := range f.cancels() {
		if n != 1 {
			t.Fatalf("watch %d cancelled %d times, want once (cancels: %v)", id, n, f.cancels())
		}
	}
}

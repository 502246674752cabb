package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// watchLog collects what one client.Watch yields.
type watchLog struct {
	mu     sync.Mutex
	ids    []string // "PUT a", "DELETE a", in order, less the reset
	resets int
	err    error
	done   chan struct{}
}

func startWatch(ctx context.Context, c *client.Client, req *rosterv1.WatchRequest) *watchLog {
	l := &watchLog{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for resp, err := range c.Watch(ctx, req) {
			l.mu.Lock()
			if err != nil {
				l.err = err
				l.mu.Unlock()
				return
			}
			if resp.Reset_ {
				l.resets++
			}
			for _, e := range resp.Events {
				if !resp.Reset_ {
					l.ids = append(l.ids, e.Type.String()[len("TYPE_"):]+" "+e.Instance.GetId())
				}
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *watchLog) seen() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.ids), l.resets
}

// TestWatchesShareOneStream: the watches of one client to one endpoint go
// over one WatchMany stream, each seeing what it asked for; a watch the
// server refuses ends with the refusal and the others go on; a client
// built WithoutWatchMany opens a Watch stream per watch.
func TestWatchesShareOneStream(t *testing.T) {
	tc := testcluster.New(t, 1, testcluster.Options{})
	nd := tc.Leader()
	ctx, cancel := context.WithCancel(testcluster.Ctx(t))
	defer cancel()
	c := newClient(t, []string{nd.Addr})
	web1 := startWatch(ctx, c, &rosterv1.WatchRequest{Service: "web", OmitPrevInstance: true})
	web2 := startWatch(ctx, c, &rosterv1.WatchRequest{Service: "web", OmitPrevInstance: true})
	api := startWatch(ctx, c, &rosterv1.WatchRequest{Service: "api"})
	bad := startWatch(ctx, c, &rosterv1.WatchRequest{Service: "not a service!"})
	<-bad.done
	if status.Code(bad.err) != codes.InvalidArgument {
		t.Fatalf("a watch of an invalid service ended with %v, want InvalidArgument", bad.err)
	}
	tc.Eventually("three watches on one stream", waitLong, func() bool {
		st := nd.Server.WatchStats()
		return st.Active == 3 && st.Streams == 1
	})
	for _, l := range []*watchLog{web1, web2, api} {
		tc.Eventually("each watch has its reset", waitLong, func() bool { _, n := l.seen(); return n == 1 })
	}

	register(t, tc, &rosterv1.Instance{Service: "web", Id: "a", Address: "10.0.0.1", Port: 80})
	register(t, tc, &rosterv1.Instance{Service: "api", Id: "x", Address: "10.0.0.2", Port: 80})
	deregister(t, tc, "web", "a")
	want := map[*watchLog]string{web1: "[PUT a DELETE a]", web2: "[PUT a DELETE a]", api: "[PUT x]"}
	for l, w := range want {
		tc.Eventually("each watch sees its service's events", waitLong, func() bool { s, _ := l.seen(); return s == w })
	}

	own := newClient(t, []string{nd.Addr}, client.WithoutWatchMany())
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	for range 2 {
		startWatch(octx, own, &rosterv1.WatchRequest{Service: "web"})
	}
	tc.Eventually("two more watches, each on a stream of its own", waitLong, func() bool {
		st := nd.Server.WatchStats()
		return st.Active == 5 && st.Streams == 3
	})
	ocancel()
	cancel()
	for _, l := range []*watchLog{web1, web2, api} {
		<-l.done
	}
	tc.Eventually("every stream closed once its watches ended", waitLong, func() bool {
		st := nd.Server.WatchStats()
		return st.Active == 0 && st.Streams == 0
	})
	for l, w := range want {
		if s, n := l.seen(); s != w || n != 1 {
			t.Fatalf("a watch saw %s after %d resets, want %s after one", s, n, w)
		}
	}
}

// TestASlowWatchDoesNotHoldUpTheOthers: a caller that stops reading one
// watch of a shared stream holds up neither the stream nor the client's
// other watches; once it reads again its watch resumes, with nothing lost
// or repeated.
func TestASlowWatchDoesNotHoldUpTheOthers(t *testing.T) {
	tc := testcluster.New(t, 1, testcluster.Options{})
	nd := tc.Leader()
	ctx, cancel := context.WithCancel(testcluster.Ctx(t))
	defer cancel()
	c := newClient(t, []string{nd.Addr})
	fast := startWatch(ctx, c, &rosterv1.WatchRequest{Service: "web"})
	release := make(chan struct{})
	slow := &watchLog{done: make(chan struct{})}
	go func() {
		defer close(slow.done)
		for resp, err := range c.Watch(ctx, &rosterv1.WatchRequest{Service: "web"}) {
			if err != nil {
				slow.mu.Lock()
				slow.err = err
				slow.mu.Unlock()
				return
			}
			if resp.Reset_ {
				slow.mu.Lock()
				slow.resets++
				slow.mu.Unlock()
				<-release // reads nothing more until released
				continue
			}
			slow.mu.Lock()
			for _, e := range resp.Events {
				slow.ids = append(slow.ids, e.Type.String()[len("TYPE_"):]+" "+e.Instance.GetId())
			}
			slow.mu.Unlock()
		}
	}()
	tc.Eventually("both watches on one stream, each with its reset", waitLong, func() bool {
		st := nd.Server.WatchStats()
		_, f := fast.seen()
		_, s := slow.seen()
		return st.Active == 2 && st.Streams == 1 && f == 1 && s == 1
	})
	// Three times the messages a watch may hold unread: one a write.
	const writes = 3 * 64
	var want []string
	for i := range writes {
		id := fmt.Sprintf("i%d", i)
		if _, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
			Service: "web", Id: id, Address: "10.0.0.1", Port: 80}}); err != nil {
			t.Fatal(err)
		}
		want = append(want, "PUT "+id)
	}
	tc.Eventually("the reading watch sees every write while the other is held", waitLong, func() bool {
		s, _ := fast.seen()
		return s == fmt.Sprint(want)
	})
	if s, _ := slow.seen(); s != "[]" {
		t.Fatalf("the held watch saw %s before it was released", s)
	}
	close(release)
	tc.Eventually("the held watch, released, sees every write once, in order", waitLong, func() bool {
		s, _ := slow.seen()
		return s == fmt.Sprint(want)
	})
	if slow.err != nil || fast.err != nil {
		t.Fatalf("watches ended: %v, %v", slow.err, fast.err)
	}
}

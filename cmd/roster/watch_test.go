package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestWatchFailsWhenNothingAnswers: a watch that no endpoint answers
// within --timeout fails with one line naming the last error, as every
// other command does against an address where nothing listens.
func TestWatchFailsWhenNothingAnswers(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	var stdout, stderr syncBuffer
	code := run(testContext(t), []string{"--addr", dead, "--timeout", "300ms", "watch", "web"}, &stdout, &stderr, func(string) string { return "" })
	if code != exitError {
		t.Fatalf("watch exit %d, want %d; stderr %q", code, exitError, stderr.String())
	}
	lines := stderr.lines()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "roster: watch: no endpoint answered within 300ms; the last error: "+dead+": unavailable: ") ||
		!strings.Contains(lines[0], "connection refused") {
		t.Fatalf("stderr %q, want one line naming the refused connection to %s", stderr.String(), dead)
	}
	if stdout.String() != "" {
		t.Fatalf("stdout %q, want nothing", stdout.String())
	}
}

// connTracker is a listener that can break every connection it accepted.
type connTracker struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connTracker) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *connTracker) breakAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// TestWatchReportsReconnects: once a watch has started, a broken stream is
// printed on stderr and the watch goes on, on the same terminal.
func TestWatchReportsReconnects(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tracker := &connTracker{Listener: lis}
	f := startFakeOn(t, tracker)
	f.mu.Lock()
	f.watch = []*rosterv1.WatchResponse{{Reset_: true, Revision: 5}}
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	done, stdout, stderr := runInBackground(ctx, "--addr", f.addr, "--timeout", "5s", "watch", "payments")
	waitFor(t, "the reset", func() bool { return len(stdout.lines()) >= 1 })
	tracker.breakAll()
	waitFor(t, "the reconnect line", func() bool { return len(stderr.lines()) >= 1 })
	waitFor(t, "the watch to resume", func() bool { return len(f.calls("Watch")) >= 2 })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exit %d, stderr %q", code, stderr.String())
	}
	line := stderr.lines()[0]
	if !strings.HasPrefix(line, "watch stream to "+f.addr+" broken: ") || !strings.HasSuffix(line, "; reconnecting") {
		t.Fatalf("stderr line %q, want \"watch stream to %s broken: …; reconnecting\"", line, f.addr)
	}
	if got := f.calls("Watch")[1].(*rosterv1.WatchRequest).GetStartRevision(); got != 5 {
		t.Fatalf("resumed from %d, want 5", got)
	}
}

// TestWatchFromRevisionAsksForBookmarks: a watch from a revision has no
// reset to start with, so it asks for bookmarks often enough that a quiet
// service still answers within --timeout.
func TestWatchFromRevisionAsksForBookmarks(t *testing.T) {
	f := startFake(t)
	f.mu.Lock()
	f.watch = []*rosterv1.WatchResponse{{Progress: true, Revision: 8}}
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	done, _, stderr := runInBackground(ctx, "--addr", f.addr, "--timeout", "2s", "watch", "payments", "--from-revision", "8")
	waitFor(t, "the watch request", func() bool { return len(f.calls("Watch")) >= 1 })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exit %d, stderr %q", code, stderr.String())
	}
	if got := f.calls("Watch")[0].(*rosterv1.WatchRequest).GetProgressInterval().AsDuration(); got != time.Second {
		t.Fatalf("progress_interval %s, want 1s (half of --timeout)", got)
	}
}

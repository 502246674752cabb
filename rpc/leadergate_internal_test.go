package rpc

import (
	"testing"
	"time"
)

// TestLeaderGateCountsTheLeaderlessSpell: the gate cancels its context only
// once the node has been without a leader for the whole timeout, and a
// leader seen again, by a sample or by a stream opening, starts a new one.
func TestLeaderGateCountsTheLeaderlessSpell(t *testing.T) {
	g := newLeaderGate(time.Second)
	t0 := time.Unix(1000, 0)
	var since time.Time
	ctx, ok := g.open(true)
	if !ok {
		t.Fatal("refused with a leader")
	}
	if _, ok := g.open(false); ok {
		t.Fatal("a stream opened on a node without a leader")
	}
	g.observe(false, t0, &since)
	g.observe(false, t0.Add(999*time.Millisecond), &since)
	if ctx.Err() != nil {
		t.Fatal("canceled before the node had been leaderless for the timeout")
	}
	g.observe(true, t0.Add(1500*time.Millisecond), &since)
	g.observe(false, t0.Add(1600*time.Millisecond), &since)
	g.observe(false, t0.Add(2500*time.Millisecond), &since)
	if ctx.Err() != nil {
		t.Fatal("a leader seen in between did not restart the count")
	}
	g.observe(false, t0.Add(2600*time.Millisecond), &since)
	if ctx.Err() == nil {
		t.Fatal("not canceled after the timeout without a leader")
	}
	// A stream opening with a leader known before the next sample.
	fresh, ok := g.open(true)
	if !ok || fresh.Err() != nil {
		t.Fatalf("a stream opening once a leader is back got a canceled context (ok %v)", ok)
	}
	g.observe(true, t0.Add(2700*time.Millisecond), &since)
	if fresh.Err() != nil {
		t.Fatal("a sample with a leader canceled the context")
	}
}

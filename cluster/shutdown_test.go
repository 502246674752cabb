package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

// TestLeadershipNoticeAtShutdownStartsNoLeaderLoop: a "leading" notice that
// monitorLeadership takes only once Shutdown has stopped leading and
// stopped Raft must not start a leader loop, which would retry its Barrier
// forever on a node that is gone.
func TestLeadershipNoticeAtShutdownStartsNoLeaderLoop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	noticed := make(chan *Node, 1)
	testHookLeadershipNotice = func(n *Node, leading bool) {
		if !leading {
			return
		}
		select {
		case noticed <- n:
		default:
			return
		}
		// Hold the notice until Shutdown has stopped leading and Raft.
		<-n.shutdownCh
		deadline := time.Now().Add(10 * time.Second)
		for n.raft.State() != raft.Shutdown && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	defer func() { testHookLeadershipNotice = nil }()

	_, tr := raft.NewInmemTransport(raft.ServerAddress("n1.inmem:7421"))
	cfg := Config{NodeID: "n1", InMemory: true, Transport: tr, Bootstrap: true, APIAddr: "127.0.0.1:1"}
	cfg.UseFastTimeouts()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-noticed:
	case <-time.After(10 * time.Second):
		_ = n.Shutdown()
		t.Fatal("no leadership notice")
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if n.LeaderReady() {
		t.Fatal("leader ready after shutdown")
	}
}

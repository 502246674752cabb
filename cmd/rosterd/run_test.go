package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/errtext"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestJoinLoopRejoinsARemovedNode: a node removed with remove-node keeps
// the others in its own configuration, but not itself; --join adds it
// again, while a node that is still a member is left alone.
func TestJoinLoopRejoinsARemovedNode(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	r1 := c.Join("r1", false, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader := c.WaitLeader()
	logger := hclog.NewNullLogger()
	inConfig := func(nd *cluster.Node, id string) bool {
		ms, err := nd.Members()
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.NodeID == id {
				return true
			}
		}
		return false
	}

	// A member: nothing is sent (the address does not answer).
	member, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	joinLoop(member, logger, &flags{join: "127.0.0.1:1"}, r1.Node)
	if member.Err() != nil {
		t.Fatal("joinLoop of a member tried to join")
	}

	if _, err := leader.Cluster().RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: "r1"}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("r1 to apply its removal", 10*time.Second, func() bool { return !inConfig(r1.Node, "r1") })
	joinLoop(ctx, logger, &flags{join: leader.Addr, nonVoter: true}, r1.Node)
	c.Eventually("the removed node to be in the leader's configuration again", 10*time.Second, func() bool {
		return inConfig(c.WaitLeader().Node, "r1")
	})

	// Removed while cut off, so it never learns of it (as a node that was
	// down): it still lists itself, hears from no leader, and joins after
	// joinWaitForLeader. Its Raft traffic stays cut; the join is a gRPC
	// call, which the cut leaves alone.
	defer func(d time.Duration) { joinWaitForLeader = d }(joinWaitForLeader)
	joinWaitForLeader = time.Second
	c.Eventually("r1 to hear from the leader again and to list itself", 10*time.Second, func() bool {
		id, _ := r1.Node.Leader()
		return id != "" && inConfig(r1.Node, "r1")
	})
	c.Partition(r1)
	c.Eventually("r1 to lose its leader", 10*time.Second, func() bool { id, _ := r1.Node.Leader(); return id == "" })
	if _, err := c.WaitLeader().Cluster().RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: "r1"}); err != nil {
		t.Fatal(err)
	}
	c.Eventually("the leader to drop r1", 10*time.Second, func() bool { return !inConfig(c.WaitLeader().Node, "r1") })
	if !inConfig(r1.Node, "r1") {
		t.Fatal("r1 learned of its removal while cut off")
	}
	joinLoop(ctx, logger, &flags{join: c.WaitLeader().Addr, nonVoter: true}, r1.Node)
	c.Eventually("a node removed while cut off to be in the leader's configuration again", 10*time.Second, func() bool {
		return inConfig(c.WaitLeader().Node, "r1")
	})
	c.Heal()
}

// TestAListenerThatStopsIsAFailure: rosterd shuts down when a listener
// stops serving, and exits with its error, not 0 as after a signal, so a
// supervisor that restarts on failure restarts it.
func TestAListenerThatStopsIsAFailure(t *testing.T) {
	logger := hclog.NewNullLogger()
	serveErr := make(chan error, 1)
	serveErr <- errors.New("accept tcp 127.0.0.1:7420: use of closed network connection")
	if err := waitForStop(context.Background(), logger, serveErr, nil, raftRunning{}); err == nil || !strings.Contains(err.Error(), "a listener stopped") {
		t.Fatalf("a listener that stopped: %v; want its error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitForStop(ctx, logger, make(chan error), nil, raftRunning{}); err != nil {
		t.Fatalf("a signal: %v; want nil", err)
	}
}

// refusingCluster answers every Join with code.
type refusingCluster struct {
	rosterv1.UnimplementedClusterServer
	code  codes.Code
	calls atomic.Int32
}

func (r *refusingCluster) Join(context.Context, *rosterv1.JoinRequest) (*rosterv1.JoinResponse, error) {
	r.calls.Add(1)
	return nil, status.Error(r.code, "refused by the test")
}

// loneNode is a node that is in no cluster and waits to be joined.
func loneNode(t *testing.T) *cluster.Node {
	t.Helper()
	_, tr := raft.NewInmemTransport("n9.inmem:7421")
	cfg := cluster.Config{NodeID: "n9", InMemory: true, APIAddr: "127.0.0.1:1", Transport: tr, Logger: hclog.NewNullLogger()}
	cfg.UseFastTimeouts()
	node, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Shutdown() })
	return node
}

// syncBuffer is a log output the test can read while joinLoop writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestJoinLoopStopsOnAPermanentRefusal: a join the cluster refuses for a
// reason asking again cannot change ends joinLoop with a one-line error
// (rosterd then exits 1); one that may pass is retried until ctx ends.
func TestJoinLoopStopsOnAPermanentRefusal(t *testing.T) {
	node := loneNode(t)
	for _, tt := range []struct {
		code      codes.Code
		permanent bool
	}{
		{codes.InvalidArgument, true},
		{codes.PermissionDenied, true},
		{codes.Unauthenticated, true},
		{codes.FailedPrecondition, false},
		{codes.Unavailable, false},
	} {
		t.Run(tt.code.String(), func(t *testing.T) {
			fake := &refusingCluster{code: tt.code}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			g := grpc.NewServer()
			rosterv1.RegisterClusterServer(g, fake)
			go func() { _ = g.Serve(lis) }()
			defer g.Stop()

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err = joinLoop(ctx, hclog.NewNullLogger(), &flags{join: lis.Addr().String()}, node)
			if !tt.permanent {
				if err != nil || fake.calls.Load() < 2 {
					t.Fatalf("joinLoop = %v after %d calls; want it to retry until ctx ends", err, fake.calls.Load())
				}
				return
			}
			if err == nil || ctx.Err() != nil {
				t.Fatalf("joinLoop = %v (ctx %v); want an error before ctx ends", err, ctx.Err())
			}
			want := "refused to add node \"n9\" (" + errtext.CodeWords(tt.code) + "): refused by the test"
			if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") || fake.calls.Load() != 1 {
				t.Fatalf("joinLoop = %q after %d calls; want one line with %q after one call", err, fake.calls.Load(), want)
			}
		})
	}
}

// TestJoinLoopHintsAtTLS: a plaintext node joining a TLS cluster logs
// the CLI's hint, not only "error reading server preface: EOF".
func TestJoinLoopHintsAtTLS(t *testing.T) {
	node := loneNode(t)
	// A TLS server reads the HTTP/2 preface as a bad record and hangs up;
	// so does this one.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			_, _ = io.ReadFull(c, make([]byte, 5))
			c.Close()
		}
	}()
	var out syncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Warn})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := joinLoop(ctx, logger, &flags{join: lis.Addr().String()}, node); err != nil {
		t.Fatalf("joinLoop = %v; want retries until ctx ends", err)
	}
	if log := out.String(); !strings.Contains(log, "join failed; retrying") || !strings.Contains(log, "the server expects TLS") {
		t.Fatalf("log has no TLS hint:\n%s", log)
	}
}

// TestWaitForStopEndsOnARefusedJoin: a join refused for good stops the
// node with that error (exit 1), as a stopped listener does.
func TestWaitForStopEndsOnARefusedJoin(t *testing.T) {
	joinErr := make(chan error, 1)
	joinErr <- errors.New("127.0.0.1:7420 refused to add node \"n9\" (permission denied): no")
	err := waitForStop(context.Background(), hclog.NewNullLogger(), make(chan error), joinErr, raftRunning{})
	if err == nil || !strings.Contains(err.Error(), "refused to add node") {
		t.Fatalf("waitForStop = %v; want the join's error", err)
	}
}

// raftRunning is a raftWatch whose Raft never stops.
type raftRunning struct{}

func (raftRunning) RaftStopped() <-chan struct{} { return nil }
func (raftRunning) RaftStopReason() error        { return nil }

// TestARemovedLeaderStopsWithAFailure: a leader removed from the cluster
// shuts its Raft down on its own; rosterd notices, says the node was
// removed, and exits with an error (not 0, as after a signal), so a
// supervisor restarts it and --join adds it again. Its status says it was
// removed, and a node that was not removed is not.
func TestARemovedLeaderStopsWithAFailure(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader := c.WaitLeader()
	if _, err := leader.Cluster().RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: leader.ID}); err != nil {
		t.Fatal(err)
	}
	err := waitForStop(ctx, hclog.NewNullLogger(), make(chan error), nil, leader.Node)
	t.Logf("waitForStop: %v", err)
	if !errors.Is(err, cluster.ErrRemoved) || !strings.Contains(err.Error(), "restart it with --join") {
		t.Fatalf("a removed leader: %v; want an error saying it was removed", err)
	}
	if !leader.Node.Removed() {
		t.Fatal("the removed leader does not know it was removed")
	}
	for _, nd := range c.Nodes {
		if nd != leader && nd.Node.Removed() {
			t.Fatalf("%s says it was removed; it was not", nd.ID)
		}
	}
}

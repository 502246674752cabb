package raft

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// gateTransport wraps a leader's transport so that a test decides when its
// heartbeats reach the followers and when their answers come back.
// Replication (AppendEntries that carry a commit index or entries) always
// passes, so followers keep hearing from the leader and the leader keeps its
// lease while heartbeats are held.
type gateTransport struct {
	*InmemTransport

	mu   sync.Mutex
	cond *sync.Cond
	// mode applies to heartbeats that start now.
	mode gateMode
	// held counts heartbeats answered and held, blocked those not yet sent,
	// passed those answered and returned, by target.
	held, blocked, passed map[ServerID]int
	release, open         chan struct{}
	// blockOnly names the targets gateBlockTo blocks.
	blockOnly map[ServerID]bool
}

type gateMode int

const (
	gatePass    gateMode = iota
	gateHold             // send, then hold the answer until release closes
	gateBlock            // hold the request until open closes
	gateBlockTo          // gateBlock for the targets in blockOnly, pass for the others
)

func newGate(t *InmemTransport) *gateTransport {
	g := &gateTransport{InmemTransport: t, held: map[ServerID]int{}, blocked: map[ServerID]int{},
		passed: map[ServerID]int{}, release: make(chan struct{}), open: make(chan struct{})}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func isHeartbeat(a *AppendEntriesRequest) bool {
	return len(a.Entries) == 0 && a.PrevLogEntry == 0 && a.PrevLogTerm == 0 && a.LeaderCommitIndex == 0
}

// AppendEntriesPipeline is refused, so that replication goes through
// AppendEntries, one request at a time.
func (g *gateTransport) AppendEntriesPipeline(ServerID, ServerAddress) (AppendPipeline, error) {
	return nil, ErrPipelineReplicationNotSupported
}

func (g *gateTransport) AppendEntries(id ServerID, target ServerAddress, args *AppendEntriesRequest, resp *AppendEntriesResponse) error {
	if !isHeartbeat(args) {
		return g.InmemTransport.AppendEntries(id, target, args, resp)
	}
	g.mu.Lock()
	mode, release, open := g.mode, g.release, g.open
	if mode == gateBlockTo && !g.blockOnly[id] {
		mode = gatePass
	}
	g.mu.Unlock()
	switch mode {
	case gateHold:
		err := g.InmemTransport.AppendEntries(id, target, args, resp)
		g.count(g.held, id)
		<-release
		return err
	case gateBlock, gateBlockTo:
		g.count(g.blocked, id)
		<-open
	}
	err := g.InmemTransport.AppendEntries(id, target, args, resp)
	g.count(g.passed, id)
	return err
}

func (g *gateTransport) count(m map[ServerID]int, id ServerID) {
	g.mu.Lock()
	m[id]++
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *gateTransport) setMode(m gateMode) {
	g.mu.Lock()
	g.mode = m
	g.mu.Unlock()
}

// waitFor waits until ok holds of the counts, failing the test after a
// generous bound instead of hanging.
func (g *gateTransport) waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	timer := time.AfterFunc(30*time.Second, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(30 * time.Second)
	g.mu.Lock()
	defer g.mu.Unlock()
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		g.cond.Wait()
	}
}

type gatedCluster struct {
	rafts  []*Raft
	gates  []*gateTransport
	leader int
}

// startGated starts voters+nonVoters nodes on in-memory transports, each
// wrapped in a gate, with the first voters as voters, and waits for a
// leader that every voter follows.
func startGated(t *testing.T, voters, nonVoters int) *gatedCluster {
	t.Helper()
	n := voters + nonVoters
	c := &gatedCluster{leader: -1}
	var trans []*InmemTransport
	var servers []Server
	for i := 0; i < n; i++ {
		addr, tr := NewInmemTransport(ServerAddress(fmt.Sprintf("node%d", i)))
		trans = append(trans, tr)
		s := Server{ID: ServerID(fmt.Sprintf("node%d", i)), Address: addr, Suffrage: Voter}
		if i >= voters {
			s.Suffrage = Nonvoter
		}
		servers = append(servers, s)
	}
	for i := range trans {
		for j := range trans {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j])
			}
		}
	}
	for i := 0; i < n; i++ {
		conf := DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.HeartbeatTimeout = 200 * time.Millisecond
		conf.ElectionTimeout = 200 * time.Millisecond
		conf.LeaderLeaseTimeout = 200 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.Logger = newTestLogger(t)
		logs, snaps := NewInmemStore(), NewInmemSnapshotStore()
		g := newGate(trans[i])
		if err := BootstrapCluster(conf, logs, logs, snaps, g, Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		r, err := NewRaft(conf, &MockFSM{}, logs, logs, snaps, g)
		if err != nil {
			t.Fatal(err)
		}
		c.rafts = append(c.rafts, r)
		c.gates = append(c.gates, g)
	}
	t.Cleanup(func() {
		for _, g := range c.gates {
			g.mu.Lock()
			select {
			case <-g.release:
			default:
				close(g.release)
			}
			select {
			case <-g.open:
			default:
				close(g.open)
			}
			g.mu.Unlock()
		}
		for _, r := range c.rafts {
			_ = r.Shutdown().Error()
		}
	})
	poll(t, "a leader that commits a write", func() bool {
		for i, r := range c.rafts {
			// A write committed in its term: every voter follows it.
			if r.State() == Leader && r.Apply([]byte("x"), 5*time.Second).Error() == nil {
				c.leader = i
				return true
			}
		}
		return false
	})
	return c
}

// poll waits until cond holds, failing the test after a generous bound
// instead of hanging.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitRegistered waits until the verification waits on the replication to
// each of ids (registered: a heartbeat sent from now on may answer it), or
// has been answered already. The replication map is read, never written,
// here; the leader loop writes it only when the configuration changes.
func waitRegistered(t *testing.T, r *Raft, f *pending, ids ...ServerID) {
	t.Helper()
	for _, id := range ids {
		repl := r.leaderState.replState[id]
		if repl == nil {
			t.Fatalf("no replication to %s", id)
		}
		poll(t, fmt.Sprintf("the verification to wait on %s", id), func() bool {
			repl.notifyLock.Lock()
			defer repl.notifyLock.Unlock()
			return len(repl.notify) > 0 || f.isDone()
		})
	}
}

// pending is a verification in flight. A future's Error may be called by
// one goroutine only; pending's is its caller.
type pending struct {
	done chan struct{}
	err  error
}

func await(f Future) *pending {
	p := &pending{done: make(chan struct{})}
	go func() {
		p.err = f.Error()
		close(p.done)
	}()
	return p
}

func (p *pending) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// answered reports whether the verification has answered, giving it a
// moment to deliver an answer it already has.
func (p *pending) answered() (error, bool) {
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(50 * time.Millisecond):
		return nil, false
	}
}

// wait returns the verification's answer.
func (p *pending) wait() error {
	<-p.done
	return p.err
}

// A verification counts only answers to heartbeats sent after it began. An
// answer to an earlier one says nothing about who leads now: a leader paused
// and deposed after sending it would find it waiting when it resumed.
func TestVerifyLeaderIgnoresAnswersToEarlierHeartbeats(t *testing.T) {
	c := startGated(t, 3, 0)
	g, r := c.gates[c.leader], c.rafts[c.leader]
	var followers []ServerID
	for i := range c.rafts {
		if i != c.leader {
			followers = append(followers, ServerID(fmt.Sprintf("node%d", i)))
		}
	}

	// A heartbeat to each follower is sent and answered, and the answer held.
	g.setMode(gateHold)
	g.waitFor(t, "a held heartbeat answer from each follower", func() bool {
		return g.held[followers[0]] > 0 && g.held[followers[1]] > 0
	})
	g.setMode(gateBlock)

	// The verification begins.
	f := await(r.VerifyLeader())
	waitRegistered(t, r, f, followers...)

	// The old answers arrive, and each heartbeat loop sends again.
	close(g.release)
	g.waitFor(t, "the next heartbeat to each follower", func() bool {
		return g.blocked[followers[0]] > 0 && g.blocked[followers[1]] > 0
	})
	if err, done := f.answered(); done {
		t.Fatalf("the verification was answered (%v) before a heartbeat sent after it began was", err)
	}

	// Fresh heartbeats confirm the leader.
	close(g.open)
	if err := f.wait(); err != nil {
		t.Fatalf("verification after fresh heartbeats: %v", err)
	}
}

// Only voters count towards the quorum that confirms a leader: a non-voter
// keeps acknowledging a deposed leader until the new one reaches it.
func TestVerifyLeaderCountsVotersOnly(t *testing.T) {
	c := startGated(t, 3, 2)
	g, r := c.gates[c.leader], c.rafts[c.leader]
	var voters, nonVoters []ServerID
	for i := range c.rafts {
		id := ServerID(fmt.Sprintf("node%d", i))
		switch {
		case i == c.leader:
		case i < 3:
			voters = append(voters, id)
		default:
			nonVoters = append(nonVoters, id)
		}
	}
	g.mu.Lock()
	g.blockOnly = map[ServerID]bool{voters[0]: true, voters[1]: true}
	g.mode = gateBlockTo
	g.mu.Unlock()

	f := await(r.VerifyLeader())
	waitRegistered(t, r, f, voters...)
	// Two more heartbeats answered by each non-voter: at least one of them
	// was sent after the verification began and its answer handled.
	g.mu.Lock()
	n0, n1 := g.passed[nonVoters[0]], g.passed[nonVoters[1]]
	g.mu.Unlock()
	g.waitFor(t, "two heartbeats answered by each non-voter", func() bool {
		return g.passed[nonVoters[0]] >= n0+2 && g.passed[nonVoters[1]] >= n1+2
	})
	if err, done := f.answered(); done {
		t.Fatalf("the verification was answered (%v) while no heartbeat to a voter was", err)
	}

	close(g.open)
	if err := f.wait(); err != nil {
		t.Fatalf("verification after the voters answered: %v", err)
	}
}

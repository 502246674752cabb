package raft

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// contactGate wraps a leader's transport so that a test decides when its
// AppendEntries reach the followers and when their answers come back,
// heartbeats and replication each on their own.
type contactGate struct {
	*InmemTransport

	mu   sync.Mutex
	cond *sync.Cond
	// By kind (kindReplication, kindHeartbeat): the mode for requests that
	// start now, the channels that end a hold and a block, and the counts
	// of requests held, blocked and passed, by target.
	mode                  [2]gateMode
	release, open         [2]chan struct{}
	held, blocked, passed [2]map[ServerID]int
}

const (
	kindReplication = 0
	kindHeartbeat   = 1
)

func newContactGate(t *InmemTransport) *contactGate {
	g := &contactGate{InmemTransport: t}
	g.cond = sync.NewCond(&g.mu)
	for k := range g.mode {
		g.release[k], g.open[k] = make(chan struct{}), make(chan struct{})
		g.held[k], g.blocked[k], g.passed[k] = map[ServerID]int{}, map[ServerID]int{}, map[ServerID]int{}
	}
	return g
}

// AppendEntriesPipeline is refused, so that replication goes through
// AppendEntries, one request at a time.
func (g *contactGate) AppendEntriesPipeline(ServerID, ServerAddress) (AppendPipeline, error) {
	return nil, ErrPipelineReplicationNotSupported
}

func (g *contactGate) AppendEntries(id ServerID, target ServerAddress, args *AppendEntriesRequest, resp *AppendEntriesResponse) error {
	k := kindReplication
	if isHeartbeat(args) {
		k = kindHeartbeat
	}
	g.mu.Lock()
	mode, release, open := g.mode[k], g.release[k], g.open[k]
	g.mu.Unlock()
	switch mode {
	case gateHold:
		err := g.InmemTransport.AppendEntries(id, target, args, resp)
		g.count(g.held[k], id)
		<-release
		return err
	case gateBlock:
		g.count(g.blocked[k], id)
		<-open
	}
	err := g.InmemTransport.AppendEntries(id, target, args, resp)
	g.count(g.passed[k], id)
	return err
}

func (g *contactGate) count(m map[ServerID]int, id ServerID) {
	g.mu.Lock()
	m[id]++
	g.cond.Broadcast()
	g.mu.Unlock()
}

// set sets the mode of both kinds.
func (g *contactGate) set(m gateMode) {
	g.mu.Lock()
	g.mode = [2]gateMode{m, m}
	g.mu.Unlock()
}

// setKind sets the mode of one kind.
func (g *contactGate) setKind(k int, m gateMode) {
	g.mu.Lock()
	g.mode[k] = m
	g.mu.Unlock()
}

// releaseHeld lets the answers held so far through.
func (g *contactGate) releaseHeld() {
	g.mu.Lock()
	for k := range g.release {
		close(g.release[k])
		g.release[k] = make(chan struct{})
	}
	g.mu.Unlock()
}

// openKind lets the requests of kind k blocked so far through, and passes
// those that start from now on.
func (g *contactGate) openKind(k int) {
	g.mu.Lock()
	g.mode[k] = gatePass
	close(g.open[k])
	g.open[k] = make(chan struct{})
	g.mu.Unlock()
}

// openAll lets everything through, now and from now on.
func (g *contactGate) openAll() {
	g.mu.Lock()
	g.mode = [2]gateMode{gatePass, gatePass}
	for k := range g.open {
		close(g.open[k])
		close(g.release[k])
		g.open[k], g.release[k] = make(chan struct{}), make(chan struct{})
	}
	g.mu.Unlock()
}

// waitFor waits until ok holds of the counts, failing the test after a
// generous bound instead of hanging.
func (g *contactGate) waitFor(t *testing.T, what string, ok func() bool) {
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

type contactCluster struct {
	leader    *Raft
	gate      *contactGate // the leader's
	followers []*Raft
	ids       []ServerID // the followers'
	trans     []*InmemTransport
}

// startContactCluster starts node0 as a single voter with leaderConf's
// timeouts, waits until it leads, then adds node1 and node2 as voters with
// followerConf's. Only the leader's transport is gated.
func startContactCluster(t *testing.T, leaderConf, followerConf func(*Config)) *contactCluster {
	t.Helper()
	c := &contactCluster{}
	var rafts []*Raft
	for i := 0; i < 3; i++ {
		_, tr := NewInmemTransport(ServerAddress(fmt.Sprintf("node%d", i)))
		c.trans = append(c.trans, tr)
	}
	for i := range c.trans {
		for j := range c.trans {
			if i != j {
				c.trans[i].Connect(c.trans[j].LocalAddr(), c.trans[j])
			}
		}
	}
	for i, tr := range c.trans {
		conf := DefaultConfig()
		conf.LocalID = ServerID(fmt.Sprintf("node%d", i))
		conf.CommitTimeout = 5 * time.Millisecond
		conf.Logger = newTestLogger(t)
		var trans Transport = tr
		logs, snaps := NewInmemStore(), NewInmemSnapshotStore()
		if i == 0 {
			leaderConf(conf)
			c.gate = newContactGate(tr)
			trans = c.gate
			if err := BootstrapCluster(conf, logs, logs, snaps, trans,
				Configuration{Servers: []Server{{ID: conf.LocalID, Address: tr.LocalAddr(), Suffrage: Voter}}}); err != nil {
				t.Fatal(err)
			}
		} else {
			followerConf(conf)
			c.ids = append(c.ids, conf.LocalID)
		}
		r, err := NewRaft(conf, &MockFSM{}, logs, logs, snaps, trans)
		if err != nil {
			t.Fatal(err)
		}
		rafts = append(rafts, r)
	}
	c.leader, c.followers = rafts[0], rafts[1:]
	t.Cleanup(func() {
		c.gate.openAll()
		for _, r := range rafts {
			_ = r.Shutdown().Error()
		}
	})
	// Leading, and its voters published (runLeader does that just after
	// the state turns Leader; QuorumContact is zero until then).
	poll(t, "node0 to lead", func() bool { return c.leader.State() == Leader && c.leader.leaderVoters.Load() != nil })
	return c
}

// addFollowers adds node1 and node2 as voters and waits until both have
// answered the leader in its term.
func (c *contactCluster) addFollowers(t *testing.T) {
	t.Helper()
	for i, id := range c.ids {
		if err := c.leader.AddVoter(id, c.trans[i+1].LocalAddr(), 0, 5*time.Second).Error(); err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
	}
	poll(t, "both followers to answer the leader", func() bool {
		for _, id := range c.ids {
			if c.replication(t, id).ContactSent().IsZero() {
				return false
			}
		}
		return true
	})
	// Each follower must know both: a follower whose configuration still
	// lacks the other refuses its votes, and the two could never elect a
	// leader without node0.
	poll(t, "both followers to hold the whole configuration", func() bool {
		for _, f := range c.followers {
			fut := f.GetConfiguration()
			if fut.Error() != nil || len(fut.Configuration().Servers) != 1+len(c.ids) {
				return false
			}
		}
		return true
	})
}

// replication returns the leader's replication to a follower. The map is
// read, never written, here; the leader loop writes it only when the
// configuration changes.
func (c *contactCluster) replication(t *testing.T, id ServerID) *followerReplication {
	t.Helper()
	f := c.leader.leaderState.replState[id]
	if f == nil {
		t.Fatalf("no replication to %s", id)
	}
	return f
}

func slowTimeouts(d time.Duration) func(*Config) {
	return func(c *Config) {
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = d, d, d
	}
}

// A single voter is always in contact, a follower never; with followers the
// leader is in contact once a quorum answered it.
func TestQuorumContactOfASingleVoterAndOfFollowers(t *testing.T) {
	c := startContactCluster(t, slowTimeouts(time.Second), slowTimeouts(time.Second))
	before := time.Now()
	if got := c.leader.QuorumContact(); got.Before(before) || got.After(time.Now()) {
		t.Fatalf("a single voter's quorum contact %v, want the moment of the call (after %v)", got, before)
	}
	c.addFollowers(t)
	if got := c.leader.QuorumContact(); got.IsZero() || time.Since(got) > time.Second {
		t.Fatalf("quorum contact of a leader its followers answer: %v", got)
	}
	for i, f := range c.followers {
		if got := f.QuorumContact(); !got.IsZero() {
			t.Fatalf("follower %s reports quorum contact %v", c.ids[i], got)
		}
	}
}

// A follower's contact is when the answered request was sent, not when its
// answer was received: a leader paused after its followers answered finds
// the answers waiting when it resumes, and they say nothing about the time
// of the pause.
func TestQuorumContactIsWhenTheAnsweredRequestWasSent(t *testing.T) {
	c := startContactCluster(t, slowTimeouts(time.Second), slowTimeouts(time.Second))
	c.addFollowers(t)
	g := c.gate

	// Requests are sent and answered; the answers wait, as in a paused
	// process.
	g.set(gateHold)
	g.waitFor(t, "a held answer from each follower", func() bool {
		for _, id := range c.ids {
			if g.held[kindReplication][id]+g.held[kindHeartbeat][id] == 0 {
				return false
			}
		}
		return true
	})
	// Nothing more is sent; the held answers come in after paused.
	g.set(gateBlock)
	paused := time.Now()
	g.releaseHeld()
	// Each follower's heartbeat and replication loops send again (and are
	// blocked) only after handling the answer they waited for.
	g.waitFor(t, "both loops to each follower to send again", func() bool {
		for _, id := range c.ids {
			if g.blocked[kindReplication][id] == 0 || g.blocked[kindHeartbeat][id] == 0 {
				return false
			}
		}
		return true
	})
	for _, id := range c.ids {
		if lc := c.replication(t, id).LastContact(); !lc.After(paused) {
			t.Fatalf("the held answer of %s was received at %v, before the pause ended (%v)", id, lc, paused)
		}
	}
	if c.leader.State() != Leader {
		t.Fatal("node0 stepped down; the test needs it leading")
	}
	if got := c.leader.QuorumContact(); got.IsZero() || got.After(paused) {
		t.Fatalf("quorum contact %v after answers held over a pause that ended at %v, want at or before it", got, paused)
	}

	// Fresh answers are contact again.
	g.openAll()
	poll(t, "quorum contact after the pause", func() bool { return c.leader.QuorumContact().After(paused) })
}

// An answer that refuses the leader's term is no contact. Upstream counts
// it in lastContact, so a deposed leader whose heartbeats reach the new
// term's voters looks in contact; it stays Leader here because its
// replication, which would step it down, is held, and the new leader cannot
// reach it.
func TestQuorumContactIgnoresAnswersInANewerTerm(t *testing.T) {
	c := startContactCluster(t, slowTimeouts(3*time.Second), slowTimeouts(300*time.Millisecond))
	c.addFollowers(t)
	g := c.gate

	// The followers stop hearing from node0 and elect a leader of their
	// own, which cannot reach node0.
	g.set(gateBlock)
	for _, tr := range c.trans[1:] {
		tr.Disconnect(c.trans[0].LocalAddr())
	}
	poll(t, "a new leader among the followers", func() bool {
		for _, f := range c.followers {
			if f.State() == Leader {
				return true
			}
		}
		return false
	})
	elected := time.Now()

	// node0's heartbeats go through and are refused with the newer term.
	g.openKind(kindHeartbeat)
	poll(t, "refusals of node0's heartbeats", func() bool {
		for _, id := range c.ids {
			if !c.replication(t, id).LastContact().After(elected) {
				return false
			}
		}
		return true
	})
	if c.leader.State() != Leader {
		t.Fatal("node0 stepped down; the test needs it leading")
	}
	if got := c.leader.QuorumContact(); got.IsZero() || got.After(elected) {
		t.Fatalf("quorum contact %v of a leader deposed at %v, want the contact from before", got, elected)
	}
}

package cluster

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// bootstrapIndex is the index of the configuration entry BootstrapCluster
// writes; only an elected leader appends past it.
const bootstrapIndex = 1

// DefaultBootstrapListenHeartbeats is how many heartbeat timeouts a
// --bootstrap node with no state listens before it bootstraps. The old
// cluster of a wiped node reaches it with a heartbeat when it has a leader
// and with a (pre-)vote request when it is electing one: a follower stands
// within three heartbeat timeouts of losing its leader. The rest is margin
// for a loaded machine, where a restart and an election each take longer.
const DefaultBootstrapListenHeartbeats = 10

// probeInterval spaces the rounds of probes of the initial cluster.
const probeInterval = 500 * time.Millisecond

// probeAnswer is what one initial-cluster peer said about its Raft state.
type probeAnswer struct {
	answered bool
	term     uint64
	lastLog  uint64
}

// startDecision is what a node with no Raft state does.
type startDecision int

const (
	// decideWait: not enough is known yet; probe again.
	decideWait startDecision = iota
	// decideBootstrap: a majority of the initial cluster has no cluster yet.
	decideBootstrap
	// decideExisting: a cluster exists; wait for its leader to catch this
	// node up.
	decideExisting
)

func (d startDecision) String() string {
	switch d {
	case decideBootstrap:
		return "bootstrap"
	case decideExisting:
		return "existing"
	default:
		return "wait"
	}
}

// decideInitial decides from the answers of the other initial-cluster
// peers (voters counts this node too). A peer whose log is past the
// bootstrap entry proves a cluster that has elected a leader. Its term
// proves nothing: the nodes of a new cluster raise their terms in failed
// elections while a majority is still missing. Bootstrapping waits for a
// majority that answered with no cluster, this node included: a new
// cluster cannot elect a leader with less, so waiting costs nothing, and a
// peer that does not answer is never taken for an empty one.
func decideInitial(voters int, answers []probeAnswer) startDecision {
	fresh := 1
	for _, a := range answers {
		if !a.answered {
			continue
		}
		if a.lastLog > bootstrapIndex {
			return decideExisting
		}
		fresh++
	}
	if fresh > voters/2 {
		return decideBootstrap
	}
	return decideWait
}

// probeSender sends the probe; raft.Transport satisfies it.
type probeSender interface {
	AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error
}

// probePeer asks a peer for its term and last log index with an
// AppendEntries of term 0. Raft answers an older term with its current
// term and last index and changes nothing; a peer with no state at all
// (term 0) accepts it as a heartbeat from no leader, which changes nothing
// either. The request carries no leader address or id.
func probePeer(s probeSender, p Peer) probeAnswer {
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}}
	var resp raft.AppendEntriesResponse
	if err := s.AppendEntries(raft.ServerID(p.ID), raft.ServerAddress(p.Addr), req, &resp); err != nil {
		return probeAnswer{}
	}
	return probeAnswer{answered: true, term: resp.Term, lastLog: resp.LastLog}
}

// probeAll probes peers at once and waits at most timeout; a peer that
// has not answered by then is unknown.
func probeAll(s probeSender, peers []Peer, timeout time.Duration) []probeAnswer {
	out := make([]probeAnswer, len(peers))
	var mu sync.Mutex
	done := make(chan struct{}, len(peers))
	for i, p := range peers {
		go func() {
			a := probePeer(s, p)
			mu.Lock()
			out[i] = a
			mu.Unlock()
			done <- struct{}{}
		}()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for range peers {
		select {
		case <-done:
		case <-timer.C:
			mu.Lock()
			defer mu.Unlock()
			return append([]probeAnswer(nil), out...)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return append([]probeAnswer(nil), out...)
}

// startWithoutState runs, in the background, what a node that found no
// Raft state does: probe the initial cluster, listen for a cluster that
// counts it as a member, or wait to be caught up or joined.
func (n *Node) startWithoutState(g *voteGuard) {
	defer n.wg.Done()
	switch {
	case n.cfg.Existing:
		n.logger.Info("no raft state; waiting for the cluster's leader to catch this node up", "node_id", n.cfg.NodeID)
	case len(n.cfg.InitialCluster) > 0:
		n.awaitInitialCluster(g)
	case n.cfg.Bootstrap:
		n.awaitSoleBootstrap(g)
	default:
		n.logger.Info("no raft state and nothing to bootstrap; waiting to be joined", "node_id", n.cfg.NodeID)
	}
}

// awaitInitialCluster probes the other initial-cluster peers until they
// prove a cluster exists or a majority proves it does not.
func (n *Node) awaitInitialCluster(g *voteGuard) {
	var others []Peer
	var servers []raft.Server
	for _, p := range n.cfg.InitialCluster {
		servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		if p.ID != n.cfg.NodeID {
			others = append(others, p)
		}
	}
	sender, closeSender := n.probeSender()
	defer closeSender()
	for round := 0; ; round++ {
		answers := probeAll(sender, others, n.cfg.ProbeTimeout)
		d := decideInitial(len(n.cfg.InitialCluster), answers)
		select {
		case <-g.contacted():
			d = decideExisting
		default:
		}
		switch d {
		case decideExisting:
			for _, a := range answers {
				if a.answered {
					g.raiseFloor(a.term)
				}
			}
			n.logger.Info("the initial cluster already exists; not bootstrapping, waiting for its leader to catch this node up")
			return
		case decideBootstrap:
			n.bootstrapNow(g, servers)
			return
		}
		if round%20 == 0 {
			known := 0
			for _, a := range answers {
				if a.answered {
					known++
				}
			}
			n.logger.Info("waiting for a majority of the initial cluster to answer before bootstrapping",
				"answered", known, "peers", len(others), "voters", len(servers))
		}
		select {
		case <-n.shutdownCh:
			return
		case <-g.contacted():
		case <-time.After(probeInterval):
		}
	}
}

// awaitSoleBootstrap listens before bootstrapping a single-voter cluster:
// a node whose data dir was wiped is still in its old cluster's
// configuration, and that cluster's leader heartbeats it within a
// heartbeat timeout. A node that hears from one must not start another.
func (n *Node) awaitSoleBootstrap(g *voteGuard) {
	if n.cfg.BootstrapListen > 0 {
		n.logger.Info("no raft state; listening for an existing cluster before bootstrapping", "for", n.cfg.BootstrapListen)
		timer := time.NewTimer(n.cfg.BootstrapListen)
		defer timer.Stop()
		select {
		case <-n.shutdownCh:
			return
		case <-g.contacted():
			n.logger.Warn("a cluster that counts this node as a member contacted it; not bootstrapping, waiting to be caught up")
			return
		case <-timer.C:
		}
	}
	n.bootstrapNow(g, []raft.Server{{ID: raft.ServerID(n.cfg.NodeID), Address: n.transport.LocalAddr()}})
}

// bootstrapNow starts a new cluster. The guard is lifted first: a crash
// between the two leaves a node with no state and no guard, which starts
// over.
func (n *Node) bootstrapNow(g *voteGuard, servers []raft.Server) {
	if err := g.lift(); err != nil {
		n.logger.Error("cannot record the bootstrap decision; not bootstrapping", "error", err)
		return
	}
	n.logger.Info("bootstrapping new cluster", "voters", len(servers))
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	switch {
	case err == nil:
	case errors.Is(err, raft.ErrCantBootstrap):
		// A leader reached this node between the decision and now.
		n.logger.Info("a leader reached this node first; not bootstrapping, waiting to be caught up")
		if err := g.arm(); err != nil {
			n.logger.Error("cannot keep this node out of elections until caught up", "error", err)
		}
		n.wg.Add(1)
		go n.watchVoteGuard(g)
	case errors.Is(err, raft.ErrRaftShutdown):
	default:
		n.logger.Error("bootstrap failed", "error", err)
	}
}

// probeSender returns the transport to probe with and how to release it.
// Over TCP the probes get a transport of their own whose every call ends
// within ProbeTimeout, so no probe outlives the round that sent it by long.
func (n *Node) probeSender() (probeSender, func()) {
	if n.cfg.Transport != nil {
		return n.transport, func() {}
	}
	t := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  newDialOnly(n.cfg.RaftTLS),
		MaxPool: 1,
		Timeout: n.cfg.ProbeTimeout,
		Logger:  n.logger.Named("probe"),
	})
	return t, func() { t.CloseStreams(); _ = t.Close() }
}

// dialOnly is a raft.StreamLayer that dials (over TLS when the transport
// uses it) and never accepts.
type dialOnly struct {
	tls    *RaftTLS
	closed chan struct{}
	once   sync.Once
}

func newDialOnly(t *RaftTLS) *dialOnly { return &dialOnly{tls: t, closed: make(chan struct{})} }

func (d *dialOnly) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if d.tls != nil {
		return dialTLS(addr, timeout, d.tls.Outgoing)
	}
	return net.DialTimeout("tcp", string(addr), timeout)
}

func (d *dialOnly) Accept() (net.Conn, error) {
	<-d.closed
	return nil, net.ErrClosed
}

func (d *dialOnly) Close() error {
	d.once.Do(func() { close(d.closed) })
	return nil
}

func (d *dialOnly) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

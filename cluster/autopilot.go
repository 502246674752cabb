package cluster

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/roster-registry/roster/store"
)

// Autopilot defaults, Consul's where Consul has one.
const (
	DefaultAutopilotLastContactThreshold    = 200 * time.Millisecond
	DefaultAutopilotMaxTrailingLogs         = 250
	DefaultAutopilotServerStabilizationTime = 10 * time.Second
	DefaultAutopilotDeadServerAfter         = 5 * time.Minute
	DefaultAutopilotMinQuorum               = 3
)

// AutopilotConfig sets the leader's autopilot: dead-server cleanup and the
// promotion of new servers (github.com/hashicorp/raft-autopilot, as in
// Consul and Nomad).
type AutopilotConfig struct {
	// CleanupDeadServers removes a server that has failed for DeadServerAfter,
	// never leaving fewer than MinQuorum voters.
	CleanupDeadServers bool
	// DeadServerAfter is how long the leader must have failed to reach a
	// server before it counts as failed.
	DeadServerAfter time.Duration
	// MinQuorum is the fewest voters dead-server cleanup leaves.
	MinQuorum uint
	// LastContactThreshold: a server not heard from in this long is
	// unhealthy.
	LastContactThreshold time.Duration
	// MaxTrailingLogs: a server further behind the leader's log is unhealthy.
	MaxTrailingLogs uint64
	// ServerStabilizationTime: a new server becomes a voter once it has
	// been healthy this long.
	ServerStabilizationTime time.Duration
	// UpdateInterval and ReconcileInterval pace autopilot's health updates
	// and its promotions and removals (defaults: 1 s and 2 s).
	UpdateInterval    time.Duration
	ReconcileInterval time.Duration
}

func (c *AutopilotConfig) setDefaults() {
	if c.DeadServerAfter <= 0 {
		c.DeadServerAfter = DefaultAutopilotDeadServerAfter
	}
	if c.LastContactThreshold <= 0 {
		c.LastContactThreshold = DefaultAutopilotLastContactThreshold
	}
	if c.MaxTrailingLogs == 0 {
		c.MaxTrailingLogs = DefaultAutopilotMaxTrailingLogs
	}
	if c.ServerStabilizationTime <= 0 {
		c.ServerStabilizationTime = DefaultAutopilotServerStabilizationTime
	}
	if c.UpdateInterval <= 0 {
		c.UpdateInterval = time.Second
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = 2 * time.Second
	}
}

// ServerStats is what autopilot needs to know of one server's Raft state.
type ServerStats struct {
	// LastContact: how long ago the server last heard from the leader.
	LastContact time.Duration
	LastTerm    uint64
	LastIndex   uint64
}

// StatsFetcher asks the server at apiAddr for its ServerStats; the API
// layer provides it, since the node has no client of its own.
type StatsFetcher func(ctx context.Context, nodeID, apiAddr string) (ServerStats, error)

// SetStatsFetcher sets how the leader's autopilot asks other servers for
// their Raft state. Without one, autopilot sees only the leader's view of
// the others, and never promotes.
func (n *Node) SetStatsFetcher(f StatsFetcher) {
	n.autopilotMu.Lock()
	defer n.autopilotMu.Unlock()
	n.statsFetcher = f
}

// AutopilotServer is autopilot's view of one server, on the leader.
type AutopilotServer struct {
	Healthy     bool
	StableSince time.Time
	// State: leader, voter, non-voter or staging.
	State       string
	Failed      bool
	LastContact time.Duration
	LastIndex   uint64
	LastTerm    uint64
}

// AutopilotState is the leader's autopilot summary.
type AutopilotState struct {
	Healthy          bool
	FailureTolerance int
	Servers          map[string]AutopilotServer
}

// AutopilotState returns the leader's latest autopilot state; ok is false
// on a node that does not lead, or before autopilot's first update.
func (n *Node) AutopilotState() (AutopilotState, bool) {
	n.autopilotMu.Lock()
	defer n.autopilotMu.Unlock()
	if n.apState == nil || !n.IsLeader() {
		return AutopilotState{}, false
	}
	return *n.apState, true
}

// runAutopilot is the leader duty that runs autopilot for one term.
func (n *Node) runAutopilot(ctx context.Context) {
	ap := autopilot.New(n.raft, &apDelegate{n: n},
		autopilot.WithLogger(n.logger),
		autopilot.WithPromoter(&apPromoter{n: n}),
		autopilot.WithUpdateInterval(n.cfg.Autopilot.UpdateInterval),
		autopilot.WithReconcileInterval(n.cfg.Autopilot.ReconcileInterval),
	)
	ap.Start(ctx)
	<-ctx.Done()
	<-ap.Stop()
	n.autopilotMu.Lock()
	n.apState = nil
	n.autopilotMu.Unlock()
}

// apDelegate is the node as raft-autopilot's ApplicationIntegration.
type apDelegate struct{ n *Node }

func (d *apDelegate) AutopilotConfig() *autopilot.Config {
	c := d.n.cfg.Autopilot
	return &autopilot.Config{
		CleanupDeadServers:      c.CleanupDeadServers,
		LastContactThreshold:    c.LastContactThreshold,
		MaxTrailingLogs:         c.MaxTrailingLogs,
		MinQuorum:               c.MinQuorum,
		ServerStabilizationTime: c.ServerStabilizationTime,
	}
}

// nodeTypeReplica marks a read replica, which autopilot never promotes.
const nodeTypeReplica autopilot.NodeType = "read-replica"

// KnownServers is every server of the Raft configuration. A server counts
// as failed once the leader has failed to reach it for DeadServerAfter. A
// non-voter is a replica unless its member record says it joined to vote:
// one whose record is not written yet is never promoted by mistake.
func (d *apDelegate) KnownServers() map[raft.ServerID]*autopilot.Server {
	n := d.n
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return nil
	}
	view := n.store.View()
	now := time.Now()
	_, leaderID := n.raft.LeaderWithID()
	n.healthMu.Lock()
	defer n.healthMu.Unlock()
	out := map[raft.ServerID]*autopilot.Server{}
	for _, s := range cf.Configuration().Servers {
		srv := &autopilot.Server{
			ID: s.ID, Name: string(s.ID), Address: s.Address,
			NodeStatus: autopilot.NodeAlive, RaftVersion: raft.ProtocolVersionMax,
			IsLeader: s.ID == leaderID, NodeType: autopilot.NodeVoter,
		}
		if since, failing := n.peerFailed[s.ID]; failing && now.Sub(since) >= n.cfg.Autopilot.DeadServerAfter {
			srv.NodeStatus = autopilot.NodeFailed
		}
		rec := view.Member(string(s.ID))
		if s.Suffrage != raft.Voter && (rec == nil || !rec.JoinedToVote) {
			srv.NodeType = nodeTypeReplica
		}
		out[s.ID] = srv
	}
	return out
}

// FetchServerStats asks every server for its Raft state at once; the
// leader answers for itself. A server that does not answer has no stats,
// which autopilot counts as unhealthy.
func (d *apDelegate) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	n := d.n
	n.autopilotMu.Lock()
	fetch := n.statsFetcher
	n.autopilotMu.Unlock()
	view := n.store.View()
	out := map[raft.ServerID]*autopilot.ServerStats{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id := range servers {
		if string(id) == n.cfg.NodeID {
			mu.Lock()
			out[id] = &autopilot.ServerStats{LastTerm: n.raft.CurrentTerm(), LastIndex: n.raft.LastIndex()}
			mu.Unlock()
			continue
		}
		rec := view.Member(string(id))
		if fetch == nil || rec == nil || rec.APIAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := fetch(ctx, string(id), rec.APIAddr)
			if err != nil {
				n.logger.Debug("autopilot: no stats from server", "id", id, "error", err)
				return
			}
			mu.Lock()
			out[id] = &autopilot.ServerStats{LastContact: st.LastContact, LastTerm: st.LastTerm, LastIndex: st.LastIndex}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// NotifyState keeps autopilot's latest state for Members and the metrics.
func (d *apDelegate) NotifyState(s *autopilot.State) {
	n := d.n
	st := &AutopilotState{Healthy: s.Healthy, FailureTolerance: s.FailureTolerance, Servers: map[string]AutopilotServer{}}
	known := d.KnownServers()
	for id, srv := range s.Servers {
		state := string(srv.State)
		if srv.State == autopilot.RaftNonVoter {
			state = "read-replica"
			if srv.Server.NodeType == autopilot.NodeVoter {
				state = "staging"
			}
		}
		k := known[id]
		st.Servers[string(id)] = AutopilotServer{
			Healthy: srv.Health.Healthy, StableSince: srv.Health.StableSince, State: state,
			Failed:      k != nil && k.NodeStatus == autopilot.NodeFailed,
			LastContact: srv.Stats.LastContact, LastIndex: srv.Stats.LastIndex, LastTerm: srv.Stats.LastTerm,
		}
	}
	n.autopilotMu.Lock()
	n.apState = st
	n.autopilotMu.Unlock()
}

// RemoveFailedServer removes a server autopilot found failed for longer
// than the threshold, in the background as autopilot asks. Autopilot asks
// again every round until the removal lands, so one removal per server
// runs at a time.
func (d *apDelegate) RemoveFailedServer(srv *autopilot.Server) {
	n := d.n
	n.autopilotMu.Lock()
	if n.apRemoving == nil {
		n.apRemoving = map[raft.ServerID]bool{}
	}
	if n.apRemoving[srv.ID] {
		n.autopilotMu.Unlock()
		return
	}
	n.apRemoving[srv.ID] = true
	n.autopilotMu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() {
			n.autopilotMu.Lock()
			delete(n.apRemoving, srv.ID)
			n.autopilotMu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		removed, err := n.removeFailed(ctx, srv.ID, srv.Address)
		switch {
		case err != nil:
			n.logger.Error("autopilot: could not remove a failed server", "id", srv.ID, "error", err)
		case removed:
			n.stats.autopilotRemovals.Add(1)
		}
	}()
}

// removeFailed removes the server id at addr, and nothing else: a server
// that rejoined with the same id (or anything else changed in the
// configuration) since autopilot found it failed stays, since Raft
// refuses a removal conditioned on an older configuration.
func (n *Node) removeFailed(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) (bool, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return false, mapRaftError(err)
	}
	found := false
	for _, s := range cf.Configuration().Servers {
		if s.ID == id && s.Address == addr {
			found = true
		}
	}
	if !found {
		return false, nil
	}
	n.logger.Warn("autopilot: removing a failed server", "id", id, "address", addr, "failed_for_at_least", n.cfg.Autopilot.DeadServerAfter)
	if err := n.raft.RemoveServer(id, cf.Index(), 10*time.Second).Error(); err != nil {
		return false, mapRaftError(err)
	}
	n.forgetPeerFailures(id)
	if err := n.removeMember(ctx, string(id)); err != nil {
		n.logger.Warn("autopilot: removed a failed server but not its member record", "id", id, "error", err)
	}
	n.logger.Info("removed member", "id", id, "by", "autopilot")
	return true, nil
}

// apPromoter is autopilot's stable promoter, except that read replicas
// are never voters: a non-voter is promoted once healthy for the
// stabilization time only when it joined to vote.
type apPromoter struct {
	n *Node
	autopilot.StablePromoter
}

func (p *apPromoter) GetNodeTypes(_ *autopilot.Config, s *autopilot.State) map[raft.ServerID]autopilot.NodeType {
	types := map[raft.ServerID]autopilot.NodeType{}
	for id, srv := range s.Servers {
		types[id] = srv.Server.NodeType
	}
	return types
}

func (p *apPromoter) CalculatePromotionsAndDemotions(c *autopilot.Config, s *autopilot.State) autopilot.RaftChanges {
	return promotions(c, s, time.Now(), p.n.logger)
}

// promotions lists the non-voters that joined to vote and have been
// healthy for the stabilization time, in id order.
func promotions(c *autopilot.Config, s *autopilot.State, now time.Time, logger hclog.Logger) autopilot.RaftChanges {
	var out autopilot.RaftChanges
	minStable := s.ServerStabilizationTime(c)
	hooks := testAutopilotHooks.Load()
	if hooks != nil && hooks.round != nil {
		hooks.round(minStable)
	}
	for id, srv := range s.Servers {
		if srv.State != autopilot.RaftNonVoter || srv.Server.NodeType != autopilot.NodeVoter {
			continue
		}
		if srv.Health.IsStable(now, minStable) {
			logger.Info("autopilot: promoting a stable server to voter", "id", id, "healthy_for", now.Sub(srv.Health.StableSince).Round(time.Millisecond))
			if hooks != nil && hooks.promote != nil {
				hooks.promote(string(id), now.Sub(srv.Health.StableSince))
			}
			out.Promotions = append(out.Promotions, id)
		}
	}
	sort.Slice(out.Promotions, func(i, j int) bool { return out.Promotions[i] < out.Promotions[j] })
	return out
}

// autopilotHooks let tests see autopilot's rounds: round runs at every
// reconcile round (promotions are decided, then failed servers pruned)
// with the stabilization time that round requires (0 during a new
// leader's first stabilization time); promote sees each promotion with how
// long the server had been healthy.
type autopilotHooks struct {
	round   func(minStable time.Duration)
	promote func(id string, healthyFor time.Duration)
}

var testAutopilotHooks atomic.Pointer[autopilotHooks]

// memberVoterIntent records, before a server enters the configuration as
// a non-voter, whether autopilot may promote it.
func (n *Node) memberVoterIntent(ctx context.Context, id, raftAddr, apiAddr string, replica bool) error {
	want := store.Member{NodeID: id, RaftAddr: raftAddr, APIAddr: apiAddr, JoinedToVote: !replica}
	if m := n.store.View().Member(id); m != nil && *m == want {
		return nil
	}
	if err := n.upsertMember(ctx, want); err != nil {
		return fmt.Errorf("record member %s: %w", id, err)
	}
	return nil
}

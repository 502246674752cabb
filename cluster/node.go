// Package cluster wires Roster's state machine into hashicorp/raft: bolt log
// and stable stores, file snapshots, the TCP transport, bootstrap, the leader
// loop, group-committed writes, linearizable read indexes and membership.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/roster-registry/roster/fsm"
	"github.com/roster-registry/roster/store"
)

// Peer is a voter of the initial cluster.
type Peer struct {
	ID   string
	Addr string // Raft address
}

// Config configures one node.
type Config struct {
	NodeID string
	// DataDir holds raft.db (log and stable store) and snapshots/. Empty
	// only with InMemory.
	DataDir string
	// InMemory keeps everything in memory: for --dev and tests.
	InMemory bool
	// RaftBind is the TCP address the Raft transport listens on.
	RaftBind string
	// RaftAdvertise is the Raft address peers dial; RaftBind when empty.
	RaftAdvertise string
	// APIAddr is this node's gRPC address, published in the member table.
	APIAddr string
	// Transport replaces the TCP transport (tests use raft.InmemTransport).
	Transport raft.Transport
	// RaftTLS, when set, runs the Raft transport (and the bootstrap probes)
	// over mutual TLS instead of plain TCP.
	RaftTLS *RaftTLS

	// Bootstrap starts a new single-voter cluster when there is no state.
	Bootstrap bool
	// InitialCluster starts a new cluster of these voters when there is no
	// state, once a majority of them answers that it has no cluster either;
	// when one answers with a cluster, the node waits to be caught up
	// instead. Every initial node is given the same list.
	InitialCluster []Peer
	// Existing says the node belongs to a cluster that already exists: with
	// no state it never bootstraps, and waits for the leader to catch it up
	// (or to be joined).
	Existing bool
	// ProbeTimeout bounds one probe of an initial-cluster peer (default 1s).
	ProbeTimeout time.Duration
	// Autopilot, when set, runs raft-autopilot on the leader: dead-server
	// cleanup, and servers that join to vote enter as non-voters promoted
	// once stable. Nil: joined servers vote at once, and failed servers
	// stay until removed.
	Autopilot *AutopilotConfig
	// BootstrapListen is how long a Bootstrap node with no state listens for
	// a cluster that already counts it as a member before it bootstraps
	// (default DefaultBootstrapListenHeartbeats heartbeat timeouts; none in
	// memory; negative: none).
	BootstrapListen time.Duration

	Logger hclog.Logger

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
	// NoSync skips fsync of the bolt log: only for benchmarks that say so.
	NoSync bool
	// LogStore is where the Raft log lives on disk: LogStoreWAL or
	// LogStoreBolt; empty means the one the data dir already holds, else
	// DefaultLogStore. The stable store (terms and votes) is always bolt's
	// raft.db. A data dir keeps the log store it was created with: opening
	// it with the other is refused.
	LogStore string
	// WALSegmentSize is the size in bytes at which the WAL log store
	// starts a new segment file (0: raft-wal's 64 MiB). A truncated log
	// frees disk only segment by segment, and raft-wal may still serve
	// compacted entries from the segment it is writing, so a follower that
	// fell behind by less than a segment can be sent entries, not a
	// snapshot.
	WALSegmentSize int

	// MaxEntrySize bounds one Raft entry (default 1 MiB).
	MaxEntrySize int
	// MaxBatch bounds how many writes one entry may carry (default 256).
	MaxBatch int
	// MaxInflight bounds the write entries replicating at once (default 4).
	MaxInflight int
	// ApplyTimeout bounds handing a command to Raft (default 5s).
	ApplyTimeout time.Duration

	Store store.Options

	// LeaseTick is the lease timer's granularity: an instance that stops
	// heartbeating is expired within TTL plus one tick (default
	// DefaultLeaseTick).
	LeaseTick time.Duration
	// SelfPreservationThreshold is the share of leases (of all, or of one
	// service's) that may expire within SelfPreservationWindow before the
	// leader holds expiry. nil means DefaultSelfPreservationThreshold; 0
	// turns self-preservation off. The operator's replicated setting, once
	// made, overrides it on every leader.
	SelfPreservationThreshold *float64
	// SelfPreservationWindow is the window "at once" means (default
	// DefaultSelfPreservationWindow).
	SelfPreservationWindow time.Duration
	// SelfPreservationMinLeases: a group of fewer leases never trips
	// self-preservation (default DefaultSelfPreservationMinLeases).
	SelfPreservationMinLeases int
	// SelfPreservationMaxHold bounds how long one lease's expiry is held
	// (default DefaultSelfPreservationMaxHold); then it expires.
	SelfPreservationMaxHold time.Duration
	// CheckWorkers bounds how many health checks run at once (default 32).
	CheckWorkers int

	// TestHooks force interleavings in tests; production leaves them empty.
	TestHooks TestHooks

	// clock is the node's time source: the wall clock it stamps into
	// commands, the request clock's monotonic readings, and the lease and
	// check duties' timers. realClock when nil; the package's tests skew it.
	clock clock
}

// TestHooks are seams for tests on a node's apply, read, leadership
// transfer and restore paths.
type TestHooks struct {
	// FSM runs on this node's apply path (see fsm.Hooks).
	FSM fsm.Hooks
	// ReadWait runs when a read finds this node's state behind the index it
	// needs, just before it starts waiting.
	ReadWait func(index uint64)
	// RequestWait runs when a write with a request id finds this node
	// leading but not ready (its barrier not through), just before it
	// starts waiting.
	RequestWait func()
	// LeadershipTransfer, when set, runs instead of Raft's leadership
	// transfer to target ("" when Raft would pick one) and returns what
	// Raft would: nil once this node stepped down, else Raft's error.
	LeadershipTransfer func(target string) error
	// RaftRestore, when set, runs a backup's restore: it is given Raft's
	// restore call and returns its error, so a test can fail the call
	// after Raft took the restore.
	RaftRestore func(restore func() error) error
	// ContactPause, when set, is added to the age of this node's quorum
	// contact, as if the process had been stopped that long while raft ran
	// nothing: the node stays Leader but refuses lease renewals
	// (leasecontact.go).
	ContactPause func() time.Duration
	// BeforeBootstrap runs just before an in-memory node with an initial
	// cluster bootstraps, so a test can let a peer reach it first.
	BeforeBootstrap func()
}

func (c *Config) setDefaults() error {
	if c.NodeID == "" {
		return errors.New("node id is required")
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if !c.InMemory && c.DataDir == "" {
		return errors.New("data dir is required (or run in memory)")
	}
	self, inCluster := findPeer(c.InitialCluster, c.NodeID)
	if len(c.InitialCluster) > 0 && !inCluster {
		return fmt.Errorf("initial cluster does not name this node %q", c.NodeID)
	}
	if c.RaftAdvertise == "" {
		c.RaftAdvertise = c.RaftBind
		if inCluster {
			c.RaftAdvertise = self.Addr
		}
	}
	if inCluster && c.Transport == nil && self.Addr != c.RaftAdvertise {
		return fmt.Errorf("initial cluster gives %s the raft address %s, but it advertises %s", c.NodeID, self.Addr, c.RaftAdvertise)
	}
	if c.Existing && c.Bootstrap {
		return errors.New("a node of an existing cluster cannot bootstrap one")
	}
	if c.Autopilot != nil {
		ap := *c.Autopilot
		ap.setDefaults()
		c.Autopilot = &ap
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = time.Second
	}
	if c.BootstrapListen == 0 && !c.InMemory {
		c.BootstrapListen = DefaultBootstrapListenHeartbeats * raft.DefaultConfig().HeartbeatTimeout
		if c.HeartbeatTimeout > 0 {
			c.BootstrapListen = DefaultBootstrapListenHeartbeats * c.HeartbeatTimeout
		}
	}
	switch c.LogStore {
	case "", LogStoreWAL, LogStoreBolt:
	default:
		return fmt.Errorf("raft log store %q: use %s or %s", c.LogStore, LogStoreWAL, LogStoreBolt)
	}
	if c.WALSegmentSize < 0 {
		return fmt.Errorf("WAL segment size %d is negative", c.WALSegmentSize)
	}
	if c.MaxEntrySize <= 0 {
		c.MaxEntrySize = 1 << 20
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 4
	}
	if c.ApplyTimeout <= 0 {
		c.ApplyTimeout = 5 * time.Second
	}
	if c.LeaseTick <= 0 {
		c.LeaseTick = DefaultLeaseTick
	}
	if c.SelfPreservationWindow <= 0 {
		c.SelfPreservationWindow = DefaultSelfPreservationWindow
	}
	if c.SelfPreservationMinLeases <= 0 {
		c.SelfPreservationMinLeases = DefaultSelfPreservationMinLeases
	}
	if c.SelfPreservationMaxHold == 0 {
		c.SelfPreservationMaxHold = DefaultSelfPreservationMaxHold
	}
	if err := checkMaxHold(c.SelfPreservationMaxHold); err != nil {
		return err
	}
	if c.SelfPreservationThreshold != nil {
		if err := checkThreshold(*c.SelfPreservationThreshold); err != nil {
			return err
		}
	}
	if c.CheckWorkers <= 0 {
		c.CheckWorkers = 32
	}
	return nil
}

// leaderLeaseTimeout is how long a deposed leader may go on believing it
// leads after losing its quorum.
func (c *Config) leaderLeaseTimeout() time.Duration {
	if c.LeaderLeaseTimeout > 0 {
		return c.LeaderLeaseTimeout
	}
	return raft.DefaultConfig().LeaderLeaseTimeout
}

func findPeer(ps []Peer, id string) (Peer, bool) {
	for _, p := range ps {
		if p.ID == id {
			return p, true
		}
	}
	return Peer{}, false
}

// Node is one Roster server's Raft participant and state.
type Node struct {
	cfg    Config
	logger hclog.Logger
	raft   *raft.Raft
	fsm    *fsm.FSM
	store  *store.Store
	// logs is Raft's log store; read indexes look up entry types in it.
	logs raft.LogStore

	transport raft.Transport
	closers   []func() error

	proposals chan *proposal
	verify    *Rounds

	leaderReady atomic.Bool
	leaderMu    sync.Mutex
	leaderStop  context.CancelFunc
	leaderDone  chan struct{}
	duties      []func(ctx context.Context)

	// readyTerm is the term whose barrier made this node ready, 0 when
	// not ready; a read index is only taken within that term.
	readyTerm atomic.Uint64
	// leadingSince is when this node last took the lead (the real clock),
	// nil while it does not lead (RefusingRenewalsLong).
	leadingSince atomic.Pointer[time.Time]

	leases *leaseTable
	checks *checkRunner
	stats  nodeStats

	// requestClock stamps the Request entries this node proposes while it
	// leads (requestclock.go).
	requestClock *requestClock

	healthMu   sync.Mutex
	peerFailed map[raft.ServerID]time.Time
	// peerForgotten: when failures of a peer were last forgotten
	// (forgetPeerFailures).
	peerForgotten map[raft.ServerID]time.Time

	autopilotMu  sync.Mutex
	statsFetcher StatsFetcher
	apState      *AutopilotState
	apRemoving   map[raft.ServerID]bool

	// restoreMu lets one backup restore run at a time (backup.go).
	restoreMu sync.Mutex

	started   time.Time
	leaderLog leaderLog

	shutdownOnce sync.Once
	shutdownCh   chan struct{}
	wg           sync.WaitGroup

	// raftStopped is closed when Raft shuts down on its own (a leader
	// that removed itself), not through Shutdown; raftStopReason says why.
	raftStopped     chan struct{}
	raftStoppedOnce sync.Once
	raftStopReason  error
}

// New starts a node: it opens (or creates) the Raft state, bootstraps a new
// cluster when configured to and there is no existing state, and starts the
// leader loop. A node with existing state never bootstraps again.
func New(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:           cfg,
		logger:        cfg.Logger,
		store:         store.New(cfg.Store),
		proposals:     make(chan *proposal, 4096),
		peerFailed:    map[raft.ServerID]time.Time{},
		peerForgotten: map[raft.ServerID]time.Time{},
		shutdownCh:    make(chan struct{}),
		raftStopped:   make(chan struct{}),
		started:       time.Now(),
	}
	n.requestClock = newRequestClock(cfg.clock)
	n.fsm = fsm.New(n.store, cfg.Logger.Named("fsm"))
	n.fsm.SetHooks(cfg.TestHooks.FSM)
	// The request clock goes on from when this node applied the newest
	// stamp (requestclock.go).
	n.fsm.ObserveRequestStamps(n.requestClock.applied)
	n.leases = newLeaseTable(n.logger.Named("lease"), cfg.clock, n, n.store, n.IsLeader, &n.cfg)
	n.checks = newCheckRunner(n.logger.Named("check"), cfg.clock, n, n.store, n.cfg.CheckWorkers)
	n.OnLeader(n.leases.run)
	n.OnLeader(n.checks.run)
	if cfg.Autopilot != nil {
		n.OnLeader(n.runAutopilot)
	}
	ok := false
	defer func() {
		if !ok {
			n.closeAll()
		}
	}()

	logs, stable, snaps, err := n.openStores()
	if err != nil {
		return nil, err
	}
	n.logs = logs
	if err := n.openTransport(); err != nil {
		return nil, err
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = cfg.Logger.Named("raft")
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.CommitTimeout > 0 {
		rc.CommitTimeout = cfg.CommitTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	// No BatchApplyCh: the proposal loop already groups writes into one
	// entry, and a buffered apply channel keeps the futures still queued in
	// it at shutdown unanswered forever (raft drains it only as a follower),
	// leaving their waiting goroutines behind.
	rc.BatchApplyCh = false
	notify := make(chan bool, 16)
	rc.NotifyCh = notify

	if err := n.recoverFromPeersFile(rc, logs, stable, snaps); err != nil {
		return nil, err
	}
	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("check existing raft state: %w", err)
	}
	guard, err := n.guardVotes(stable, hasState)
	if err != nil {
		return nil, err
	}
	r, err := n.newRaft(rc, logs, stable, snaps)
	if err != nil {
		return nil, err
	}
	n.raft = r
	n.closers = append([]func() error{func() error { return r.Shutdown().Error() }}, n.closers...)
	if !cfg.InMemory {
		if err := n.checkSnapshotFloor(r, stable); err != nil {
			return nil, err
		}
	}
	n.verify = NewRounds(n.verifyLeader)

	switch {
	case hasState:
		n.logger.Info("existing raft state found; rejoining with it", "node_id", cfg.NodeID)
	case cfg.InMemory:
		if err := n.bootstrapInMemory(); err != nil {
			return nil, err
		}
	default:
		n.wg.Add(1)
		go n.startWithoutState(guard)
	}
	if guard.active() {
		n.wg.Add(1)
		go n.watchVoteGuard(guard)
	}

	obs := make(chan raft.Observation, 64)
	r.RegisterObserver(raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		case raft.RaftState:
			return o.Data == raft.Shutdown
		}
		return false
	}))
	// A leader elected before the observer was registered is recorded
	// here; the observer records every later change.
	if _, id := r.LeaderWithID(); id != "" {
		n.leaderLog.add(string(id), r.CurrentTerm(), time.Now())
	}
	n.wg.Add(3)
	go n.watchPeers(obs)
	go n.monitorLeadership(notify)
	go n.runProposals()
	ok = true
	return n, nil
}

// newRaft starts raft. Raft panics while starting when the snapshot it could
// restore and the log do not meet (the newest snapshot is unreadable and the
// log was compacted past the older one); that happens before it starts any
// goroutine, so it is turned into an error a person can act on.
func (n *Node) newRaft(rc *raft.Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore) (r *raft.Raft, err error) {
	where := "memory"
	if !n.cfg.InMemory {
		where = n.cfg.DataDir
	}
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("the raft state in %s cannot be restored (%v): its newest usable snapshot and its log do not meet; "+
				"move the data dir aside and rejoin this node to the cluster to copy the state from the others", where, p)
		}
	}()
	r, err = raft.NewRaft(rc, n.fsm, logs, stable, snaps, n.transport)
	if err != nil {
		return nil, fmt.Errorf("start raft from %s: %w", where, err)
	}
	return r, nil
}

// logCacheEntries is how many of the newest Raft entries the log cache
// keeps decoded in memory. Every read of the log in steady state is of an
// entry just appended: the leader's replication sends what it has just
// stored (about one entry an AppendEntries, even at 256 writers, since a
// proposal groups the writes waiting for it into one entry), and a
// follower applies what it has just received. A follower far enough behind
// to miss the cache reads its entries from the log store, as it would with
// any size. The 512 it held before cost about 1.6 MB more on each node
// under a 64-writer load, and a follower stopped for 2 s under 256 writers
// (so that it missed the cache when it came back) cost the run no
// throughput with either size (docs/performance.md, Levers).
const logCacheEntries = 64

func (n *Node) openStores() (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
	if n.cfg.InMemory {
		mem := raft.NewInmemStore()
		return mem, mem, raft.NewInmemSnapshotStore(), nil
	}
	if err := os.MkdirAll(n.cfg.DataDir, 0o750); err != nil {
		return nil, nil, nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := CheckDataDir(n.cfg.DataDir); err != nil {
		return nil, nil, nil, err
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:   filepath.Join(n.cfg.DataDir, "raft.db"),
		NoSync: n.cfg.NoSync,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open %s: %w", filepath.Join(n.cfg.DataDir, "raft.db"), err)
	}
	n.closers = append(n.closers, bolt.Close)
	if err := n.claimDataDir(bolt); err != nil {
		return nil, nil, nil, err
	}
	var disk raft.LogStore = bolt
	kind, err := n.logStoreKind(bolt)
	if err != nil {
		return nil, nil, nil, err
	}
	if kind == LogStoreWAL {
		w, err := n.openWAL(bolt)
		if err != nil {
			return nil, nil, nil, err
		}
		disk = w
	} else if err := n.refuseWAL(); err != nil {
		return nil, nil, nil, err
	}
	logs, err := raft.NewLogCache(logCacheEntries, disk)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, 2, n.logger.Named("snapshot"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open snapshot store: %w", err)
	}
	return logs, bolt, &flooredSnapshots{SnapshotStore: snaps, stable: bolt}, nil
}

func (n *Node) openTransport() error {
	if n.cfg.Transport != nil {
		n.transport = n.cfg.Transport
		return nil
	}
	adv, err := net.ResolveTCPAddr("tcp", n.cfg.RaftAdvertise)
	if err != nil {
		return fmt.Errorf("raft advertise address %q: %w", n.cfg.RaftAdvertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return fmt.Errorf("raft advertise address %q must be a reachable host, not a wildcard", n.cfg.RaftAdvertise)
	}
	var t *raft.NetworkTransport
	if n.cfg.RaftTLS != nil {
		stream, err := newTLSStream(n.cfg.RaftBind, adv, n.cfg.RaftTLS)
		if err != nil {
			return fmt.Errorf("listen for raft on %s: %w", n.cfg.RaftBind, err)
		}
		t = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: stream, MaxPool: 5, Timeout: 10 * time.Second, Logger: n.logger.Named("transport"),
		})
	} else {
		t, err = raft.NewTCPTransportWithLogger(n.cfg.RaftBind, adv, 5, 10*time.Second, n.logger.Named("transport"))
		if err != nil {
			return fmt.Errorf("listen for raft on %s: %w", n.cfg.RaftBind, err)
		}
	}
	n.transport = t
	// Close leaves pooled connections open, and with them the goroutines
	// serving them on the peers; close them too.
	n.closers = append(n.closers, func() error { t.CloseStreams(); return t.Close() })
	return nil
}

// bootstrapInMemory bootstraps an in-memory node (--dev, the in-process
// test harness) at once, as configured.
func (n *Node) bootstrapInMemory() error {
	var servers []raft.Server
	switch {
	case n.cfg.Existing:
		n.logger.Info("no raft state; waiting for the cluster's leader to catch this node up", "node_id", n.cfg.NodeID)
		return nil
	case len(n.cfg.InitialCluster) > 0:
		for _, p := range n.cfg.InitialCluster {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
	case n.cfg.Bootstrap:
		servers = []raft.Server{{ID: raft.ServerID(n.cfg.NodeID), Address: n.transport.LocalAddr()}}
	default:
		n.logger.Info("no raft state and nothing to bootstrap; waiting to be joined", "node_id", n.cfg.NodeID)
		return nil
	}
	if hook := n.cfg.TestHooks.BeforeBootstrap; hook != nil {
		hook()
	}
	n.logger.Info("bootstrapping new cluster", "voters", len(servers))
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if errors.Is(err, raft.ErrCantBootstrap) && len(n.cfg.InitialCluster) > 0 {
		// A peer of the same initial cluster, bootstrapped and elected
		// first, reached this node before it bootstrapped: it is a member
		// already, being caught up (bootstrapNow does the same).
		n.logger.Info("a leader reached this node first; not bootstrapping, waiting to be caught up")
		return nil
	}
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

// Shutdown stops the node: the leader loop, then Raft, then the stores.
// It is safe to call more than once.
func (n *Node) Shutdown() error {
	var err error
	n.shutdownOnce.Do(func() {
		close(n.shutdownCh)
		n.stopLeading()
		err = n.closeAll()
		n.wg.Wait()
	})
	return err
}

func (n *Node) closeAll() error {
	var errs []error
	for _, c := range n.closers {
		if err := c(); err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
			errs = append(errs, err)
		}
	}
	n.closers = nil
	return errors.Join(errs...)
}

// ID returns this node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// APIAddr returns this node's advertised gRPC address.
func (n *Node) APIAddr() string { return n.cfg.APIAddr }

// RaftAddr returns this node's advertised Raft address.
func (n *Node) RaftAddr() string { return string(n.transport.LocalAddr()) }

// Store returns the node's registry state.
func (n *Node) Store() *store.Store { return n.store }

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's id and API address, if known.
func (n *Node) Leader() (id, apiAddr string) {
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	if string(lid) == n.cfg.NodeID {
		return n.cfg.NodeID, n.cfg.APIAddr
	}
	if m := n.store.View().Member(string(lid)); m != nil {
		return string(lid), m.APIAddr
	}
	return string(lid), ""
}

// Applied returns the index of the last entry applied to this node's store.
func (n *Node) Applied() uint64 { return n.store.View().Applied() }

// Status is a node's view of the cluster.
type Status struct {
	NodeID      string
	State       string
	LeaderID    string
	LeaderAPI   string
	Term        uint64
	CommitIndex uint64
	Applied     uint64
	LastContact time.Duration
	Revision    uint64
}

// Status returns this node's view of the cluster.
func (n *Node) Status() Status {
	lid, lapi := n.Leader()
	v := n.store.View()
	st := Status{
		NodeID:      n.cfg.NodeID,
		State:       stateName(n.raft.State()),
		LeaderID:    lid,
		LeaderAPI:   lapi,
		Term:        n.raft.CurrentTerm(),
		CommitIndex: n.raft.CommitIndex(),
		Applied:     v.Applied(),
		Revision:    v.Revision(),
	}
	if st.State != "leader" && lid == "" && n.Removed() {
		// It can serve nothing more until it joins again. A node that
		// knows a leader is not removed: one that has just joined may
		// still be catching up on the entries from before it was added,
		// its latest configuration one without it.
		st.State = "removed"
	}
	if st.State != "leader" {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			st.LastContact = time.Since(lc)
		}
	}
	return st
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	default:
		return "shutdown"
	}
}

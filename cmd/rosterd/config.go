package main

import (
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/store"
)

// flags holds everything the command line (or ROSTER_* environment) says.
type flags struct {
	nodeID          string
	dataDir         string
	raftAddr        string
	raftAdvertise   string
	grpcAddr        string
	grpcAdvertise   string
	httpAddr        string
	httpAddrSet     bool
	dnsAddr         string
	dnsAddrSet      bool
	dnsDomain       string
	dnsTTL          time.Duration
	initialCluster  string
	clusterState    string
	bootstrap       bool
	bootstrapListen time.Duration
	join            string
	nonVoter        bool
	dev             bool
	logLevel        string
	logJSON         bool

	snapshotThreshold uint64
	snapshotInterval  time.Duration
	trailingLogs      uint64
	historyEvents     int
	historyBytes      int
	shutdownTimeout   time.Duration
	configFile        string

	selfPreservationThreshold float64
	selfPreservationWindow    time.Duration
	selfPreservationMinLeases int
	selfPreservationMaxHold   time.Duration
	leaseTick                 time.Duration

	tls               tlsFlags
	acl               aclFlags
	limits            limitFlags
	autopilot         autopilotFlags
	raftTimeoutScale  float64
	raftCommitTimeout time.Duration
	raftLogStore      string
	walSegmentKiB     int
	enablePprof       bool
	gcHeadroomMiB     int
}

func (f *flags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.nodeID, "node-id", "", "unique id of this node (required unless --dev)")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for the Raft log, stable store and snapshots (required unless --dev)")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7421", "address the Raft transport listens on")
	fs.StringVar(&f.raftAdvertise, "raft-advertise", "", "Raft address peers dial (default: this node's --initial-cluster entry, else --raft-addr)")
	fs.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:7420", "address the gRPC API listens on")
	fs.StringVar(&f.grpcAdvertise, "grpc-advertise", "", "gRPC address other nodes and clients use (default --grpc-addr)")
	fs.StringVar(&f.httpAddr, "http-addr", "", "address the HTTP API listens on: JSON API, Consul-compatible endpoints, /metrics, /health, /ready "+
		"(off when empty; --dev serves it on 127.0.0.1:8500, Consul's port, unless set)")
	fs.StringVar(&f.dnsAddr, "dns-addr", "", "address the DNS server listens on, UDP and TCP: SERVICE.service.DOMAIN and _SERVICE._tcp.service.DOMAIN "+
		"(off when empty; --dev serves it on 127.0.0.1:8600, Consul's DNS port, unless set)")
	fs.StringVar(&f.dnsDomain, "dns-domain", "roster.", "the domain the DNS server answers for; names outside it are refused")
	fs.DurationVar(&f.dnsTTL, "dns-ttl", 5*time.Second, "TTL of DNS answers, and of negative answers (1s to 1h)")
	fs.StringVar(&f.initialCluster, "initial-cluster", "", "the voters of the cluster: ID=HOST:RAFTPORT,... (same list on every initial node). "+
		"With an empty data dir and --initial-cluster-state new, the node bootstraps once a majority of them answer that they have no cluster yet, "+
		"and waits to be caught up when one answers that it has; ignored when the data dir holds state")
	fs.StringVar(&f.clusterState, "initial-cluster-state", "new", "new: bootstrap --initial-cluster unless its peers already form a cluster; "+
		"existing: never bootstrap, an empty node waits for the leader to catch it up (or joins through --join)")
	fs.BoolVar(&f.bootstrap, "bootstrap", false, "first start of a grown cluster's first node only: bootstrap a new single-voter cluster that others --join. "+
		"Refused when the data dir holds state: restart that node with --join like the others")
	fs.DurationVar(&f.bootstrapListen, "bootstrap-listen", 0, fmt.Sprintf("with --bootstrap: how long to listen for the cluster this node may have belonged to before its data dir was lost, "+
		"before bootstrapping a new one (default %d heartbeat timeouts: 3s with the LAN timers)", cluster.DefaultBootstrapListenHeartbeats))
	fs.StringVar(&f.join, "join", "", "join an existing cluster through any of these gRPC addresses: HOST:PORT,...; "+
		"also how any node, the first one included, restarts or replaces a lost data dir")
	fs.BoolVar(&f.nonVoter, "non-voter", false, "with --join: join as a non-voting read replica")
	fs.BoolVar(&f.dev, "dev", false, "run a single in-memory node for trying Roster out; nothing is written to disk")
	fs.StringVar(&f.logLevel, "log-level", "info", "trace, debug, info, warn or error")
	fs.BoolVar(&f.logJSON, "log-json", false, "log JSON lines instead of text")
	fs.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", 8192, "Raft entries between snapshots")
	fs.DurationVar(&f.snapshotInterval, "snapshot-interval", 30*time.Second, "how often to check whether a snapshot is due")
	fs.Uint64Var(&f.trailingLogs, "trailing-logs", 10240, "Raft entries kept after a snapshot, so slow followers catch up without one")
	fs.IntVar(&f.historyEvents, "watch-history-events", 100_000, "change events kept for resuming watches")
	fs.IntVar(&f.historyBytes, "watch-history-bytes", 64<<20, "memory bound of the kept change events")
	fs.Float64Var(&f.selfPreservationThreshold, "self-preservation-threshold", cluster.DefaultSelfPreservationThreshold,
		"hold lease expiry when more than this share of all leases, or of one service's, would expire within the window; 0 turns self-preservation off; "+
			"the roster self-preservation command overrides it for the whole cluster")
	fs.DurationVar(&f.selfPreservationWindow, "self-preservation-window", cluster.DefaultSelfPreservationWindow, "the window \"at once\" means for self-preservation")
	fs.IntVar(&f.selfPreservationMinLeases, "self-preservation-min-leases", cluster.DefaultSelfPreservationMinLeases,
		"a group of fewer leases (all of them, or one service's) never trips self-preservation, so losing 2 of 3 instances is never held; "+
			"the roster self-preservation command overrides it for the whole cluster or one service")
	fs.DurationVar(&f.selfPreservationMaxHold, "self-preservation-max-hold", cluster.DefaultSelfPreservationMaxHold,
		fmt.Sprintf("the longest self-preservation holds one lease's expiry (%s to %s); then it expires all the same",
			cluster.MinSelfPreservationMaxHold, cluster.MaxSelfPreservationMaxHold))
	fs.DurationVar(&f.leaseTick, "lease-tick", cluster.DefaultLeaseTick, "granularity of lease timers: an expired lease is acted on within one tick")
	fs.Float64Var(&f.raftTimeoutScale, "raft-timeout-scale", 1, fmt.Sprintf("multiply the Raft heartbeat, election and leader-lease timeouts (%s, %s, %s: made for a LAN) by this; "+
		"raise it for slow disks or a WAN; every node should use the same", cluster.LANHeartbeatTimeout, cluster.LANElectionTimeout, cluster.LANLeaderLeaseTimeout))
	fs.DurationVar(&f.raftCommitTimeout, "raft-commit-timeout", cluster.LANCommitTimeout,
		"how long a leader with nothing new to send waits before sending followers an AppendEntries anyway. It is the latest a follower learns of a commit; "+
			"a lone write reaches followers at once either way (the leader tells them when its commit index reaches its last entry), and a shorter timeout mostly costs idle CPU")
	fs.StringVar(&f.raftLogStore, "raft-log-store", "", fmt.Sprintf("where the Raft log lives: %s (segment files under DATA-DIR/wal) or %s (raft.db); "+
		"default: what the data dir already holds, else %s. A data dir keeps the store it was created with", cluster.LogStoreWAL, cluster.LogStoreBolt, cluster.DefaultLogStore))
	fs.IntVar(&f.walSegmentKiB, "raft-wal-segment-kib", 64<<10, "with the wal log store: the size in KiB at which a new segment file of the Raft log starts. "+
		"A log compacted after a snapshot frees disk a whole segment at a time, so up to one segment more than --trailing-logs stays on disk")
	fs.IntVar(&f.gcHeadroomMiB, "gc-headroom-mib", defaultGCHeadroomMiB, "let the Go heap grow by at least this many MiB between garbage collections "+
		"(by the live heap when that is larger, as GOGC=100 does): fewer collections under load for at most this much more memory; "+
		"0 keeps Go's default; ignored when GOGC is set in the environment")
	fs.BoolVar(&f.enablePprof, "enable-pprof", false, "serve Go's runtime profiles on the HTTP address under /debug/pprof/ (needs --http-addr; "+
		"no token is checked there, so it cannot be combined with --acl)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long SIGTERM waits in all, leadership transfer included, for calls and streams to finish before closing them")
	fs.StringVar(&f.configFile, "config-file", "", "YAML file of settings, one a flag by its name (node-id: n1); flags and ROSTER_* variables win over it; unknown keys are errors")
	f.tls.register(fs)
	f.acl.register(fs)
	f.limits.register(fs)
	// The flags that take a comma-separated list; a config file may give
	// them a YAML list.
	for _, name := range []string{"initial-cluster", "join"} {
		_ = fs.SetAnnotation(name, commaListAnnotation, []string{"true"})
	}
	f.autopilot.register(fs)
}

// applyEnv sets every flag not given on the command line from ROSTER_<FLAG>
// (upper case, dashes as underscores), e.g. ROSTER_NODE_ID.
func applyEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed {
			return
		}
		name := "ROSTER_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := cmd.Flags().Set(fl.Name, v); serr != nil {
				err = usagef("%s=%q: %v", name, v, serr)
			}
		}
	})
	return err
}

// clusterConfig checks the flags and builds the node's configuration.
func (f *flags) clusterConfig() (cluster.Config, error) {
	var cfg cluster.Config
	modes := 0
	for _, on := range []bool{f.dev, f.bootstrap, f.initialCluster != "", f.join != ""} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return cfg, usagef("choose one of --dev, --bootstrap, --initial-cluster and --join")
	}
	existing := false
	switch f.clusterState {
	case "new":
	case "existing":
		existing = true
		if f.dev {
			return cfg, usagef("--initial-cluster-state existing cannot be combined with --dev")
		}
		if f.bootstrap {
			return cfg, usagef("--initial-cluster-state existing cannot be combined with --bootstrap: an existing cluster is never bootstrapped again")
		}
	default:
		return cfg, usagef("--initial-cluster-state %q: use new or existing", f.clusterState)
	}
	// The rule Join enforces: a node whose id it refuses could never join,
	// and one that bootstraps would keep the id in its data dir for good.
	if f.nodeID != "" {
		if err := store.CheckID("--node-id", f.nodeID); err != nil {
			return cfg, usageError{err.Error()}
		}
	}
	if f.dev {
		if f.nodeID == "" {
			f.nodeID = "dev"
		}
		cfg.InMemory = true
		cfg.Bootstrap = true
	} else {
		if f.nodeID == "" {
			return cfg, usagef("--node-id is required (or run --dev)")
		}
		if f.dataDir == "" {
			return cfg, usagef("--data-dir is required (or run --dev)")
		}
		if modes == 0 && !existing && !hasData(f.dataDir) {
			return cfg, usagef("%s holds no cluster state: give --initial-cluster, --bootstrap or --join (or --dev)", f.dataDir)
		}
		if f.bootstrap && hasData(f.dataDir) {
			return cfg, usagef("%s already holds this node's raft state and --bootstrap only starts a new cluster: "+
				"restart it with --join and the other members' gRPC addresses", f.dataDir)
		}
	}
	if f.nonVoter && f.join == "" {
		return cfg, usagef("--non-voter needs --join")
	}
	if err := checkHostPort("--grpc-addr", f.grpcAddr); err != nil {
		return cfg, err
	}
	if f.dev && !f.httpAddrSet {
		f.httpAddr = "127.0.0.1:8500"
	}
	if f.httpAddr != "" {
		if err := checkHostPort("--http-addr", f.httpAddr); err != nil {
			return cfg, err
		}
	}
	if f.gcHeadroomMiB < 0 || f.gcHeadroomMiB > 1<<20 {
		return cfg, usagef("--gc-headroom-mib %d must be between 0 and 1048576", f.gcHeadroomMiB)
	}
	if f.enablePprof && f.httpAddr == "" {
		return cfg, usagef("--enable-pprof serves profiles on the HTTP address: set --http-addr too")
	}
	if f.enablePprof && f.acl.enabled {
		return cfg, usagef("--enable-pprof serves profiles without a token check and cannot be combined with --acl")
	}
	if f.acl.bootstrapToken != "" && !f.acl.enabled {
		// Without --acl the token would be created and protect nothing,
		// while whoever holds it could believe it does.
		return cfg, usagef("--acl-bootstrap-token needs --acl")
	}
	if err := f.checkDNS(); err != nil {
		return cfg, err
	}
	if !f.dev {
		if err := checkHostPort("--raft-addr", f.raftAddr); err != nil {
			return cfg, err
		}
	}
	if f.join != "" {
		if _, err := f.joinAddrs(); err != nil {
			return cfg, err
		}
	}
	if f.initialCluster != "" {
		peers, err := parseInitialCluster(f.initialCluster)
		if err != nil {
			return cfg, err
		}
		cfg.InitialCluster = peers
	}
	cfg.NodeID = f.nodeID
	cfg.DataDir = f.dataDir
	cfg.Bootstrap = cfg.Bootstrap || f.bootstrap
	cfg.Existing = existing || f.join != ""
	cfg.RaftBind = f.raftAddr
	cfg.RaftAdvertise = f.raftAdvertise
	cfg.SnapshotThreshold = f.snapshotThreshold
	cfg.SnapshotInterval = f.snapshotInterval
	cfg.TrailingLogs = f.trailingLogs
	ap, err := f.autopilot.config()
	if err != nil {
		return cfg, err
	}
	cfg.Autopilot = ap
	if err := f.selfPreservation(&cfg); err != nil {
		return cfg, err
	}
	if f.leaseTick < 10*time.Millisecond || f.leaseTick > 10*time.Second {
		return cfg, usagef("--lease-tick %s must be between 10ms and 10s", f.leaseTick)
	}
	cfg.LeaseTick = f.leaseTick
	if math.IsNaN(f.raftTimeoutScale) || f.raftTimeoutScale < 0.2 || f.raftTimeoutScale > 50 {
		return cfg, usagef("--raft-timeout-scale %v must be between 0.2 and 50", f.raftTimeoutScale)
	}
	if f.raftCommitTimeout < time.Millisecond || f.raftCommitTimeout > time.Second {
		return cfg, usagef("--raft-commit-timeout %s must be between 1ms and 1s", f.raftCommitTimeout)
	}
	switch f.raftLogStore {
	case "", cluster.LogStoreWAL, cluster.LogStoreBolt:
	default:
		return cfg, usagef("--raft-log-store %q: use %s or %s", f.raftLogStore, cluster.LogStoreWAL, cluster.LogStoreBolt)
	}
	cfg.LogStore = f.raftLogStore
	if f.walSegmentKiB < 64 || f.walSegmentKiB > 1<<20 {
		return cfg, usagef("--raft-wal-segment-kib %d must be between 64 and 1048576 (1 GiB)", f.walSegmentKiB)
	}
	cfg.WALSegmentSize = f.walSegmentKiB << 10
	cfg.UseLANTimeouts(f.raftTimeoutScale)
	if f.bootstrapListen < 0 {
		return cfg, usagef("--bootstrap-listen %v must not be negative", f.bootstrapListen)
	}
	if f.bootstrapListen > 0 {
		cfg.BootstrapListen = f.bootstrapListen
	}
	cfg.CommitTimeout = f.raftCommitTimeout
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--snapshot-interval", f.snapshotInterval}, {"--shutdown-timeout", f.shutdownTimeout}} {
		if d.v < 0 {
			return cfg, usagef("%s %s must not be negative", d.flag, d.v)
		}
	}
	if f.historyEvents < 0 || f.historyBytes < 0 {
		return cfg, usagef("--watch-history-events %d and --watch-history-bytes %d must not be negative", f.historyEvents, f.historyBytes)
	}
	cfg.Store.HistoryEvents = f.historyEvents
	cfg.Store.HistoryBytes = f.historyBytes
	return cfg, nil
}

// selfPreservation checks the self-preservation flags into cfg.
func (f *flags) selfPreservation(cfg *cluster.Config) error {
	if math.IsNaN(f.selfPreservationThreshold) || f.selfPreservationThreshold < 0 || f.selfPreservationThreshold > 1 {
		return usagef("--self-preservation-threshold %v must be between 0 (off) and 1", f.selfPreservationThreshold)
	}
	if f.selfPreservationWindow < time.Second || f.selfPreservationWindow > time.Hour {
		return usagef("--self-preservation-window %s must be between 1s and 1h", f.selfPreservationWindow)
	}
	if f.selfPreservationMinLeases < 1 {
		return usagef("--self-preservation-min-leases %d must be at least 1", f.selfPreservationMinLeases)
	}
	if f.selfPreservationMaxHold < cluster.MinSelfPreservationMaxHold || f.selfPreservationMaxHold > cluster.MaxSelfPreservationMaxHold {
		return usagef("--self-preservation-max-hold %s must be between %s and %s",
			f.selfPreservationMaxHold, cluster.MinSelfPreservationMaxHold, cluster.MaxSelfPreservationMaxHold)
	}
	threshold := f.selfPreservationThreshold
	cfg.SelfPreservationThreshold = &threshold
	cfg.SelfPreservationWindow = f.selfPreservationWindow
	cfg.SelfPreservationMinLeases = f.selfPreservationMinLeases
	cfg.SelfPreservationMaxHold = f.selfPreservationMaxHold
	return nil
}

// checkDNS checks the DNS flags; --dev turns DNS on unless --dns-addr was given.
func (f *flags) checkDNS() error {
	if f.dev && !f.dnsAddrSet {
		f.dnsAddr = "127.0.0.1:8600"
	}
	if f.dnsAddr == "" {
		return nil
	}
	if err := checkHostPort("--dns-addr", f.dnsAddr); err != nil {
		return err
	}
	if _, ok := dns.IsDomainName(f.dnsDomain); !ok || strings.Trim(f.dnsDomain, ".") == "" {
		return usagef("--dns-domain %q must be a domain name such as roster.", f.dnsDomain)
	}
	if f.dnsTTL < time.Second || f.dnsTTL > time.Hour {
		return usagef("--dns-ttl %s must be between 1s and 1h", f.dnsTTL)
	}
	return nil
}

// hasData reports whether dir already holds a node's Raft state.
func hasData(dir string) bool {
	_, err := os.Stat(dir + "/raft.db")
	return err == nil
}

// joinAddrs returns the gRPC addresses --join lists.
func (f *flags) joinAddrs() ([]string, error) {
	addrs, err := client.ParseAddrs(f.join)
	if err != nil {
		return nil, usagef("--join: %v", err)
	}
	return addrs, nil
}

func checkHostPort(flag, hp string) error {
	if _, _, err := net.SplitHostPort(hp); err != nil {
		return usagef("%s %q must be HOST:PORT", flag, hp)
	}
	return nil
}

// parseInitialCluster reads ID=HOST:PORT,ID=HOST:PORT.
func parseInitialCluster(s string) ([]cluster.Peer, error) {
	var peers []cluster.Peer
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, usagef("--initial-cluster entry %q must be ID=HOST:RAFTPORT", part)
		}
		if err := checkHostPort("--initial-cluster", addr); err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, usagef("--initial-cluster names %q twice", id)
		}
		seen[id] = true
		peers = append(peers, cluster.Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

// advertised returns the address others should dial for a listener bound to
// bind, unless one is given. A lone dev node has no peers, so a wildcard
// bind is advertised as loopback.
func advertised(flag, given string, bound net.Addr, dev bool) (string, error) {
	if given != "" {
		return given, checkHostPort(flag, given)
	}
	host, port, _ := net.SplitHostPort(bound.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if dev {
			return net.JoinHostPort("127.0.0.1", port), nil
		}
		return "", usagef("listening on %s: set %s to an address other nodes can reach", bound, flag)
	}
	return net.JoinHostPort(host, port), nil
}

func (f *flags) String() string {
	return fmt.Sprintf("node=%s data=%s raft=%s grpc=%s", f.nodeID, f.dataDir, f.raftAddr, f.grpcAddr)
}

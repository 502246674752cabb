package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/buildinfo"
	"github.com/roster-registry/roster/internal/errtext"
	"github.com/roster-registry/roster/internal/tlsconfig"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

func newCommand() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "rosterd",
		Short: "Roster server: one node of a Raft-replicated service registry",
		Long: `rosterd runs one Roster node. Three or more nodes form a cluster that
replicates every registration through Raft; every node serves reads and
watches, and forwards writes to the leader.

Every flag can also be set as ROSTER_<FLAG> in the environment, e.g.
ROSTER_NODE_ID=n1, or in a YAML file named by --config-file, one line a
flag ("node-id: n1", "join: [10.0.0.1:7420, 10.0.0.2:7420]"); the command
line wins over the environment, which wins over the file. A node restarted with its --data-dir rejoins with its
identity and state; --initial-cluster is then ignored, and --bootstrap is
refused (restart that node with --join).

A node that starts with an empty data dir never starts a second cluster:
with --initial-cluster it first asks its peers, and waits to be caught up
when they already form a cluster; with --initial-cluster-state existing or
--join it never bootstraps. Until a leader has caught it up it takes no
part in elections, so a node that lost its disk cannot help elect a leader
that lacks the writes it had acknowledged.`,
		Example: `  # try it: one node in memory
  rosterd --dev

  # a 3-node cluster: the same --initial-cluster on every node
  rosterd --node-id n1 --data-dir /var/lib/roster --grpc-addr 10.0.0.1:7420 \
    --raft-addr 10.0.0.1:7421 --initial-cluster n1=10.0.0.1:7421,n2=10.0.0.2:7421,n3=10.0.0.3:7421

  # or grow one: --bootstrap the first (first start only), --join the rest
  rosterd --node-id n1 --data-dir d1 --bootstrap
  rosterd --node-id n2 --data-dir d2 --grpc-addr 127.0.0.1:7430 --raft-addr 127.0.0.1:7431 --join 127.0.0.1:7420

  # restart the first node later, with or without its data: --join the others
  rosterd --node-id n1 --data-dir d1 --join 127.0.0.1:7430,127.0.0.1:7440`,
		Version: buildinfo.String(),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q: rosterd takes only flags (see rosterd --help)", args[0])
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := applyConfigFile(cmd, f.configFile); err != nil {
				return err
			}
			f.httpAddrSet = cmd.Flags().Changed("http-addr")
			f.dnsAddrSet = cmd.Flags().Changed("dns-addr")
			return run(cmd.Context(), f)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	cmd.SetVersionTemplate("rosterd {{.Version}}\n")
	f.register(cmd.Flags())
	return cmd
}

func run(parent context.Context, f *flags) error {
	if parent == nil {
		parent = context.Background()
	}
	cfg, err := f.clusterConfig()
	if err != nil {
		return err
	}
	if err := f.tls.load(); err != nil {
		return err
	}
	cfg.RaftTLS = f.tls.raft()
	level := hclog.LevelFromString(f.logLevel)
	if level == hclog.NoLevel {
		return usagef("--log-level %q: use trace, debug, info, warn or error", f.logLevel)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "rosterd", Level: level, JSONFormat: f.logJSON, Output: os.Stderr})
	cfg.Logger = logger
	defer f.tls.reloadOnHangup(logger.Named("tls"), nil)()
	if tuner := startGCTuner(f, logger); tuner != nil {
		defer tuner.Stop()
	}
	if !f.dev && f.trailingLogs < f.snapshotThreshold {
		logger.Warn("--trailing-logs is below --snapshot-threshold: if the newest snapshot is ever unreadable, "+
			"the log will not reach back to the older one and this node will need to be rejoined",
			"trailing_logs", f.trailingLogs, "snapshot_threshold", f.snapshotThreshold)
	}

	lis, err := net.Listen("tcp", f.grpcAddr)
	if err != nil {
		return fmt.Errorf("listen for gRPC on %s: %w", f.grpcAddr, err)
	}
	defer lis.Close()
	if cfg.APIAddr, err = advertised("--grpc-advertise", f.grpcAdvertise, lis.Addr(), f.dev); err != nil {
		return err
	}
	if f.dev {
		// A dev node has no Raft listener: it names itself by its gRPC
		// address, so what reports a Raft address (Consul's
		// /v1/status/leader and /peers, `roster members`) gives one a
		// client can reach.
		_, cfg.Transport = raft.NewInmemTransport(raft.ServerAddress(cfg.APIAddr))
	}

	// Before the node starts, so Raft's metrics of the first election count.
	metrics, err := newMetrics(f)
	if err != nil {
		return err
	}
	node, err := cluster.New(cfg)
	if err != nil {
		return err
	}
	ropts := rpc.Options{Logger: logger.Named("rpc")}
	f.tls.rpcOptions(&ropts)
	f.acl.rpcOptions(&ropts, f.tls.on(), logger)
	if err := f.limits.apply(&ropts); err != nil {
		return err
	}
	srv := rpc.New(node, ropts)
	metrics.MustRegister(srv.Collector())
	g := grpc.NewServer(append(srv.ServerOptions(), f.tls.serverOptions(logger.Named("rpc"))...)...)
	srv.RegisterServices(g)
	srv.Start()
	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(lis) }()
	var front *frontEnds
	if front, err = startFrontEnds(f, logger, g, cfg.APIAddr, srv.Draining(), metrics, serveErr); err != nil {
		srv.Stop()
		g.Stop()
		_ = node.Shutdown()
		return err
	}
	logger.Info("serving", "node_id", cfg.NodeID, "grpc", cfg.APIAddr, "raft", node.RaftAddr(), "http", front.httpAddr(), "dns", front.dnsAddr(),
		"tls", f.tls.on(), "dev", f.dev)

	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	joinErr := make(chan error, 1)
	if f.join != "" {
		go func() {
			if err := joinLoop(ctx, logger, f, node); err != nil {
				joinErr <- err
			}
		}()
	}

	cause := waitForStop(ctx, logger, serveErr, joinErr, node)
	if err := shutdown(logger, f.shutdownTimeout, node, srv, g, front); err != nil {
		return err
	}
	return cause
}

// raftWatch is what waitForStop watches of the node: Raft shutting down on
// its own, and why.
type raftWatch interface {
	RaftStopped() <-chan struct{}
	RaftStopReason() error
}

// waitForStop waits for a signal (ctx), a listener that stops serving, a
// join the cluster refused for good (joinErr), or Raft shutting down on its
// own (a leader that removed itself from the cluster does). It returns nil
// after a signal and an error otherwise, so rosterd exits non-zero and a
// supervisor restarts it: a node whose Raft has stopped can serve nothing,
// and restarted with --join it rejoins.
func waitForStop(ctx context.Context, logger hclog.Logger, serveErr, joinErr <-chan error, node raftWatch) error {
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
		return nil
	case err := <-serveErr:
		logger.Error("a listener stopped; shutting down", "error", err)
		return fmt.Errorf("a listener stopped: %w", err)
	case err := <-joinErr:
		logger.Error("the cluster will not add this node; shutting down", "error", err)
		return err
	case <-node.RaftStopped():
		err := node.RaftStopReason()
		if errors.Is(err, cluster.ErrRemoved) {
			logger.Error("this node was removed from the cluster; shutting down. Restart it with --join to rejoin")
		} else {
			logger.Error("raft stopped; shutting down", "reason", err)
		}
		return fmt.Errorf("raft stopped: %w", err)
	}
}

// shutdown hands leadership away (so the cluster does not wait an election
// timeout), drains (health NOT_SERVING, streams and blocking reads ended so
// their clients go to another node), lets unary and HTTP calls finish, then
// stops Raft and closes the stores. Every phase shares the one deadline,
// --shutdown-timeout from the signal: what is still running when it passes
// is closed, so SIGTERM never takes longer than that (plus closing).
func shutdown(logger hclog.Logger, timeout time.Duration, node *cluster.Node, srv *rpc.Server, g *grpc.Server, front *frontEnds) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return shutdownWithin(ctx, logger, node, srv, g, front)
}

// shutdownWithin is shutdown with its deadline in ctx.
func shutdownWithin(ctx context.Context, logger hclog.Logger, node *cluster.Node, srv *rpc.Server, g *grpc.Server, front *frontEnds) error {
	if node.IsLeader() && voters(node) > 1 {
		// At most half the time, so calls keep the other half.
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if d, ok := ctx.Deadline(); ok {
			tctx, cancel = context.WithTimeout(ctx, time.Until(d)/2)
		}
		if err := node.TransferLeadership(tctx, ""); err != nil {
			logger.Info("no leadership transfer before shutdown", "reason", err)
		}
		cancel()
	}
	srv.Drain()
	front.stop(ctx, logger)
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		logger.Warn("calls still running after the shutdown timeout; closing them")
		g.Stop()
	}
	srv.Stop()
	if err := node.Shutdown(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// joinWaitForLeader is how long a node whose own configuration lists it
// waits to hear from a leader before it asks to join anyway: long against
// an election, short against an operator's patience.
var joinWaitForLeader = 10 * time.Second

// joinLoop asks the cluster to add this node until it is in. A node whose
// own configuration lists it and that hears from a leader is a member and
// skips it. One restarted after it was removed joins: it finds others
// listed there but not itself, or, when it was down while it was removed
// and never learned of it, still lists itself but hears from no leader,
// since a leader does not replicate to a node it removed. Joining is
// idempotent: a member that joins again changes nothing.
//
// Failures that may pass (no leader yet, a node down, a timeout) are
// retried for as long as ctx lasts. A refusal that asking again cannot
// change (see permanentJoinRefusal) ends the loop with an error, and the
// process with it.
func joinLoop(ctx context.Context, logger hclog.Logger, f *flags, node *cluster.Node) error {
	ms, err := node.Members()
	listed := false
	if err == nil {
		for _, m := range ms {
			listed = listed || m.NodeID == node.ID()
		}
	}
	if listed {
		if awaitLeader(ctx, node, joinWaitForLeader) {
			logger.Info("this node is in its cluster configuration and hears from a leader; not joining again", "members", len(ms))
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		logger.Info("this node is in its own cluster configuration but has heard from no leader; joining again in case it was removed while it was down",
			"waited", joinWaitForLeader, "via", f.join)
	} else if len(ms) > 0 {
		logger.Info("this node is not in its cluster configuration (it was removed); joining again", "members", len(ms), "via", f.join)
	} else {
		logger.Info("joining the cluster", "via", f.join)
	}
	// Checked with the other flags before the node started.
	addrs, err := f.joinAddrs()
	if err != nil {
		return fmt.Errorf("cannot join: %w", err)
	}
	req := &rosterv1.JoinRequest{NodeId: node.ID(), RaftAddr: node.RaftAddr(), ApiAddr: node.APIAddr(), NonVoter: f.nonVoter}
	backoff := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		addr := addrs[attempt%len(addrs)]
		err := joinOnce(ctx, addr, req, f.tls.peerDialOptions())
		if err == nil {
			logger.Info("joined the cluster", "via", addr)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if st, ok := status.FromError(err); ok && permanentJoinRefusal(st.Code()) {
			return fmt.Errorf("%s refused to add node %q (%s): %s", addr, req.NodeId, errtext.CodeWords(st.Code()), errtext.OneLine(st.Message()))
		}
		if hint := tlsconfig.MismatchHint(err.Error(), f.tls.on()); hint != "" {
			logger.Warn("join failed; retrying", "via", addr, "error", err, "hint", hint)
		} else {
			logger.Warn("join failed; retrying", "via", addr, "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)))):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// permanentJoinRefusal reports whether a Join that failed with code would
// fail the same way however often it is asked again: the request itself
// is wrong (InvalidArgument: an id or address the cluster refuses), or
// this node may not join (PermissionDenied, Unauthenticated: ACLs or a
// certificate that is not a server's). FailedPrecondition is retried: the
// leader gives it for a membership change it cannot make now (replacing
// the entry of the last voter), which other nodes joining can change.
func permanentJoinRefusal(code codes.Code) bool {
	switch code {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// awaitLeader reports whether node knows a leader within d.
func awaitLeader(ctx context.Context, node *cluster.Node, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, _ := node.Leader(); id != "" {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

func joinOnce(ctx context.Context, addr string, req *rosterv1.JoinRequest, dial []grpc.DialOption) error {
	cc, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err = rosterv1.NewClusterClient(cc).Join(ctx, req)
	return err
}

func voters(node *cluster.Node) int {
	ms, err := node.Members()
	if err != nil {
		return 0
	}
	n := 0
	for _, m := range ms {
		if m.Voter {
			n++
		}
	}
	return n
}

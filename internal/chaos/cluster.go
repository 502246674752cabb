package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-registry/roster/internal/freeport"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// node is one slot of the cluster: a rosterd process (or container) and the
// harness's raw gRPC connection to it.
type node struct {
	id      string
	slot    int
	api     string // gRPC address the harness dials
	raft    string // Raft address (process clusters)
	dataDir string
	logPath string
	netns   string

	conn *grpc.ClientConn
	reg  rosterv1.RegistryClient
	cl   rosterv1.ClusterClient

	// Guarded by cluster.mu.
	p      *proc
	up     bool // started and not killed
	paused bool
	member bool // in the Raft configuration, as far as the harness knows
}

// cluster is the system under test: processes on loopback, processes in
// network namespaces, or the Docker compose cluster.
type cluster struct {
	cfg    *Config
	docker bool
	topo   *netTopo // nil: no partitions or slow network
	// noPartition says why partitions cannot run, when they cannot.
	noPartition string

	mu    sync.Mutex
	nodes []*node
	log   func(format string, args ...any)
}

func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
}

func (n *node) connect() error {
	cc, err := dial(n.api)
	if err != nil {
		return err
	}
	n.conn, n.reg, n.cl = cc, rosterv1.NewRegistryClient(cc), rosterv1.NewClusterClient(cc)
	return nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) { return freeport.Loopback(n) }

// newProcessCluster prepares cfg.Nodes initial slots plus one spare for
// membership changes, in network namespaces when possible.
func newProcessCluster(cfg *Config, logf func(string, ...any)) (*cluster, error) {
	c := &cluster{cfg: cfg, log: logf}
	slots := cfg.Nodes + 1
	if cfg.Netns != "off" {
		if ok, why := netnsUsable(); ok {
			t, err := newNetTopo(logf)
			if err != nil {
				why = err.Error()
			} else {
				c.topo = t
			}
			if why != "" {
				c.noPartition = "network namespaces unusable: " + why
			}
		} else {
			c.noPartition = "network namespaces unusable: " + why
		}
		if c.topo == nil && cfg.Netns == "on" {
			return nil, fmt.Errorf("--netns on: %s", c.noPartition)
		}
	} else {
		c.noPartition = "--netns off"
	}
	var ports []int
	if c.topo == nil {
		var err error
		if ports, err = freePorts(2 * slots); err != nil {
			return nil, err
		}
	}
	for i := 0; i < slots; i++ {
		n := &node{id: fmt.Sprintf("n%d", i+1), slot: i + 1}
		n.dataDir = filepath.Join(cfg.Results, "data", n.id)
		n.logPath = filepath.Join(cfg.Results, "nodes", n.id+".log")
		if c.topo != nil {
			ns, ip, err := c.topo.addNode(n.id, n.slot)
			if err != nil {
				c.close()
				return nil, err
			}
			n.netns = ns
			n.api, n.raft = ip+":7420", ip+":7421"
		} else {
			n.api = fmt.Sprintf("127.0.0.1:%d", ports[2*i])
			n.raft = fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])
		}
		if err := n.connect(); err != nil {
			c.close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	for _, d := range []string{"data", "nodes"} {
		if err := os.MkdirAll(filepath.Join(cfg.Results, d), 0o755); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// baseArgs are the flags every process node runs with: small snapshot
// thresholds and, for the WAL log store, small segments (raft-wal frees a
// compacted log a segment at a time, and may serve compacted entries from
// the segment it is writing), so a follower that was down catches up by
// snapshot install.
func (c *cluster) baseArgs(n *node) []string {
	args := []string{
		"--node-id", n.id, "--data-dir", n.dataDir,
		"--grpc-addr", n.api, "--raft-addr", n.raft,
		"--log-level", c.cfg.LogLevel,
		"--snapshot-threshold", fmt.Sprint(c.cfg.SnapshotThreshold),
		"--trailing-logs", fmt.Sprint(c.cfg.TrailingLogs),
		"--snapshot-interval", "1s",
		"--raft-wal-segment-kib", "64",
		// The workload checks correctness, not the per-client limits.
		"--rate-limit", "0", "--read-rate-limit", "0",
	}
	if c.cfg.LogStore != "" {
		args = append(args, "--raft-log-store", c.cfg.LogStore)
	}
	return args
}

// bootstrap starts the initial nodes with --initial-cluster.
func (c *cluster) bootstrap() error {
	if c.docker {
		return c.dockerUp()
	}
	var initial []string
	for _, n := range c.nodes[:c.cfg.Nodes] {
		initial = append(initial, n.id+"="+n.raft)
	}
	for _, n := range c.nodes[:c.cfg.Nodes] {
		args := append(c.baseArgs(n), "--initial-cluster", strings.Join(initial, ","))
		if err := c.spawn(n, args); err != nil {
			return err
		}
		n.member = true
	}
	return nil
}

func (c *cluster) spawn(n *node, args []string) error {
	p, err := startProc(n.netns, c.cfg.Rosterd, args, n.logPath)
	if err != nil {
		return fmt.Errorf("start %s: %w", n.id, err)
	}
	c.mu.Lock()
	n.p, n.up, n.paused = p, true, false
	c.mu.Unlock()
	return nil
}

// members returns the slots the harness believes are in the configuration.
func (c *cluster) members() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*node
	for _, n := range c.nodes {
		if n.member {
			out = append(out, n)
		}
	}
	return out
}

// serving returns member nodes that are up and not paused: where a write
// can be sent without knowingly sending it into a hole.
func (c *cluster) serving() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*node
	for _, n := range c.nodes {
		if n.member && n.up && !n.paused {
			out = append(out, n)
		}
	}
	return out
}

// pick returns a random serving node, or any member when none serves.
func (c *cluster) pick(r *rand.Rand) *node {
	s := c.serving()
	if len(s) == 0 {
		s = c.members()
	}
	if len(s) == 0 {
		return c.nodes[0]
	}
	return s[r.IntN(len(s))]
}

func (c *cluster) byID(id string) *node {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// status asks one node for its status with a short deadline.
func (c *cluster) status(ctx context.Context, n *node, hash bool) (*rosterv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	return n.cl.Status(ctx, &rosterv1.StatusRequest{IncludeHash: hash})
}

func isLeaderState(s string) bool { return strings.Contains(strings.ToLower(s), "leader") }

// leader returns the serving node that reports itself leader at the highest
// term, or nil.
func (c *cluster) leader(ctx context.Context) *node {
	var best *node
	var term uint64
	for _, n := range c.serving() {
		st, err := c.status(ctx, n, false)
		if err != nil || !isLeaderState(st.State) {
			continue
		}
		if best == nil || st.Term > term {
			best, term = n, st.Term
		}
	}
	return best
}

// waitLeader polls until a serving node leads, or timeout.
func (c *cluster) waitLeader(ctx context.Context, timeout time.Duration) (*node, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l := c.leader(ctx); l != nil {
			return l, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("no leader within %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill sends SIGKILL.
func (c *cluster) kill(n *node) error {
	if c.docker {
		if err := dockerCluster(c.cfg, "kill", dockerName(n)); err != nil {
			return err
		}
	} else {
		n.p.kill()
	}
	c.mu.Lock()
	n.up, n.paused = false, false
	c.mu.Unlock()
	return nil
}

// restart starts a killed node again from its data directory.
func (c *cluster) restart(n *node) error {
	if c.docker {
		if err := dockerCluster(c.cfg, "start", dockerName(n)); err != nil {
			return err
		}
		c.mu.Lock()
		n.up, n.paused = true, false
		c.mu.Unlock()
		return nil
	}
	// With data on disk the node rejoins with its identity and needs no
	// bootstrap flags.
	return c.spawn(n, c.baseArgs(n))
}

// pause sends SIGSTOP (docker pause: the cgroup freezer).
func (c *cluster) pause(n *node) error {
	var err error
	if c.docker {
		err = dockerCluster(c.cfg, "pause", dockerName(n))
	} else {
		err = n.p.signal(syscall.SIGSTOP)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	n.paused = true
	c.mu.Unlock()
	return nil
}

// resume sends SIGCONT.
func (c *cluster) resume(n *node) error {
	var err error
	if c.docker {
		err = dockerCluster(c.cfg, "unpause", dockerName(n))
	} else {
		err = n.p.signal(syscall.SIGCONT)
	}
	c.mu.Lock()
	n.paused = false
	c.mu.Unlock()
	return err
}

// canPartition says why partitions cannot run here ("" when they can).
func (c *cluster) canPartition() string {
	if c.docker {
		return ""
	}
	if c.topo == nil {
		return c.noPartition
	}
	return ""
}

// partition cuts traffic between every pair in pairs (process clusters), or
// cuts the given nodes off entirely (Docker: network disconnect).
func (c *cluster) partition(pairs [][2]*node, isolate []*node) error {
	if c.docker {
		var names []string
		for _, n := range isolate {
			names = append(names, dockerName(n))
		}
		return dockerCluster(c.cfg, append([]string{"partition"}, names...)...)
	}
	for _, p := range pairs {
		if err := c.topo.block(p[0].id, p[1].id); err != nil {
			return err
		}
	}
	return nil
}

// heal removes partitions and network degradation.
func (c *cluster) heal() error {
	if c.docker {
		return dockerCluster(c.cfg, "heal")
	}
	if c.topo == nil {
		return nil
	}
	return c.topo.heal()
}

// join starts n as a new voter joining through the serving members.
func (c *cluster) join(n *node) error {
	var addrs []string
	for _, m := range c.serving() {
		addrs = append(addrs, m.api)
	}
	if err := os.RemoveAll(n.dataDir); err != nil {
		return err
	}
	if err := c.spawn(n, append(c.baseArgs(n), "--join", strings.Join(addrs, ","))); err != nil {
		return err
	}
	c.mu.Lock()
	n.member = true
	c.mu.Unlock()
	return nil
}

// voters returns the node ids in the Raft configuration, as the leader sees it.
func (c *cluster) voters(ctx context.Context) ([]string, error) {
	l := c.leader(ctx)
	if l == nil {
		return nil, errors.New("no leader")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := l.cl.Members(ctx, &rosterv1.MembersRequest{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range resp.Members {
		if m.Voter {
			ids = append(ids, m.NodeId)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// remove asks the leader to remove node id from the configuration.
func (c *cluster) remove(ctx context.Context, id string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if l := c.leader(ctx); l == nil {
			err = errors.New("no leader")
		} else {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = l.cl.RemoveNode(cctx, &rosterv1.RemoveNodeRequest{NodeId: id})
			cancel()
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("remove %s: %w", id, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// reviveAll resumes paused nodes and restarts killed members.
func (c *cluster) reviveAll() []error {
	var errs []error
	for _, n := range c.nodes {
		c.mu.Lock()
		paused, up, member := n.paused, n.up, n.member
		c.mu.Unlock()
		if paused {
			if err := c.resume(n); err != nil {
				errs = append(errs, fmt.Errorf("resume %s: %w", n.id, err))
			}
		}
		if member && !up {
			if err := c.restart(n); err != nil {
				errs = append(errs, fmt.Errorf("restart %s: %w", n.id, err))
			}
		}
	}
	return errs
}

// close stops every process (SIGTERM, then SIGKILL), or takes the Docker
// cluster down, and removes the network namespaces.
func (c *cluster) close() {
	for _, n := range c.nodes {
		if n.conn != nil {
			n.conn.Close()
		}
	}
	if c.docker {
		c.dockerLogs()
		if err := dockerCluster(c.cfg, "down", "--purge"); err != nil {
			c.log("docker-cluster.sh down: %v", err)
		}
		return
	}
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n.p != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := n.p.terminate(10 * time.Second); err != nil {
					c.log("%s: %v", n.id, err)
				}
			}()
		}
	}
	wg.Wait()
	if c.topo != nil {
		c.topo.close()
	}
}

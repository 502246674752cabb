package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-registry/roster/internal/freeport"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// localNode is one rosterd process a benchmark started itself.
type localNode struct {
	id      string
	grpc    string
	raft    string
	http    string // --http-addr: the JSON API, /metrics, and /debug/pprof with --enable-pprof
	dataDir string
	logPath string
	args    []string
	cmd     *exec.Cmd
	exited  chan struct{}
	conn    *grpc.ClientConn
	// replica: a non-voting read replica (rosterd --join --non-voter).
	replica bool
	// killed: the benchmark killed it (kill), so its exit is no failure.
	killed bool
}

// localCluster is a 3-node (or n-node) cluster of real rosterd processes
// on loopback ports, with data under a temporary directory that is
// removed when it stops.
type localCluster struct {
	rosterd string
	base    string
	nodes   []*localNode
	// keep: stop leaves base (data and logs) in place, as an error
	// message promised.
	keep bool
}

// findRosterd returns the rosterd binary to start: the given path, else
// rosterd beside this executable, else bin/rosterd, else rosterd on PATH.
func findRosterd(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", usagef("--rosterd %s: %v", given, err)
		}
		return given, nil
	}
	var candidates []string
	if self, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(self), "rosterd"))
	}
	candidates = append(candidates, filepath.Join("bin", "rosterd"))
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	if p, err := exec.LookPath("rosterd"); err == nil {
		return p, nil
	}
	return "", usagef("no rosterd binary found beside roster, in bin/ or on PATH: give --rosterd PATH (go build -o bin/rosterd ./cmd/rosterd)")
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) { return freeport.Loopback(n) }

// benchLimitsOff turns off rosterd's per-client limits on a local bench
// cluster: every bench client comes from 127.0.0.1, one client to the
// limiter, so the default 1,000 writes/s per client would be measured
// instead of Roster. They go first, so a --rosterd-flag overrides them.
var benchLimitsOff = []string{"--rate-limit=0", "--read-rate-limit=0", "--max-instances-per-service=0",
	"--max-instances-per-namespace=0", "--max-watchers-per-connection=0"}

// startLocalCluster starts n rosterd processes with --initial-cluster,
// benchLimitsOff and the extra flags, and waits until they agree on a
// leader.
func startLocalCluster(ctx context.Context, rosterd string, n int, extra []string) (*localCluster, error) {
	base, err := os.MkdirTemp("", "roster-bench-")
	if err != nil {
		return nil, err
	}
	c := &localCluster{rosterd: rosterd, base: base}
	ports, err := freePorts(3 * n)
	if err != nil {
		c.stop()
		return nil, err
	}
	var initial []string
	for i := range n {
		nd := &localNode{
			id:      fmt.Sprintf("n%d", i+1),
			grpc:    fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			raft:    fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			http:    fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
			dataDir: filepath.Join(base, fmt.Sprintf("n%d", i+1)),
		}
		nd.logPath = nd.dataDir + ".log"
		initial = append(initial, nd.id+"="+nd.raft)
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		nd.args = append([]string{"--node-id", nd.id, "--data-dir", nd.dataDir, "--grpc-addr", nd.grpc,
			"--raft-addr", nd.raft, "--http-addr", nd.http, "--initial-cluster", strings.Join(initial, ",")}, slices.Concat(benchLimitsOff, extra)...)
		if err := nd.start(rosterd); err != nil {
			c.stop()
			return nil, err
		}
		nd.conn, err = grpc.NewClient(nd.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.stop()
			return nil, err
		}
	}
	if _, err := c.waitLeader(ctx, 60*time.Second, nil); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (nd *localNode) start(rosterd string) error {
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	nd.cmd = exec.Command(rosterd, nd.args...)
	nd.cmd.Stdout, nd.cmd.Stderr = logf, logf
	nd.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Its own process group keeps a terminal's Ctrl-C from reaching it
	// before the benchmark has stopped it; where the system allows, it is
	// also killed when the benchmark dies without stopping it.
	killWithParent(nd.cmd.SysProcAttr)
	if err := nd.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", rosterd, err)
	}
	nd.exited = make(chan struct{})
	nd.killed = false
	cmd, exited := nd.cmd, nd.exited
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return nil
}

// addReplicas starts n non-voting read replicas (rosterd --join
// --non-voter through every voter) with the extra flags, and waits until
// each is a member, names the leader and has applied what the leader had
// committed when they joined.
func (c *localCluster) addReplicas(ctx context.Context, n int, extra []string) error {
	if n == 0 {
		return nil
	}
	join := strings.Join(c.addrs(), ",")
	ports, err := freePorts(3 * n)
	if err != nil {
		return err
	}
	var added []*localNode
	for i := range n {
		nd := &localNode{
			id:      fmt.Sprintf("r%d", i+1),
			grpc:    fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			raft:    fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			http:    fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
			dataDir: filepath.Join(c.base, fmt.Sprintf("r%d", i+1)),
			replica: true,
		}
		nd.logPath = nd.dataDir + ".log"
		nd.args = append([]string{"--node-id", nd.id, "--data-dir", nd.dataDir, "--grpc-addr", nd.grpc,
			"--raft-addr", nd.raft, "--http-addr", nd.http, "--join", join, "--non-voter"}, slices.Concat(benchLimitsOff, extra)...)
		// In c.nodes before it starts, so stop kills it whatever happens next.
		c.nodes = append(c.nodes, nd)
		added = append(added, nd)
		if err := nd.start(c.rosterd); err != nil {
			return err
		}
		if nd.conn, err = grpc.NewClient(nd.grpc, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c.replicasReady(ctx, added) {
			return nil
		}
		for _, nd := range added {
			if !nd.alive() {
				return fmt.Errorf("replica %s exited (log: %s)", nd.id, nd.logPath)
			}
		}
		if time.Now().After(deadline) {
			c.keep = true
			return fmt.Errorf("the replicas did not join and catch up within 60s (data and logs kept under %s)", c.base)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// replicasReady reports whether the leader lists every replica as a
// non-voter and each has applied what the leader has applied. Not the
// leader's commit index: the replicas' own joins are committed entries
// that change no registry state, so no node's applied index reaches them
// until the next write.
func (c *localCluster) replicasReady(ctx context.Context, replicas []*localNode) bool {
	leader := c.agreedLeader(ctx, nil)
	if leader == nil {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	ms, err := rosterv1.NewClusterClient(leader.conn).Members(cctx, &rosterv1.MembersRequest{})
	cancel()
	if err != nil {
		return false
	}
	nonVoter := map[string]bool{}
	for _, m := range ms.GetMembers() {
		nonVoter[m.GetNodeId()] = !m.GetVoter()
	}
	lst, err := leader.status(ctx)
	if err != nil {
		return false
	}
	for _, nd := range replicas {
		if !nonVoter[nd.id] {
			return false
		}
		st, err := nd.status(ctx)
		if err != nil || st.GetAppliedIndex() < lst.GetAppliedIndex() {
			return false
		}
	}
	return true
}

// kill sends SIGKILL and waits until the process is gone.
func (nd *localNode) kill() {
	if nd.cmd == nil || nd.cmd.Process == nil {
		return
	}
	select {
	case <-nd.exited:
		return
	default:
	}
	nd.killed = true
	_ = nd.cmd.Process.Signal(syscall.SIGKILL)
	<-nd.exited
}

func (nd *localNode) alive() bool {
	if nd.cmd == nil {
		return false
	}
	select {
	case <-nd.exited:
		return false
	default:
		return true
	}
}

func (nd *localNode) pid() int {
	if !nd.alive() {
		return 0
	}
	return nd.cmd.Process.Pid
}

func (nd *localNode) status(ctx context.Context) (*rosterv1.StatusResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return rosterv1.NewClusterClient(nd.conn).Status(cctx, &rosterv1.StatusRequest{})
}

// waitLeader waits until every live node other than skip names the same
// leader, itself live, and returns it.
func (c *localCluster) waitLeader(ctx context.Context, timeout time.Duration, skip *localNode) (*localNode, error) {
	deadline := time.Now().Add(timeout)
	for {
		if leader := c.agreedLeader(ctx, skip); leader != nil {
			return leader, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no leader agreed within %s (logs under %s)", timeout, c.base)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *localCluster) agreedLeader(ctx context.Context, skip *localNode) *localNode {
	id := ""
	for _, nd := range c.nodes {
		if nd == skip || !nd.alive() {
			continue
		}
		st, err := nd.status(ctx)
		if err != nil || st.GetLeaderId() == "" || (id != "" && st.GetLeaderId() != id) {
			return nil
		}
		id = st.GetLeaderId()
	}
	for _, nd := range c.nodes {
		if nd.id == id && nd.alive() {
			return nd
		}
	}
	return nil
}

// addrs returns the gRPC addresses of every node.
func (c *localCluster) addrs() []string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, nd.grpc)
	}
	return out
}

// stop kills every process and removes the data, unless a node had
// exited on its own: then the data and logs are kept, and stderr says
// where.
func (c *localCluster) stop() {
	var died []string
	for _, nd := range c.nodes {
		if nd.cmd != nil && !nd.alive() && !nd.killed {
			died = append(died, nd.id)
		}
		nd.kill()
		if nd.conn != nil {
			nd.conn.Close()
		}
	}
	if len(died) > 0 {
		fmt.Fprintf(os.Stderr, "bench: %s exited during the run; data and logs (NODE.log) kept under %s\n", strings.Join(died, ", "), c.base)
		return
	}
	if c.keep {
		return
	}
	os.RemoveAll(c.base)
}

// procMemory is a process's resident memory from /proc/PID/status.
type procMemory struct {
	RSS     int64 `json:"rss_bytes"`
	RSSAnon int64 `json:"anon_rss_bytes"`
}

// readProcMemory reads VmRSS and RssAnon of pid.
func readProcMemory(pid int) (procMemory, error) {
	var m procMemory
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 1 {
			continue
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "VmRSS":
			m.RSS = kb << 10
		case "RssAnon":
			m.RSSAnon = kb << 10
		}
	}
	if m.RSS == 0 {
		return m, errors.New("no VmRSS in /proc status")
	}
	return m, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on Linux.
const clockTicks = 100

// readProcCPU returns the user+system CPU time pid has used.
func readProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// After ")": state is field 3 of stat, utime 14, stime 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

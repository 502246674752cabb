// Package e2e drives real rosterd processes (built from this tree) and the
// roster CLI, for tests that need crashes a process cannot fake: kill -9,
// restarts from the data directory, whole-cluster restarts.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/freeport"
)

// Binaries builds rosterd and roster once per test binary into a temp dir.
func Binaries(t testing.TB) (rosterd, roster string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "roster-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		root := repoRoot()
		for _, name := range []string{"rosterd", "roster"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", name, err, out)
				return
			}
		}
		binDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "rosterd"), filepath.Join(binDir, "roster")
}

var (
	buildOnce sync.Once
	buildErr  error
	binDir    string
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// FreePorts returns n loopback ports that were free a moment ago.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := freeport.Loopback(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// Proc is one rosterd process.
type Proc struct {
	ID       string
	GRPC     string
	Raft     string
	DataDir  string
	LogPath  string
	args     []string
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	rosterd  string
	t        testing.TB
	stopOnce sync.Once
}

// Cluster is a set of rosterd processes started with --initial-cluster.
type Cluster struct {
	T      testing.TB
	Procs  []*Proc
	Roster string
	// Env is added to the environment of every CLI run (ROSTER_TLS_CA...).
	Env []string
}

// newProc describes node i (n1, n2, ...) on two of ports, with its data
// dir and log under base. It is not started.
func newProc(t testing.TB, rosterd, base string, ports []int, i int) *Proc {
	p := &Proc{
		ID:      fmt.Sprintf("n%d", i+1),
		GRPC:    fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
		Raft:    fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
		DataDir: filepath.Join(base, fmt.Sprintf("n%d", i+1)),
		rosterd: rosterd,
		t:       t,
	}
	p.LogPath = p.DataDir + ".log"
	return p
}

// killOnCleanup kills every process when the test ends and, when it
// failed, logs the last tail lines of each node's log.
func (c *Cluster) killOnCleanup(tail int) {
	t := c.T
	t.Cleanup(func() {
		for _, p := range c.Procs {
			p.Kill()
		}
		if t.Failed() {
			for _, p := range c.Procs {
				b, _ := os.ReadFile(p.LogPath)
				lines := strings.Split(string(b), "\n")
				if len(lines) > tail {
					lines = lines[len(lines)-tail:]
				}
				t.Logf("--- last lines of %s's log:\n%s", p.ID, strings.Join(lines, "\n"))
			}
		}
	})
}

// StartCluster starts n nodes on free loopback ports with data under a temp
// dir. Every process is killed when the test ends.
func StartCluster(t testing.TB, n int, extra ...string) *Cluster {
	t.Helper()
	rosterd, roster := Binaries(t)
	ports := FreePorts(t, 2*n)
	base := t.TempDir()
	c := &Cluster{T: t, Roster: roster}
	var initial []string
	for i := 0; i < n; i++ {
		p := newProc(t, rosterd, base, ports, i)
		initial = append(initial, p.ID+"="+p.Raft)
		c.Procs = append(c.Procs, p)
	}
	for _, p := range c.Procs {
		p.args = append([]string{"--node-id", p.ID, "--data-dir", p.DataDir, "--grpc-addr", p.GRPC,
			"--raft-addr", p.Raft, "--initial-cluster", strings.Join(initial, ","), "--log-level", "debug"}, extra...)
		p.Start()
	}
	c.killOnCleanup(40)
	return c
}

// Start (re)starts the process with its original flags and data dir.
func (p *Proc) Start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(p.rosterd, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.ID, err)
	}
	p.exited = make(chan struct{})
	p.stopOnce = sync.Once{}
	cmd, exited := p.cmd, p.exited
	go func() {
		p.exitErr = cmd.Wait()
		logf.Close()
		close(exited)
	}()
}

// Kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (p *Proc) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Terminate sends SIGTERM and waits up to timeout for a clean exit.
func (p *Proc) Terminate(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.exitErr
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM", p.ID, timeout)
	}
}

// Addrs returns every node's gRPC address, comma-separated.
func (c *Cluster) Addrs() string {
	var out []string
	for _, p := range c.Procs {
		out = append(out, p.GRPC)
	}
	return strings.Join(out, ",")
}

// CLI runs the roster CLI and returns stdout, stderr and the exit code.
func (c *Cluster) CLI(args ...string) (string, string, int) {
	cmd := exec.Command(c.Roster, args...)
	cmd.Env = append(os.Environ(), c.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.T.Fatalf("run roster: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

// MustJSON runs the CLI with -o json, requires exit 0, and decodes stdout.
func (c *Cluster) MustJSON(out any, args ...string) {
	c.T.Helper()
	stdout, stderr, code := c.CLI(append(args, "-o", "json")...)
	if code != 0 {
		c.T.Fatalf("roster %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		c.T.Fatalf("roster %s: bad JSON %q: %v", strings.Join(args, " "), stdout, err)
	}
}

// Status is the subset of `roster status -o json` tests read.
type Status struct {
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	LeaderID     string `json:"leader_id"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

// Status asks one node for its status; ok is false when it does not answer.
func (c *Cluster) Status(p *Proc) (Status, bool) {
	var st Status
	stdout, _, code := c.CLI("--addr", p.GRPC, "--timeout", "2s", "status", "-o", "json")
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil {
		return st, false
	}
	return st, true
}

// Eventually polls cond until it holds or the deadline passes.
func (c *Cluster) Eventually(what string, timeout time.Duration, cond func() bool) {
	c.T.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.T.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Leader waits until the given live nodes agree on one leader among them
// and returns it.
func (c *Cluster) Leader(live ...*Proc) *Proc {
	c.T.Helper()
	if len(live) == 0 {
		live = c.Procs
	}
	var leader *Proc
	c.Eventually("the nodes to agree on a leader", 30*time.Second, func() bool {
		leader = nil
		id := ""
		for _, p := range live {
			st, ok := c.Status(p)
			if !ok || st.LeaderID == "" || (id != "" && st.LeaderID != id) {
				return false
			}
			id = st.LeaderID
		}
		for _, p := range live {
			if p.ID == id {
				leader = p
			}
		}
		return leader != nil
	})
	return leader
}

// PID is the process id of the running process, 0 when it is not running.
func (p *Proc) PID() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The Docker cluster is the compose file's three nodes, driven through
// scripts/docker-cluster.sh (which owns the container names, addresses and
// published ports).
var dockerNodes = []struct{ id, api string }{
	{"r1", "127.0.0.1:17420"}, {"r2", "127.0.0.1:17430"}, {"r3", "127.0.0.1:17440"},
}

// errDockerUnavailable is docker-cluster.sh's exit status 3.
const dockerUnavailableExit = 3

func dockerName(n *node) string { return n.id }

// dockerCluster runs scripts/docker-cluster.sh with args.
func dockerCluster(cfg *Config, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.RepoRoot, "scripts", "docker-cluster.sh"), args...)
	cmd.Env = append(os.Environ(), "ROSTER_LOG_LEVEL="+cfg.LogLevel)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker-cluster.sh %s: %v: %s", strings.Join(args, " "), err, lastLines(string(out), 8))
	}
	return nil
}

// dockerAvailable reports whether the Docker daemon answers, and why not.
func dockerAvailable() (bool, string) {
	if _, err := exec.LookPath("docker"); err != nil {
		return false, "docker is not installed"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return false, "the Docker daemon does not answer: " + lastLines(string(out), 2)
	}
	return true, ""
}

func newDockerCluster(cfg *Config, logf func(string, ...any)) (*cluster, error) {
	if ok, why := dockerAvailable(); !ok {
		return nil, fmt.Errorf("docker unavailable: %s", why)
	}
	c := &cluster{cfg: cfg, docker: true, log: logf}
	if err := os.MkdirAll(filepath.Join(cfg.Results, "nodes"), 0o755); err != nil {
		return nil, err
	}
	for i, d := range dockerNodes {
		n := &node{id: d.id, slot: i + 1, api: d.api, logPath: filepath.Join(cfg.Results, "nodes", d.id+".log")}
		if err := n.connect(); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

// dockerUp starts the compose cluster from empty volumes.
func (c *cluster) dockerUp() error {
	_ = dockerCluster(c.cfg, "down", "--purge")
	if err := dockerCluster(c.cfg, "up"); err != nil {
		return err
	}
	c.mu.Lock()
	for _, n := range c.nodes {
		n.up, n.member = true, true
	}
	c.mu.Unlock()
	return nil
}

// dockerLogs copies every container's log into the results.
func (c *cluster) dockerLogs() {
	for _, n := range c.nodes {
		out, _ := exec.Command("docker", "logs", "roster-"+n.id).CombinedOutput()
		_ = os.WriteFile(n.logPath, out, 0o644)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

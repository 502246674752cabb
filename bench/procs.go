package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/roster-registry/roster/internal/freeport"
)

// member is one server process of a cluster under test.
type member struct {
	name    string
	bin     string
	args    []string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

func (m *member) start() error {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	m.cmd = exec.Command(m.bin, m.args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", m.bin, err)
	}
	m.exited = make(chan struct{})
	cmd, exited := m.cmd, m.exited
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return nil
}

// kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (m *member) kill() {
	if !m.alive() {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
}

func (m *member) alive() bool {
	if m.cmd == nil || m.exited == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

func (m *member) pid() int {
	if !m.alive() {
		return 0
	}
	return m.cmd.Process.Pid
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) { return freeport.Loopback(n) }

// anonRSS reads RssAnon of pid from /proc, in bytes.
func anonRSS(pid int) (int64, error) { return procStatus(pid, "RssAnon:") }

// fileRSS reads RssFile of pid from /proc, in bytes: the pages of mapped
// files it has resident (etcd's bbolt database is one).
func fileRSS(pid int) (int64, error) { return procStatus(pid, "RssFile:") }

// procStatus reads the field of /proc/PID/status named by prefix, in bytes.
func procStatus(pid int, prefix string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", strings.TrimSuffix(prefix, ":"))
}

// runEtcdMember is the "etcd-member" mode: this binary run as one etcd
// server with the embed package's defaults, until SIGTERM or SIGINT.
func runEtcdMember(args []string) error {
	fs := flag.NewFlagSet("etcd-member", flag.ContinueOnError)
	name := fs.String("name", "", "member name")
	dir := fs.String("data-dir", "", "data directory")
	client := fs.String("client-url", "", "client URL, http://127.0.0.1:PORT")
	peer := fs.String("peer-url", "", "peer URL, http://127.0.0.1:PORT")
	initial := fs.String("initial-cluster", "", "NAME=PEERURL,...")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dir
	cu, err := parseURLs(*client)
	if err != nil {
		return err
	}
	pu, err := parseURLs(*peer)
	if err != nil {
		return err
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = cu, cu
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = pu, pu
	cfg.InitialCluster = *initial
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.LogLevel = "warn"
	// Go's profiles on the client URL, for the memory phase's forced
	// collection (rosterd runs with --enable-pprof for the same).
	cfg.EnablePprof = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	defer e.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(5 * time.Minute):
		return errors.New("etcd member not ready within 5m")
	case <-sig:
		return nil
	}
	select {
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
}

// versionOf names the Roster build measured: what the binary's --version
// says when the toolchain stamped its commit, else the commit of the
// repository the binary sits in.
func versionOf(rosterd string) (string, error) {
	if out, err := exec.Command(rosterd, "--version").Output(); err == nil {
		if v := strings.TrimSpace(string(out)); strings.Contains(v, "commit ") {
			return strings.TrimPrefix(v, "rosterd "), nil
		}
	}
	out, err := exec.Command("git", "-C", filepath.Dir(rosterd), "describe", "--always", "--dirty").Output()
	if err != nil {
		return "", err
	}
	return "commit " + strings.TrimSpace(string(out)) + " (of the binary's directory)", nil
}

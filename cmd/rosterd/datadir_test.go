package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/cluster"
)

// TestAnotherNodesDataDirIsAFailure: rosterd started on a data dir that
// another node created refuses to start, in one line saying whose it is,
// and exits 1 (a failure), not 2 (a usage error).
func TestAnotherNodesDataDirIsAFailure(t *testing.T) {
	dir := t.TempDir()
	_, tr := raft.NewInmemTransport("n1.inmem:7421")
	cfg := cluster.Config{NodeID: "n1", DataDir: dir, Transport: tr, Bootstrap: true, APIAddr: "127.0.0.1:1", BootstrapListen: -1}
	cfg.UseFastTimeouts()
	n, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	cmd := newCommand()
	cmd.SetArgs([]string{"--node-id", "n2", "--data-dir", dir, "--join", "127.0.0.1:1",
		"--grpc-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"})
	err = cmd.Execute()
	var usage usageError
	switch {
	case err == nil:
		t.Fatal("rosterd --node-id n2 started on n1's data dir")
	case errors.As(err, &usage):
		t.Fatalf("a usage error (exit 2): %v; want a failure to start (exit 1)", err)
	case !strings.Contains(err.Error(), `belongs to node "n1", not to "n2"`) || strings.Contains(err.Error(), "\n"):
		t.Fatalf("refusal %q: want one line naming the owner n1 and the id n2", err)
	}
}

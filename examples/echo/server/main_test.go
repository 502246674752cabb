package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestRegistryFlagReadsAnIPv6List: --registry is read as client.ParseAddrs
// reads a list, IPv6 hosts in brackets; a bad entry is named in one line
// before anything is started.
func TestRegistryFlagReadsAnIPv6List(t *testing.T) {
	err := run(hclog.NewNullLogger(), "[::1]:7420, ::1:7430", nil, "127.0.0.1:0", 100, "echo", "", "", time.Second)
	want := `--registry: address "::1:7430": an IPv6 host goes in brackets`
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("run: %v; want one line with %q", err, want)
	}
}

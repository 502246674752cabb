package main

import (
	"errors"
	"strings"
	"testing"
)

// TestDNSFlags: DNS is off unless asked for or --dev; --dev's default
// yields to --dns-addr; bad values are usage errors.
func TestDNSFlags(t *testing.T) {
	dir := t.TempDir()
	const initial = "n1=127.0.0.1:7421"
	tests := []struct {
		name    string
		args    []string
		addrSet bool
		want    string
		wantErr string
	}{
		{name: "off by default", args: []string{"--node-id", "n1", "--data-dir", dir, "--initial-cluster", initial}},
		{name: "dev turns it on", args: []string{"--dev"}, want: "127.0.0.1:8600"},
		{name: "dev with an address", args: []string{"--dev", "--dns-addr", "127.0.0.1:5353"}, addrSet: true, want: "127.0.0.1:5353"},
		{name: "dev with DNS off", args: []string{"--dev", "--dns-addr", ""}, addrSet: true, want: ""},
		{name: "explicit", args: []string{"--node-id", "n1", "--data-dir", dir, "--initial-cluster", initial, "--dns-addr", ":53"}, addrSet: true, want: ":53"},
		{name: "bad address", args: []string{"--dev", "--dns-addr", "nope"}, addrSet: true, wantErr: "--dns-addr"},
		{name: "bad domain", args: []string{"--dev", "--dns-domain", "."}, wantErr: "--dns-domain"},
		{name: "bad ttl", args: []string{"--dev", "--dns-ttl", "0s"}, wantErr: "--dns-ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := parse(t, tt.args...)
			f.dnsAddrSet = tt.addrSet
			_, err := f.clusterConfig()
			if tt.wantErr != "" {
				var usage usageError
				if err == nil || !errors.As(err, &usage) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want a usage error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.dnsAddr != tt.want {
				t.Fatalf("dns addr %q, want %q", f.dnsAddr, tt.want)
			}
		})
	}
}

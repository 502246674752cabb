package echo

import (
	"slices"
	"strings"
	"testing"
)

// TestRegistryAddrs: --registry takes a list of addresses as the client
// reads them, IPv6 hosts in brackets; a bad entry is named in one line.
func TestRegistryAddrs(t *testing.T) {
	got, err := RegistryAddrs("[::1]:7420, [::1]:7430,127.0.0.1:7440")
	if want := []string{"[::1]:7420", "[::1]:7430", "127.0.0.1:7440"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("RegistryAddrs: %q, %v; want %q", got, err, want)
	}
	_, err = RegistryAddrs("[::1]:7420,::1:7430")
	if want := `--registry: address "::1:7430": an IPv6 host goes in brackets`; err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("RegistryAddrs with an unbracketed IPv6 host: %v; want one line with %q", err, want)
	}
}

package client

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ParseAddrs splits a comma-separated list of registry addresses, as a flag,
// an environment variable or a roster:// target gives them, into the
// HOST:PORT values New takes. An IPv6 host goes in brackets, as in
// "[::1]:7420,[::1]:7421"; space around an address is ignored. Each address
// needs a host and a port from 1 to 65535: the error names the first that
// has not, and what is wrong with it.
func ParseAddrs(list string) ([]string, error) {
	var addrs []string
	for _, a := range splitAddrs(list) {
		a = strings.TrimSpace(a)
		if err := checkAddr(a); err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// splitAddrs splits list at the commas outside brackets.
func splitAddrs(list string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(list); i++ {
		switch list[i] {
		case '[':
			depth++
		case ']':
			depth = max(depth-1, 0)
		case ',':
			if depth == 0 {
				parts = append(parts, list[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, list[start:])
}

// checkAddr says what is wrong with one HOST:PORT, if anything.
func checkAddr(a string) error {
	if a == "" {
		return fmt.Errorf("empty address in the list: want HOST:PORT, comma-separated")
	}
	bracketed := strings.HasPrefix(a, "[")
	if !bracketed && strings.Count(a, ":") > 1 {
		return fmt.Errorf("address %q: an IPv6 host goes in brackets, as in [::1]:7420", a)
	}
	if bracketed && !strings.Contains(a, "]") {
		return fmt.Errorf("address %q: missing ']' after the IPv6 host", a)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		var addrErr *net.AddrError
		if errors.As(err, &addrErr) && addrErr.Err == "missing port in address" {
			return fmt.Errorf("address %q: missing port: want HOST:PORT", a)
		}
		return fmt.Errorf("address %q: want HOST:PORT: %w", a, err)
	}
	if host == "" {
		return fmt.Errorf("address %q: missing host: want HOST:PORT", a)
	}
	if bracketed {
		// Brackets hold an IPv6 address (RFC 3986), with a zone or not.
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() {
			return fmt.Errorf("address %q: brackets hold an IPv6 address, not %q", a, host)
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("address %q: port %q is not a number from 1 to 65535", a, port)
	}
	return nil
}

package main

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// parseHostPort splits HOST:PORT, with a port in 1..65535.
func parseHostPort(s string) (string, uint32, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("address %q is not HOST:PORT", s)
	}
	if host == "" {
		return "", 0, fmt.Errorf("address %q has no host", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("address %q: port must be a number from 1 to 65535", s)
	}
	return host, uint32(n), nil
}

// parseMeta parses K=V pairs.
func parseMeta(pairs []string) (map[string]string, error) {
	meta := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--meta %q: want KEY=VALUE", p)
		}
		meta[k] = v
	}
	return meta, nil
}

// parseCheckURL accepts an http or https URL with a host.
func parseCheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--check-http %q: want an http:// or https:// URL", s)
	}
	return nil
}

// nonNegative rejects a negative duration flag.
func nonNegative(name string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("--%s %s: must not be negative", name, d)
	}
	return nil
}

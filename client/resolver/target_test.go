package resolver

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	grpcresolver "google.golang.org/grpc/resolver"
)

// TestReadTarget: the registry addresses, namespace and service of a
// target, as gRPC hands it over (parsed by net/url).
func TestReadTarget(t *testing.T) {
	for _, tt := range []struct {
		target  string
		addrs   []string
		ns, svc string
		// err is part of the error's text; empty when the target is valid.
		err string
	}{
		{target: "roster:///echo", svc: "echo"},
		{target: "roster:///team/echo", ns: "team", svc: "echo"},
		{target: "roster://10.0.0.1:7420,10.0.0.2:7420/echo", addrs: []string{"10.0.0.1:7420", "10.0.0.2:7420"}, svc: "echo"},
		{target: "roster://[::1]:7420/team/echo", addrs: []string{"[::1]:7420"}, ns: "team", svc: "echo"},
		{target: "roster://[fe80::1%25eth0]:7420/echo", addrs: []string{"[fe80::1%eth0]:7420"}, svc: "echo"},
		// Several IPv6 hosts: the form without slashes.
		{target: "roster:[::1]:7420,[::1]:7421/svc", addrs: []string{"[::1]:7420", "[::1]:7421"}, svc: "svc"},
		{target: "roster:[::1]:7420,10.0.0.2:7420,[2001:db8::3]:7420/team/echo", addrs: []string{"[::1]:7420", "10.0.0.2:7420", "[2001:db8::3]:7420"}, ns: "team", svc: "echo"},
		{target: "roster:[fe80::1%25eth0]:7420,[fe80::2%25eth0]:7420/echo", addrs: []string{"[fe80::1%eth0]:7420", "[fe80::2%eth0]:7420"}, svc: "echo"},
		{target: "roster:10.0.0.1:7420/echo", addrs: []string{"10.0.0.1:7420"}, svc: "echo"},

		{target: "roster:[::1]:7420,[::1]:7421", err: "want roster:HOST:PORT,HOST:PORT/SERVICE"},
		{target: "roster:[::1]:7420,[::1]:7421/", err: `path "/": want /SERVICE or /NAMESPACE/SERVICE`},
		{target: "roster:[::1]:7420,[::1]:7421/a/b/c", err: "want /SERVICE or /NAMESPACE/SERVICE"},
		{target: "roster:[::1]:7420,::1:7421/svc", err: `address "::1:7421": an IPv6 host goes in brackets`},
		{target: "roster:[::1]:7420,[::1/svc", err: `address "[::1": missing ']'`},
		{target: "roster:[::1]:7420,,[::1]:7421/svc", err: "empty address"},
		{target: "roster:[::1],[::1]:7421/svc", err: `address "[::1]": missing port`},
		{target: "roster://10.0.0.1,10.0.0.2:7420/echo", err: `address "10.0.0.1": missing port`},
		{target: "roster://10.0.0.1:7420,:7421/echo", err: `address ":7421": missing host`},
	} {
		u, err := url.Parse(tt.target)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", tt.target, err)
		}
		addrs, ns, svc, err := readTarget(u)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.target, err)
		case tt.err == "" && (!slices.Equal(addrs, tt.addrs) || ns != tt.ns || svc != tt.svc):
			t.Errorf("%s: registry %q, namespace %q, service %q; want %q, %q, %q", tt.target, addrs, ns, svc, tt.addrs, tt.ns, tt.svc)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: %v; want an error with %q", tt.target, err, tt.err)
		}
	}
}

// TestAuthorityIsTheTargetPath: a channel's authority is its target's path
// whichever form names the registry, as gRPC gives a roster:// target by
// default; not the registry addresses.
func TestAuthorityIsTheTargetPath(t *testing.T) {
	for target, want := range map[string]string{
		"roster:///echo":                            "echo",
		"roster:///team/echo":                       "team%2Fecho",
		"roster://10.0.0.1:7420,10.0.0.2:7420/echo": "echo",
		"roster:[::1]:7420,[::1]:7421/team/echo":    "team%2Fecho",
	} {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		tg := grpcresolver.Target{URL: *u}
		if got := (&Builder{}).OverrideAuthority(tg); got != want {
			t.Errorf("authority of %s: %q, want %q", target, got, want)
		}
	}
}

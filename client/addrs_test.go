package client

import (
	"slices"
	"strings"
	"testing"
)

func TestParseAddrs(t *testing.T) {
	for _, tt := range []struct {
		list string
		want []string
		// err is part of the error's text; empty when the list is valid.
		err string
	}{
		{list: "127.0.0.1:7420", want: []string{"127.0.0.1:7420"}},
		{list: "10.0.0.1:7420,10.0.0.2:7420", want: []string{"10.0.0.1:7420", "10.0.0.2:7420"}},
		{list: "roster-0.roster:7420, roster-1.roster:7420", want: []string{"roster-0.roster:7420", "roster-1.roster:7420"}},
		{list: "[::1]:7420", want: []string{"[::1]:7420"}},
		{list: "[::1]:7420,[::1]:7421", want: []string{"[::1]:7420", "[::1]:7421"}},
		{list: "[2001:db8::1]:7420,10.0.0.2:7420,[2001:db8::3]:7420", want: []string{"[2001:db8::1]:7420", "10.0.0.2:7420", "[2001:db8::3]:7420"}},
		{list: "[fe80::1%eth0]:7420,[::ffff:127.0.0.1]:7421", want: []string{"[fe80::1%eth0]:7420", "[::ffff:127.0.0.1]:7421"}},

		{list: "", err: "empty address"},
		{list: "127.0.0.1:7420,,127.0.0.1:7421", err: "empty address"},
		{list: "127.0.0.1:7420,", err: "empty address"},
		{list: "::1:7420", err: `address "::1:7420": an IPv6 host goes in brackets`},
		{list: "[::1]:7420,::1:7421", err: `address "::1:7421": an IPv6 host goes in brackets`},
		{list: "[::1:7420", err: `address "[::1:7420": missing ']'`},
		{list: "[::1]", err: `address "[::1]": missing port`},
		{list: "127.0.0.1", err: `address "127.0.0.1": missing port`},
		{list: "[::1]7420", err: `address "[::1]7420": missing port`},
		{list: "[127.0.0.1]:7420", err: `brackets hold an IPv6 address, not "127.0.0.1"`},
		{list: "[roster-0]:7420", err: `brackets hold an IPv6 address`},
		{list: ":7420", err: `address ":7420": missing host`},
		{list: "[::1]:0", err: `port "0" is not a number from 1 to 65535`},
		{list: "[::1]:70000", err: `port "70000" is not a number`},
		{list: "roster-0:grpc", err: `port "grpc" is not a number`},
	} {
		got, err := ParseAddrs(tt.list)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("ParseAddrs(%q): %v", tt.list, err)
		case tt.err == "" && !slices.Equal(got, tt.want):
			t.Errorf("ParseAddrs(%q) = %q, want %q", tt.list, got, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseAddrs(%q) = %q, %v; want an error with %q", tt.list, got, err, tt.err)
		}
	}
}

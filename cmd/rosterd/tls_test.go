package main

import (
	"errors"
	"testing"
)

func TestTLSFlagsGoTogether(t *testing.T) {
	for _, f := range []tlsFlags{
		{verifyIncoming: true},
		{cert: "c.pem", key: "k.pem"},
		{ca: "ca.pem"},
		{ca: "ca.pem", cert: "c.pem"},
	} {
		err := f.load()
		if !errors.As(err, new(usageError)) {
			t.Errorf("%+v: %v, want a usage error", f, err)
		}
	}
	none := tlsFlags{}
	if err := none.load(); err != nil || none.on() || none.raft() != nil {
		t.Fatalf("no TLS flags: %v", err)
	}
}

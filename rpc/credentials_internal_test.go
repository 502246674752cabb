package rpc

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestHandshakeLogIsRateLimited: one line per handshakeLogEvery, the next
// counting the refusals it left out; connections closed before a word are
// not refusals.
func TestHandshakeLogIsRateLimited(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(1000, 0)
	h := &handshakeLog{logger: hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info}), now: func() time.Time { return now }}
	peer := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 27001}
	refuse := func(after time.Duration, i int) {
		now = now.Add(after)
		h.refused(peer, fmt.Errorf("refusal %d", i))
	}
	refuse(0, 1)
	refuse(time.Second, 2)
	refuse(time.Second, 3)
	h.refused(peer, io.EOF)
	refuse(handshakeLogEvery, 4)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %d lines, want 2:\n%s", len(lines), out.String())
	}
	if !strings.Contains(lines[0], "peer=127.0.0.1:27001 reason=\"refusal 1\"") || strings.Contains(lines[0], "refused_since") {
		t.Errorf("first line %q", lines[0])
	}
	if !strings.Contains(lines[1], "reason=\"refusal 4\" refused_since_last_line=2") {
		t.Errorf("second line %q", lines[1])
	}
}

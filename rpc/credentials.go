package rpc

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/credentials"
)

// handshakeLogEvery is the least time between two log lines about refused
// TLS handshakes; the refusals in between are counted in the next line.
const handshakeLogEvery = 10 * time.Second

// ServerCredentials returns the gRPC server's transport credentials for
// TLS with conf. Connections from the in-process listener (InProcess, for
// the HTTP and DNS front ends) skip TLS: they never leave the process, and
// nothing outside it can open one. Refused handshakes are not logged; see
// ServerCredentialsLogged.
func ServerCredentials(conf *tls.Config) credentials.TransportCredentials {
	return ServerCredentialsLogged(conf, nil)
}

// ServerCredentialsLogged is ServerCredentials that logs every refused TLS
// handshake at INFO to logger, with the peer's address and the reason, at
// most one line per handshakeLogEvery (the next line counts the others).
// A nil logger logs nothing.
func ServerCredentialsLogged(conf *tls.Config, logger hclog.Logger) credentials.TransportCredentials {
	c := inProcessPlain{TransportCredentials: credentials.NewTLS(conf)}
	if logger != nil {
		c.refusals = &handshakeLog{logger: logger, now: time.Now}
	}
	return c
}

// inProcessPlain is TLS credentials that leave in-process connections as
// they are.
type inProcessPlain struct {
	credentials.TransportCredentials
	refusals *handshakeLog
}

// InProcessAuthInfo is the AuthInfo of a call over the in-process
// connection.
type InProcessAuthInfo struct {
	credentials.CommonAuthInfo
}

// AuthType names in-process connections.
func (InProcessAuthInfo) AuthType() string { return "in-process" }

func (c inProcessPlain) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if isInProcess(conn) {
		// In memory, within this process: as private as it gets.
		return conn, InProcessAuthInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil && c.refusals != nil {
		c.refusals.refused(conn.RemoteAddr(), err)
	}
	return out, info, err
}

func (c inProcessPlain) Clone() credentials.TransportCredentials {
	return inProcessPlain{TransportCredentials: c.TransportCredentials.Clone(), refusals: c.refusals}
}

// isInProcess reports whether conn came from InProcess's bufconn listener.
func isInProcess(conn net.Conn) bool {
	return conn.LocalAddr().Network() == "bufconn"
}

// handshakeLog logs refused TLS handshakes, rate-limited: a client retrying
// with the wrong certificate, or a scanner, must not flood the log.
type handshakeLog struct {
	logger hclog.Logger
	now    func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (h *handshakeLog) refused(peer net.Addr, err error) {
	if errors.Is(err, io.EOF) {
		// Closed before a word was said: port checks and load balancers'
		// probes, not a client that was refused.
		h.logger.Debug("connection closed before the TLS handshake", "peer", peer)
		return
	}
	h.mu.Lock()
	now := h.now()
	if !h.last.IsZero() && now.Sub(h.last) < handshakeLogEvery {
		h.suppressed++
		h.mu.Unlock()
		return
	}
	h.last = now
	suppressed := h.suppressed
	h.suppressed = 0
	h.mu.Unlock()
	args := []any{"peer", peer, "reason", err}
	if suppressed > 0 {
		args = append(args, "refused_since_last_line", suppressed)
	}
	h.logger.Info("refused a TLS handshake on the gRPC port", args...)
}

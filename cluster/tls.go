package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// RaftTLS secures the Raft transport with mutual TLS.
type RaftTLS struct {
	// Incoming accepts peers: it must require and verify a client
	// certificate, and accept only server certificates of the cluster.
	Incoming *tls.Config
	// Outgoing dials peers: it presents this server's certificate and
	// verifies the peer's server name.
	Outgoing *tls.Config
}

// tlsStream is a raft.StreamLayer over TLS. Accept does not handshake: the
// handshake runs on the connection's first read, in the transport's
// goroutine for that connection, so a peer that stalls it holds up no one
// else; a peer whose certificate is refused gets nothing but the alert.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	outgoing  *tls.Config
}

// newTLSStream listens on bind and advertises advertise.
func newTLSStream(bind string, advertise net.Addr, t *RaftTLS) (*tlsStream, error) {
	if t.Incoming == nil || t.Outgoing == nil {
		return nil, fmt.Errorf("raft TLS needs both an incoming and an outgoing configuration")
	}
	lis, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	return &tlsStream{Listener: tls.NewListener(lis, t.Incoming), advertise: advertise, outgoing: t.Outgoing}, nil
}

// Dial opens a TLS connection to a peer and completes the handshake, so a
// peer that is not a server of the cluster fails the dial.
func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return dialTLS(addr, timeout, s.outgoing)
}

// Addr is the advertised address.
func (s *tlsStream) Addr() net.Addr { return s.advertise }

func dialTLS(addr raft.ServerAddress, timeout time.Duration, cfg *tls.Config) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	return d.Dial("tcp", string(addr))
}

package rpc

import (
	"crypto/tls"
	"net"

	"google.golang.org/grpc/credentials"
)

// ServerCredentials returns the gRPC server's transport credentials for
// TLS with conf. Connections from the in-process listener (InProcess, for
// the HTTP and DNS front ends) skip TLS: they never leave the process, and
// nothing outside it can open one.
func ServerCredentials(conf *tls.Config) credentials.TransportCredentials {
	return inProcessPlain{credentials.NewTLS(conf)}
}

// inProcessPlain is TLS credentials that leave in-process connections as
// they are.
type inProcessPlain struct {
	credentials.TransportCredentials
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
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c inProcessPlain) Clone() credentials.TransportCredentials {
	return inProcessPlain{c.TransportCredentials.Clone()}
}

// isInProcess reports whether conn came from InProcess's bufconn listener.
func isInProcess(conn net.Conn) bool {
	return conn.LocalAddr().Network() == "bufconn"
}

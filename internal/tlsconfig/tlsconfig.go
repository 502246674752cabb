// Package tlsconfig turns a node's TLS files into the tls.Configs of each
// link: the client API (gRPC and HTTP), the Raft port, and the connections
// a server opens to other servers. Servers prove they are servers with the
// server-only name (server.<datacenter>.roster) their certificates carry; a
// client certificate signed by the same CA does not have it.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files names a node's TLS material and how strict its API is.
type Files struct {
	// CA is the PEM file of the CA(s) every certificate is checked against.
	CA string
	// Cert and Key are this node's server certificate and key.
	Cert string
	Key  string
	// VerifyIncoming requires API clients to present a certificate signed
	// by the CA. The Raft port and server-only calls always require one.
	VerifyIncoming bool
	// ServerName is the name server certificates carry and peers verify
	// (server.dc1.roster, say).
	ServerName string
}

// Config holds a node's loaded TLS material.
type Config struct {
	cert           tls.Certificate
	pool           *x509.CertPool
	verifyIncoming bool
	serverName     string
}

// Load reads the files and checks that the certificate is a server
// certificate for the server name, signed by the CA.
func Load(f Files) (*Config, error) {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, errors.New("TLS needs a CA, a certificate and a key")
	}
	if f.ServerName == "" {
		return nil, errors.New("TLS needs the server name")
	}
	pool, err := LoadPool(f.CA)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse certificate %s: %w", f.Cert, err)
	}
	c := &Config{cert: cert, pool: pool, verifyIncoming: f.VerifyIncoming, serverName: f.ServerName}
	if err := c.verifyServerCert(leaf, cert.Certificate[1:]); err != nil {
		return nil, fmt.Errorf("certificate %s cannot serve this cluster: %w", f.Cert, err)
	}
	return c, nil
}

// LoadPool reads a PEM file of CA certificates.
func LoadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA %s: %w", file, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA %s holds no PEM certificate", file)
	}
	return pool, nil
}

// ServerName returns the name server certificates must carry.
func (c *Config) ServerName() string { return c.serverName }

// API is the configuration of the client-facing gRPC and HTTP listeners.
// With VerifyIncoming a client must present a certificate signed by the CA;
// without it a certificate is optional, but checked when given, so the
// server-only calls can tell a server from a client.
func (c *Config) API() *tls.Config {
	auth := tls.VerifyClientCertIfGiven
	if c.verifyIncoming {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{c.cert},
		ClientCAs:    c.pool,
		ClientAuth:   auth,
	}
}

// RaftIncoming is the configuration of the Raft listener: mutual TLS, and
// only a server certificate is accepted.
func (c *Config) RaftIncoming() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.cert},
		ClientCAs:    c.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) == 0 || len(chains[0]) == 0 {
				return errors.New("no verified client certificate")
			}
			return c.verifyServerCert(chains[0][0], certsDER(chains[0][1:]))
		},
	}
}

// Peer is the configuration of connections this server opens to other
// servers (Raft, forwarding, join): it presents this server's certificate
// and accepts only a server certificate of the cluster.
func (c *Config) Peer() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{c.cert},
		RootCAs:      c.pool,
		ServerName:   c.serverName,
	}
}

// RaftPeer is Peer for the Raft port, which speaks TLS 1.3 only.
func (c *Config) RaftPeer() *tls.Config {
	p := c.Peer()
	p.MinVersion = tls.VersionTLS13
	return p
}

// VerifyServer checks that a connection's peer presented a server
// certificate of the cluster: signed by the CA, carrying the server name.
func (c *Config) VerifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	return c.verifyServerCert(cs.PeerCertificates[0], certsDER(cs.PeerCertificates[1:]))
}

func (c *Config) verifyServerCert(leaf *x509.Certificate, intermediates [][]byte) error {
	inter := x509.NewCertPool()
	for _, der := range intermediates {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		DNSName:       c.serverName,
		Roots:         c.pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("not a server certificate for %s: %w", c.serverName, err)
	}
	return nil
}

func certsDER(cs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(cs))
	for i, c := range cs {
		out[i] = c.Raw
	}
	return out
}

// Client builds the configuration of an API client: it trusts the CA in
// caFile (the system roots when empty), presents certFile/keyFile when
// given, and verifies the server by serverName when given, else by the
// address dialled.
func Client(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pool, err := LoadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load certificate %s and key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, errors.New("a client certificate needs both its certificate and its key")
	}
	return cfg, nil
}

package client

import (
	"crypto/tls"

	"google.golang.org/grpc/credentials"
)

// WithTLS connects over TLS with cfg: RootCAs to trust the cluster's CA,
// Certificates to present a client certificate to servers that verify
// incoming connections, and ServerName when the servers are dialled by an
// address their certificates do not name. It is WithTransportCredentials
// with credentials.NewTLS(cfg); a nil cfg means TLS with the system roots.
func WithTLS(cfg *tls.Config) Option {
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return WithTransportCredentials(credentials.NewTLS(cfg))
}

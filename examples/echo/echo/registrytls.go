package echo

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
)

// RegistryTLS holds the flags that connect an example to a secured Roster
// cluster: --registry-ca, and --registry-cert with --registry-key for
// servers that verify incoming connections, and --registry-token for a
// cluster that checks ACL tokens.
type RegistryTLS struct {
	ca, cert, key, token *string
}

// RegistryTLSFlags registers the flags on the default flag set.
func RegistryTLSFlags() *RegistryTLS {
	return &RegistryTLS{
		ca:    flag.String("registry-ca", os.Getenv("ROSTER_TLS_CA"), "connect to Roster over TLS, trusting this CA's PEM file (env ROSTER_TLS_CA)"),
		cert:  flag.String("registry-cert", os.Getenv("ROSTER_TLS_CERT"), "client certificate for Roster (env ROSTER_TLS_CERT)"),
		key:   flag.String("registry-key", os.Getenv("ROSTER_TLS_KEY"), "key of --registry-cert (env ROSTER_TLS_KEY)"),
		token: flag.String("registry-token", os.Getenv("ROSTER_TOKEN"), "ACL token secret for Roster (env ROSTER_TOKEN)"),
	}
}

// Token returns the ACL token secret the flags give, for client.WithToken;
// empty when none is given.
func (r *RegistryTLS) Token() string { return *r.token }

// Config returns the TLS configuration the flags ask for, for
// client.WithTLS, or nil when no flag is given.
func (r *RegistryTLS) Config() (*tls.Config, error) {
	if *r.ca == "" && *r.cert == "" && *r.key == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if *r.ca != "" {
		pem, err := os.ReadFile(*r.ca)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", *r.ca)
		}
	}
	if (*r.cert == "") != (*r.key == "") {
		return nil, errors.New("--registry-cert and --registry-key go together")
	}
	if *r.cert != "" {
		pair, err := tls.LoadX509KeyPair(*r.cert, *r.key)
		if err != nil {
			return nil, err
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}

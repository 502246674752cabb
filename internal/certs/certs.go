// Package certs creates the certificate authority and the server and client
// certificates a Roster cluster's TLS needs to get started: ECDSA P-256
// keys, PEM files, server certificates carrying the server-only name
// server.<datacenter>.roster.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// DefaultDatacenter is the datacenter of the server name when none is given.
const DefaultDatacenter = "dc1"

// Default validities: five years for the CA, one year for certificates.
const (
	DefaultCAValidity   = 5 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
)

// ServerName is the name every server certificate of datacenter dc carries
// and peers verify: server.<dc>.roster. A client certificate never has it.
func ServerName(dc string) string { return "server." + dc + ".roster" }

// ClientName is the name a client certificate of datacenter dc carries.
func ClientName(dc string) string { return "client." + dc + ".roster" }

// CA is a certificate authority: its certificate and key.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA creates a self-signed CA valid from now for validity.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	skid, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Roster"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	return newCA(der, key)
}

func newCA(der []byte, key *ecdsa.PrivateKey) (*CA, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// LoadCA reads a CA's certificate and key from PEM files.
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load CA %s and %s: %w", certFile, keyFile, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("CA key %s is not an ECDSA key", keyFile)
	}
	ca, err := newCA(pair.Certificate[0], key)
	if err != nil {
		return nil, err
	}
	if !ca.Cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", certFile)
	}
	return ca, nil
}

// Request describes a certificate to issue.
type Request struct {
	// Server issues a server certificate: server.<Datacenter>.roster,
	// localhost and 127.0.0.1, usable to serve and, towards other servers,
	// as a client. Otherwise a client certificate: client.<Datacenter>.roster,
	// usable as a client only.
	Server bool
	// Datacenter names the cluster (DefaultDatacenter when empty).
	Datacenter string
	// DNSNames and IPs are extra subject alternative names.
	DNSNames []string
	IPs      []net.IP
	// NotBefore and NotAfter default to now and now+DefaultCertValidity.
	NotBefore time.Time
	NotAfter  time.Time
}

// Issue creates a key and a certificate for it signed by the CA, both PEM.
func (ca *CA) Issue(r Request) (certPEM, keyPEM []byte, err error) {
	dc := r.Datacenter
	if dc == "" {
		dc = DefaultDatacenter
	}
	if err := CheckDatacenter(dc); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	skid, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	notBefore, notAfter := r.NotBefore, r.NotAfter
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Minute)
	}
	if notAfter.IsZero() {
		notAfter = notBefore.Add(DefaultCertValidity)
	}
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		SubjectKeyId:   skid,
		AuthorityKeyId: ca.Cert.SubjectKeyId,
		DNSNames:       dedupe(r.DNSNames),
		IPAddresses:    r.IPs,
	}
	if r.Server {
		tmpl.Subject = pkix.Name{CommonName: ServerName(dc)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = dedupe(append([]string{ServerName(dc), "localhost"}, r.DNSNames...))
		tmpl.IPAddresses = dedupeIPs(append([]net.IP{net.IPv4(127, 0, 0, 1)}, r.IPs...))
	} else {
		tmpl.Subject = pkix.Name{CommonName: ClientName(dc)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = dedupe(append([]string{ClientName(dc), "localhost"}, r.DNSNames...))
		for _, n := range tmpl.DNSNames {
			if strings.HasPrefix(n, "server.") && strings.HasSuffix(n, ".roster") {
				return nil, nil, fmt.Errorf("a client certificate cannot carry the server name %q", n)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// CheckDatacenter reports whether dc can be a DNS label of the server name.
func CheckDatacenter(dc string) error {
	if dc == "" || len(dc) > 63 {
		return fmt.Errorf("datacenter %q must be 1 to 63 characters", dc)
	}
	for i, c := range dc {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(dc)-1
		if !ok {
			return fmt.Errorf("datacenter %q must be a DNS label: lower-case letters, digits and inner dashes", dc)
		}
	}
	return nil
}

// WriteNew writes data to a new file with the given mode, refusing to
// overwrite one that exists.
func WriteNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists; not overwriting it", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}

func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func dedupe(ss []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func dedupeIPs(ips []net.IP) []net.IP {
	var out []net.IP
	seen := map[string]bool{}
	for _, ip := range ips {
		if ip != nil && !seen[ip.String()] {
			seen[ip.String()] = true
			out = append(out, ip)
		}
	}
	return out
}

package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/internal/certs"
	"github.com/roster-registry/roster/internal/tlsconfig"
)

// CA file names in --dir.
const (
	caCertFile = "roster-agent-ca.pem"
	caKeyFile  = "roster-agent-ca-key.pem"
)

// tlsFlags are the global TLS flags of the CLI.
type tlsFlags struct {
	ca, cert, key, serverName string
	// conf is built on first use.
	conf *tls.Config
}

// registerTLSFlags adds --tls-ca, --tls-cert, --tls-key and
// --tls-server-name, defaulting to ROSTER_TLS_*.
func (a *app) registerTLSFlags(fs *pflag.FlagSet, getenv func(string) string) {
	fs.StringVar(&a.tls.ca, "tls-ca", getenv("ROSTER_TLS_CA"), "connect over TLS, trusting this CA's PEM file (env ROSTER_TLS_CA)")
	fs.StringVar(&a.tls.cert, "tls-cert", getenv("ROSTER_TLS_CERT"),
		"client certificate PEM file, for servers started with --tls-verify-incoming (env ROSTER_TLS_CERT)")
	fs.StringVar(&a.tls.key, "tls-key", getenv("ROSTER_TLS_KEY"), "key of --tls-cert (env ROSTER_TLS_KEY)")
	fs.StringVar(&a.tls.serverName, "tls-server-name", getenv("ROSTER_TLS_SERVER_NAME"),
		"name to verify the servers' certificates by (default: the host of each --addr) (env ROSTER_TLS_SERVER_NAME)")
}

// parseTLS checks the TLS flags; the files are read when a command
// connects (clientOptions), so roster tls can run before they exist.
func (a *app) parseTLS() error {
	if (a.tls.cert == "") != (a.tls.key == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	return nil
}

// on reports whether any TLS flag is given.
func (t *tlsFlags) on() bool {
	return t.ca != "" || t.cert != "" || t.key != "" || t.serverName != ""
}

// clientOptions are the SDK options the global flags ask for: TLS when any
// TLS flag is given.
func (a *app) clientOptions() ([]client.Option, error) {
	if !a.tls.on() {
		return nil, nil
	}
	if a.tls.conf == nil {
		conf, err := tlsconfig.Client(a.tls.ca, a.tls.cert, a.tls.key, a.tls.serverName)
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		a.tls.conf = conf
	}
	return []client.Option{client.WithTLS(a.tls.conf)}, nil
}

// transportCredentials are the credentials of a command that dials gRPC
// itself instead of through the SDK client: TLS when any TLS flag is
// given, otherwise plaintext.
func (a *app) transportCredentials() (credentials.TransportCredentials, error) {
	if !a.tls.on() {
		return insecure.NewCredentials(), nil
	}
	if _, err := a.clientOptions(); err != nil {
		return nil, err
	}
	return credentials.NewTLS(a.tls.conf), nil
}

// dialOptions are what a command that dials gRPC itself needs to reach
// the cluster the flags name: its transport credentials and, with --token,
// the ACL token.
func (a *app) dialOptions() ([]grpc.DialOption, error) {
	creds, err := a.transportCredentials()
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if a.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(client.TokenCredentials(a.token)))
	}
	return opts, nil
}

func (a *app) tlsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Create a CA and certificates to run a cluster with TLS",
		Long: `roster tls creates what a cluster needs to run with TLS: a CA
(roster tls ca create), then a certificate for every server (--server)
and for clients that must present one (--client).

Server certificates carry the name server.<dc>.roster, which servers require
of each other on the Raft port and for calls only servers make: a client
certificate signed by the same CA cannot join the cluster or act as a
server. Keys are ECDSA P-256 and written 0600; no file is ever overwritten.`,
		Example: `  roster tls ca create
  roster tls cert create --server --ip 10.0.0.1     # once per server
  roster tls cert create --client
  rosterd ... --tls-ca roster-agent-ca.pem --tls-cert dc1-server-roster-0.pem \
    --tls-key dc1-server-roster-0-key.pem --tls-verify-incoming
  roster --tls-ca roster-agent-ca.pem --tls-cert dc1-client-roster-0.pem \
    --tls-key dc1-client-roster-0-key.pem status`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	ca := &cobra.Command{Use: "ca", Short: "Manage the CA", Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	ca.AddCommand(a.tlsCACreateCommand())
	cert := &cobra.Command{Use: "cert", Short: "Manage certificates", Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	cert.AddCommand(a.tlsCertCreateCommand())
	cmd.AddCommand(ca, cert)
	return offline(cmd)
}

// createdFiles is what the tls commands print.
type createdFiles struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

func (a *app) printCreated(c createdFiles) error {
	if a.json() {
		return writeJSON(a.stdout, c)
	}
	fmt.Fprintf(a.stdout, "==> saved %s\n==> saved %s\n", c.Cert, c.Key)
	return nil
}

func (a *app) tlsCACreateCommand() *cobra.Command {
	var dir string
	var days int
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create a CA: " + caCertFile + " and " + caKeyFile,
		Example: "  roster tls ca create --dir /etc/roster/tls",
		Args:    exactArgs(),
		RunE: func(*cobra.Command, []string) error {
			if days < 1 {
				return usagef("--days %d must be at least 1", days)
			}
			if err := checkDir(dir); err != nil {
				return err
			}
			certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
			for _, p := range []string{certPath, keyPath} {
				if _, err := os.Stat(p); err == nil {
					return fmt.Errorf("%s already exists; not overwriting it", p)
				}
			}
			ca, err := certs.NewCA("Roster Agent CA", time.Duration(days)*24*time.Hour)
			if err != nil {
				return err
			}
			if err := certs.WriteNew(keyPath, ca.KeyPEM, 0o600); err != nil {
				return err
			}
			if err := certs.WriteNew(certPath, ca.CertPEM, 0o644); err != nil {
				return err
			}
			return a.printCreated(createdFiles{Cert: certPath, Key: keyPath})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write the files in")
	cmd.Flags().IntVar(&days, "days", int(certs.DefaultCAValidity/(24*time.Hour)), "validity in days")
	return cmd
}

func (a *app) tlsCertCreateCommand() *cobra.Command {
	var (
		server, clientCert bool
		dir, dc, caPath    string
		caKeyPath          string
		days               int
		dnsNames, ips      []string
	)
	cmd := &cobra.Command{
		Use:   "create (--server | --client)",
		Short: "Create a server or client certificate signed by the CA",
		Long: `Creates <dc>-server-roster-<n>.pem (or <dc>-client-roster-<n>.pem) and its
-key.pem, with n the first number free in --dir.

A server certificate names server.<dc>.roster, localhost, 127.0.0.1, every
--dns and --ip, and the hosts of --addr when it is given: give the
addresses clients dial the server by. A client certificate names
client.<dc>.roster and can only be used as a client.`,
		Example: `  roster tls cert create --server --ip 10.0.0.1 --dns roster-1.internal
  roster tls cert create --client`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == clientCert {
				return usagef("give exactly one of --server and --client")
			}
			if err := certs.CheckDatacenter(dc); err != nil {
				return usagef("--dc: %w", err)
			}
			if days < 1 {
				return usagef("--days %d must be at least 1", days)
			}
			req := certs.Request{Server: server, Datacenter: dc, DNSNames: dnsNames,
				NotAfter: time.Now().Add(time.Duration(days) * 24 * time.Hour)}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return usagef("--ip %q is not an IP address", s)
				}
				req.IPs = append(req.IPs, ip)
			}
			if server && cmd.Flags().Changed("addr") {
				for _, hp := range a.addrs {
					host, _, err := net.SplitHostPort(hp)
					if err != nil {
						host = hp
					}
					if ip := net.ParseIP(host); ip != nil {
						req.IPs = append(req.IPs, ip)
					} else {
						req.DNSNames = append(req.DNSNames, host)
					}
				}
			}
			if err := checkDir(dir); err != nil {
				return err
			}
			if caPath == "" {
				caPath = filepath.Join(dir, caCertFile)
			}
			if caKeyPath == "" {
				caKeyPath = filepath.Join(dir, caKeyFile)
			}
			ca, err := certs.LoadCA(caPath, caKeyPath)
			if err != nil {
				return err
			}
			certPEM, keyPEM, err := ca.Issue(req)
			if err != nil {
				return err
			}
			kind := "client"
			if server {
				kind = "server"
			}
			certPath, keyPath, err := freeCertNames(dir, dc+"-"+kind+"-roster")
			if err != nil {
				return err
			}
			if err := certs.WriteNew(keyPath, keyPEM, 0o600); err != nil {
				return err
			}
			if err := certs.WriteNew(certPath, certPEM, 0o644); err != nil {
				return err
			}
			return a.printCreated(createdFiles{Cert: certPath, Key: keyPath})
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&server, "server", false, "create a server certificate (server.<dc>.roster)")
	fs.BoolVar(&clientCert, "client", false, "create a client certificate")
	fs.StringVar(&dir, "dir", ".", "directory holding the CA and receiving the files")
	fs.StringVar(&dc, "dc", certs.DefaultDatacenter, "datacenter of the server name server.<dc>.roster (rosterd --tls-server-name)")
	fs.StringVar(&caPath, "ca", "", "CA certificate (default <dir>/"+caCertFile+")")
	fs.StringVar(&caKeyPath, "ca-key", "", "CA key (default <dir>/"+caKeyFile+")")
	fs.IntVar(&days, "days", int(certs.DefaultCertValidity/(24*time.Hour)), "validity in days (never past the CA's)")
	fs.StringSliceVar(&dnsNames, "dns", nil, "extra DNS name (repeatable)")
	fs.StringSliceVar(&ips, "ip", nil, "extra IP address (repeatable)")
	return cmd
}

// checkDir refuses a --dir that is missing or not a directory, before a
// file inside it fails with an error that names only the file.
func checkDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("--dir %s does not exist; create it first (mkdir -p %s)", dir, dir)
	case err != nil:
		return fmt.Errorf("--dir: %w", err)
	case !st.IsDir():
		return fmt.Errorf("--dir %s is not a directory", dir)
	}
	return nil
}

// freeCertNames returns the first <prefix>-<n>.pem and <prefix>-<n>-key.pem
// in dir that do not exist.
func freeCertNames(dir, prefix string) (string, string, error) {
	for n := 0; n < 10000; n++ {
		c := filepath.Join(dir, fmt.Sprintf("%s-%d.pem", prefix, n))
		k := filepath.Join(dir, fmt.Sprintf("%s-%d-key.pem", prefix, n))
		_, errC := os.Stat(c)
		_, errK := os.Stat(k)
		if os.IsNotExist(errC) && os.IsNotExist(errK) {
			return c, k, nil
		}
	}
	return "", "", fmt.Errorf("no free %s-<n>.pem name in %s", prefix, dir)
}

package main

import (
	"crypto/tls"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/internal/certs"
	"github.com/roster-registry/roster/internal/tlsconfig"
	"github.com/roster-registry/roster/rpc"
)

// tlsFlags are the TLS flags and, once loaded, the node's TLS material.
type tlsFlags struct {
	ca, cert, key  string
	verifyIncoming bool
	serverName     string

	// conf holds the loaded material, nil without TLS. Every tls.Config
	// handed out reads it on each handshake, so reload (SIGHUP) swaps the
	// certificate, key and CA without a restart.
	conf *atomic.Pointer[tlsconfig.Config]
}

func (t *tlsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&t.ca, "tls-ca", "", "PEM file of the CA that signs every server and client certificate; with --tls-cert and --tls-key "+
		"the gRPC and HTTP APIs serve TLS and the Raft transport and forwarding between nodes use mutual TLS")
	fs.StringVar(&t.cert, "tls-cert", "", "PEM file of this node's server certificate (roster tls cert create --server): it must carry --tls-server-name")
	fs.StringVar(&t.key, "tls-key", "", "PEM file of the key of --tls-cert")
	fs.BoolVar(&t.verifyIncoming, "tls-verify-incoming", false, "require API clients (gRPC and HTTP) to present a certificate signed by --tls-ca; "+
		"the Raft port and calls only servers make always require a server certificate")
	fs.StringVar(&t.serverName, "tls-server-name", certs.ServerName(certs.DefaultDatacenter),
		"the name every server certificate of the cluster carries and servers require of each other; client certificates never carry it")
}

// load checks the flags and reads the files; nil conf means no TLS.
func (t *tlsFlags) load() error {
	if t.ca == "" && t.cert == "" && t.key == "" {
		if t.verifyIncoming {
			return usagef("--tls-verify-incoming needs --tls-ca, --tls-cert and --tls-key")
		}
		return nil
	}
	if t.ca == "" || t.cert == "" || t.key == "" {
		return usagef("TLS needs --tls-ca, --tls-cert and --tls-key together")
	}
	conf, err := t.read()
	if err != nil {
		return err
	}
	t.conf = new(atomic.Pointer[tlsconfig.Config])
	t.conf.Store(conf)
	return nil
}

func (t *tlsFlags) read() (*tlsconfig.Config, error) {
	return tlsconfig.Load(tlsconfig.Files{
		CA: t.ca, Cert: t.cert, Key: t.key, VerifyIncoming: t.verifyIncoming, ServerName: t.serverName,
	})
}

// reload reads the files again and, when they check as load's do, serves
// them from the next handshake on. On any failure the material in use
// stays; connections already open keep theirs either way.
func (t *tlsFlags) reload(logger hclog.Logger) {
	if t.conf == nil {
		logger.Info("SIGHUP: TLS is off, nothing to reload")
		return
	}
	conf, err := t.read()
	if err != nil {
		logger.Error("SIGHUP: TLS files not reloaded; the ones loaded before stay in use", "error", err)
		return
	}
	t.conf.Store(conf)
	logger.Info("SIGHUP: reloaded the TLS certificate, key and CA", "cert", t.cert, "key", t.key, "ca", t.ca)
}

// on reports whether the node runs with TLS.
func (t *tlsFlags) on() bool { return t.conf != nil }

// serving returns a listener's configuration: build applied to the
// material loaded at each handshake. nextProtos must repeat what the server
// offers (gRPC and net/http set it on the outer configuration only).
func (t *tlsFlags) serving(build func(*tlsconfig.Config) *tls.Config, nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := build(t.conf.Load())
			c.NextProtos = nextProtos
			return c, nil
		},
	}
}

// dialing returns the configuration of connections to other servers:
// base's settings, with the certificate presented and the peer's check
// taken from the material loaded at each handshake.
func (t *tlsFlags) dialing(base *tls.Config) *tls.Config {
	return &tls.Config{
		MinVersion: base.MinVersion,
		ServerName: base.ServerName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := t.conf.Load().Peer().Certificates[0]
			return &c, nil
		},
		// The standard check would use a CA pool fixed here; VerifyServer
		// makes the same one (signed by the CA, server name, server
		// usage) against the pool loaded now.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return t.conf.Load().VerifyServer(cs)
		},
	}
}

// api is the configuration of the gRPC and HTTP listeners.
func (t *tlsFlags) api(nextProtos ...string) *tls.Config {
	return t.serving((*tlsconfig.Config).API, nextProtos...)
}

// raft returns the Raft transport's TLS, nil without TLS.
func (t *tlsFlags) raft() *cluster.RaftTLS {
	if t.conf == nil {
		return nil
	}
	return &cluster.RaftTLS{
		Incoming: t.serving((*tlsconfig.Config).RaftIncoming),
		Outgoing: t.dialing(t.conf.Load().RaftPeer()),
	}
}

// rpcOptions sets how the node dials its peers (mutual TLS, verifying
// their server name) and which callers count as servers.
func (t *tlsFlags) rpcOptions(o *rpc.Options) {
	if t.conf == nil {
		return
	}
	o.DialOptions = t.peerDialOptions()
	o.VerifyPeerServer = func(cs tls.ConnectionState) error { return t.conf.Load().VerifyServer(cs) }
}

// peerDialOptions are the dial options of connections to other servers.
func (t *tlsFlags) peerDialOptions() []grpc.DialOption {
	if t.conf == nil {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(t.dialing(t.conf.Load().Peer())))}
}

// serverOptions are the gRPC server's TLS credentials, logging refused
// handshakes to logger; the in-process connection of the HTTP front end
// stays plaintext in memory.
func (t *tlsFlags) serverOptions(logger hclog.Logger) []grpc.ServerOption {
	if t.conf == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(rpc.ServerCredentialsLogged(t.api("h2"), logger))}
}

// reloadOnHangup reloads the TLS files (reload) at every SIGHUP, whose
// default would end the process without a word, until the returned stop
// is called. done, if not nil, gets a value after each reload.
func (t *tlsFlags) reloadOnHangup(logger hclog.Logger, done chan<- struct{}) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-quit:
				return
			case <-hup:
				t.reload(logger)
				if done != nil {
					done <- struct{}{}
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(quit)
		<-finished
	}
}

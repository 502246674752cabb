package main

import (
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

	conf *tlsconfig.Config
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
	conf, err := tlsconfig.Load(tlsconfig.Files{
		CA: t.ca, Cert: t.cert, Key: t.key, VerifyIncoming: t.verifyIncoming, ServerName: t.serverName,
	})
	if err != nil {
		return err
	}
	t.conf = conf
	return nil
}

// on reports whether the node runs with TLS.
func (t *tlsFlags) on() bool { return t.conf != nil }

// raft returns the Raft transport's TLS, nil without TLS.
func (t *tlsFlags) raft() *cluster.RaftTLS {
	if t.conf == nil {
		return nil
	}
	return &cluster.RaftTLS{Incoming: t.conf.RaftIncoming(), Outgoing: t.conf.RaftPeer()}
}

// rpcOptions sets how the node dials its peers (mutual TLS, verifying
// their server name) and which callers count as servers.
func (t *tlsFlags) rpcOptions(o *rpc.Options) {
	if t.conf == nil {
		return
	}
	o.DialOptions = t.peerDialOptions()
	o.VerifyPeerServer = t.conf.VerifyServer
}

// peerDialOptions are the dial options of connections to other servers.
func (t *tlsFlags) peerDialOptions() []grpc.DialOption {
	if t.conf == nil {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(t.conf.Peer()))}
}

// serverOptions are the gRPC server's TLS credentials; the in-process
// connection of the HTTP front end stays plaintext in memory.
func (t *tlsFlags) serverOptions() []grpc.ServerOption {
	if t.conf == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(rpc.ServerCredentials(t.conf.API()))}
}

package main

import (
	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"

	"github.com/roster-registry/roster/rpc"
)

// aclFlags are the ACL flags. Secrets in them are never logged.
type aclFlags struct {
	enabled        bool
	bootstrapToken string
	dnsToken       string
}

func (a *aclFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&a.enabled, "acl", false, "check ACL tokens on every call: anything a token does not allow is denied (off by default, --dev included)")
	fs.StringVar(&a.bootstrapToken, "acl-bootstrap-token", "",
		"secret of the management token the leader creates if ACL bootstrap has not happened (needs --acl; env ROSTER_ACL_BOOTSTRAP_TOKEN; give every server the same one)")
	fs.StringVar(&a.dnsToken, "dns-token", "", "ACL token secret DNS lookups are made with; with --acl and none, DNS answers nothing (REFUSED)")
}

// rpcOptions puts the ACL settings into o and warns about weak setups.
// A bootstrap token without --acl never gets here (clusterConfig).
func (a *aclFlags) rpcOptions(o *rpc.Options, tlsOn bool, logger hclog.Logger) {
	o.ACL = rpc.ACLOptions{Enabled: a.enabled, BootstrapSecret: a.bootstrapToken}
	if a.enabled && !tlsOn {
		logger.Warn("ACLs are on without TLS: tokens cross the network in plaintext, and Join is not limited to servers; use --tls-cert, --tls-key and --tls-ca")
	}
}

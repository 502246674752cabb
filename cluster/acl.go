package cluster

import (
	"context"

	"github.com/roster-registry/roster/fsm"
	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

// SetToken commits a new ACL token, stamped with the leader's time, and
// returns the token committed (t is left as it was). With bootstrap it is
// the cluster's first management token (store.ErrACLBootstrapped once
// bootstrap has happened, unless it is that same token). The token carries
// the digest of its secret, never the secret.
func (n *Node) SetToken(ctx context.Context, t *store.Token, bootstrap bool) (*store.Token, error) {
	c := *t
	c.CreateUnixNs = now()
	if _, err := n.propose(ctx, fsm.ACLSetTokenType, &raftcmdv1.ACLSetToken{Token: store.TokenToRecord(&c), Bootstrap: bootstrap}); err != nil {
		return nil, err
	}
	return &c, nil
}

// DeleteToken commits the deletion of an ACL token (store.ErrTokenNotFound
// when there is none).
func (n *Node) DeleteToken(ctx context.Context, accessorID string) error {
	_, err := n.propose(ctx, fsm.ACLDeleteTokenType, &raftcmdv1.ACLDeleteToken{AccessorId: accessorID})
	return err
}

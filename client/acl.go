package client

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// WithToken sends secret as the ACL token of every call (the metadata
// "authorization: Bearer <secret>"), for clusters that run with ACLs. It
// also applies to the resolver and watches built on this client. The token
// is sent over plaintext connections too, so use it with WithTLS outside a
// trusted network.
func WithToken(secret string) Option {
	return WithDialOptions(grpc.WithPerRPCCredentials(tokenCreds(secret)))
}

// TokenCredentials are the per-RPC credentials WithToken uses, for code
// that dials Roster with grpc.NewClient itself.
func TokenCredentials(secret string) credentials.PerRPCCredentials { return tokenCreds(secret) }

// tokenCreds are per-RPC credentials carrying a bearer token.
type tokenCreds string

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (tokenCreds) RequireTransportSecurity() bool { return false }

// String hides the secret from anything that prints the credentials.
func (tokenCreds) String() string { return "token(redacted)" }

// ACLBootstrap creates the cluster's first management token and returns
// it with its secret; FailedPrecondition once bootstrap has happened. It
// moves to another endpoint only when it was never sent.
func (c *Client) ACLBootstrap(ctx context.Context, opts ...grpc.CallOption) (*rosterv1.ACLBootstrapResponse, error) {
	return call(ctx, c, retryUnsent, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.ACLBootstrapResponse, error) {
		return rosterv1.NewACLClient(conn).Bootstrap(ctx, &rosterv1.ACLBootstrapRequest{}, opts...)
	})
}

// CreateToken creates an ACL token; its secret is in the answer, and only
// there. Not retried once sent.
func (c *Client) CreateToken(ctx context.Context, req *rosterv1.CreateTokenRequest, opts ...grpc.CallOption) (*rosterv1.CreateTokenResponse, error) {
	return call(ctx, c, retryUnsent, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.CreateTokenResponse, error) {
		return rosterv1.NewACLClient(conn).CreateToken(ctx, req, opts...)
	})
}

// ListTokens lists ACL tokens without their secrets.
func (c *Client) ListTokens(ctx context.Context, req *rosterv1.ListTokensRequest, opts ...grpc.CallOption) (*rosterv1.ListTokensResponse, error) {
	return call(ctx, c, retryRead, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.ListTokensResponse, error) {
		return rosterv1.NewACLClient(conn).ListTokens(ctx, req, opts...)
	})
}

// DeleteToken deletes an ACL token by accessor id. Not retried once sent.
func (c *Client) DeleteToken(ctx context.Context, req *rosterv1.DeleteTokenRequest, opts ...grpc.CallOption) (*rosterv1.DeleteTokenResponse, error) {
	return call(ctx, c, retryUnsent, func(ctx context.Context, conn *grpc.ClientConn) (*rosterv1.DeleteTokenResponse, error) {
		return rosterv1.NewACLClient(conn).DeleteToken(ctx, req, opts...)
	})
}

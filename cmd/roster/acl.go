package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// tokenJSON is a token as -o json prints it; secret_id only when created.
type tokenJSON struct {
	AccessorID  string   `json:"accessor_id"`
	SecretID    string   `json:"secret_id,omitempty"`
	Description string   `json:"description"`
	Rules       []string `json:"rules"`
	Management  bool     `json:"management"`
	CreateTime  string   `json:"create_time"`
}

func newTokenJSON(t *rosterv1.ACLToken) tokenJSON {
	rules := t.GetRules()
	if rules == nil {
		rules = []string{}
	}
	return tokenJSON{AccessorID: t.GetAccessorId(), SecretID: t.GetSecretId(), Description: t.GetDescription(),
		Rules: rules, Management: t.GetManagement(),
		CreateTime: time.Unix(0, t.GetCreateTimeUnixNs()).UTC().Format(time.RFC3339)}
}

func (a *app) aclCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Bootstrap ACLs and manage ACL tokens",
		Long: `acl bootstraps a cluster's ACLs and manages its tokens. Servers check tokens
when started with --acl; send one with --token (or ROSTER_TOKEN).

Rules (--rule, repeatable):
  service:PREFIX:ACCESS               services whose name starts with PREFIX, any namespace
  namespace:NS:service:PREFIX:ACCESS  the same in namespace NS only
  operator:ACCESS                     members, remove-node, transfer-leadership, self-preservation
  acl:ACCESS                          managing tokens
ACCESS is read, write (implies read) or deny; "service::read" reads every
service. The rule naming the namespace wins, then the longest prefix, then
deny over write over read.`,
		Example: `  roster acl bootstrap
  ROSTER_TOKEN=<secret> roster acl token create --rule service:web:write --rule service::read
  roster --token <secret> acl token list -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	token := &cobra.Command{
		Use:   "token",
		Short: "Create, list and delete ACL tokens",
		Long:  `token creates, lists and deletes ACL tokens; all need a token with acl rules.`,
		Example: `  roster acl token create --rule service:web:write
  roster acl token list
  roster acl token delete ACCESSOR`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	token.AddCommand(a.aclTokenCreateCommand(), a.aclTokenListCommand(), a.aclTokenDeleteCommand())
	cmd.AddCommand(a.aclBootstrapCommand(), token)
	return cmd
}

func (a *app) aclBootstrapCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the cluster's first management token (once)",
		Long: `bootstrap creates the cluster's first management token, allowed everything,
and prints its secret: the only time it is shown. It works once per cluster;
afterwards it fails with "failed precondition".

-o json prints {"accessor_id", "secret_id", "description", "rules",
"management", "create_time"}.`,
		Example: `  roster acl bootstrap -o json`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.ACLBootstrap(ctx)
				if err != nil {
					return err
				}
				return a.printToken(resp.GetToken())
			})
		},
	}
}

func (a *app) aclTokenCreateCommand() *cobra.Command {
	var rules []string
	var description string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print its secret (shown once)",
		Long: `create makes a token with the given rules (see roster acl --help) and prints
its accessor id (public, for list and delete) and its secret (send it with
--token; it is shown only here). Needs a token with acl:write.`,
		Example: `  roster acl token create --rule service:web:write --description "web deployer"
  roster acl token create --rule service::read --rule namespace:payments:service::deny -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(rules) == 0 {
				return usagef("give at least one --rule")
			}
			if _, err := acl.ParseRules(rules); err != nil {
				return usagef("--rule: %w", err)
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.CreateToken(ctx, &rosterv1.CreateTokenRequest{Description: description, Rules: rules})
				if err != nil {
					return err
				}
				return a.printToken(resp.GetToken())
			})
		},
	}
	cmd.Flags().StringArrayVar(&rules, "rule", nil, "a rule, such as service:web:write (repeatable)")
	cmd.Flags().StringVar(&description, "description", "", "what the token is for")
	return cmd
}

func (a *app) printToken(t *rosterv1.ACLToken) error {
	out := newTokenJSON(t)
	if a.json() {
		return writeJSON(a.stdout, out)
	}
	tb := newTable(a.stdout, "FIELD", "VALUE")
	tb.row("AccessorID", out.AccessorID)
	tb.row("SecretID", out.SecretID)
	tb.row("Description", orDash(out.Description))
	tb.row("Rules", orDash(strings.Join(out.Rules, " ")))
	return tb.flush()
}

func (a *app) aclTokenListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Long: `list shows every token's accessor id, description and rules. Secrets are not
stored, so they are never shown. Needs a token with acl:read.

-o json prints {"tokens": [{"accessor_id", "description", "rules",
"management", "create_time"}]}.`,
		Example: `  roster acl token list -o json`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.ListTokens(ctx, &rosterv1.ListTokensRequest{})
				if err != nil {
					return err
				}
				out := struct {
					Tokens []tokenJSON `json:"tokens"`
				}{Tokens: []tokenJSON{}}
				for _, t := range resp.GetTokens() {
					out.Tokens = append(out.Tokens, newTokenJSON(t))
				}
				if a.json() {
					return writeJSON(a.stdout, out)
				}
				tb := newTable(a.stdout, "ACCESSOR", "DESCRIPTION", "RULES")
				for _, t := range out.Tokens {
					tb.row(t.AccessorID, orDash(t.Description), orDash(strings.Join(t.Rules, " ")))
				}
				return tb.flush()
			})
		},
	}
}

func (a *app) aclTokenDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ACCESSOR",
		Short:   "Delete a token by accessor id",
		Long:    `delete removes a token; calls made with it are refused from then on. Needs acl:write.`,
		Example: `  roster acl token delete 6c1d0b7e-3f0e-4a55-9a4e-1f0c2b3d4e5f`,
		Args:    exactArgs("ACCESSOR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				if _, err := c.DeleteToken(ctx, &rosterv1.DeleteTokenRequest{AccessorId: args[0]}); err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, map[string]string{"accessor_id": args[0]})
				}
				_, err := a.stdout.Write([]byte("deleted token " + args[0] + "\n"))
				return err
			})
		},
	}
}

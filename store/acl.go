package store

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/go-memdb"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// ACL errors returned by store writes.
var (
	// ErrACLBootstrapped: ACL bootstrap already happened; it happens once.
	ErrACLBootstrapped = errors.New("ACL bootstrap already done")
	// ErrTokenNotFound: no token has that accessor id.
	ErrTokenNotFound = errors.New("token not found")
	// ErrTokenExists: a token with that accessor id or secret exists.
	ErrTokenExists = errors.New("token already exists")
)

// Token is an ACL token. The secret is not kept: only its SHA-256 digest.
// Stored tokens are never modified.
type Token struct {
	AccessorID string
	// SecretHex is the hex SHA-256 digest of the secret.
	SecretHex    string
	Description  string
	Rules        []string
	CreateUnixNs int64
	CreateIndex  uint64
	// Bootstrap marks the token made by ACL bootstrap.
	Bootstrap bool
}

// TokenToRecord converts a token to its stored form.
func TokenToRecord(t *Token) *raftcmdv1.ACLToken {
	sum, _ := hex.DecodeString(t.SecretHex)
	return &raftcmdv1.ACLToken{AccessorId: t.AccessorID, SecretSha256: sum, Description: t.Description,
		Rules: slices.Clone(t.Rules), CreateUnixNs: t.CreateUnixNs, CreateIndex: t.CreateIndex, Bootstrap: t.Bootstrap}
}

// TokenFromRecord converts a stored token.
func TokenFromRecord(r *raftcmdv1.ACLToken) *Token {
	return &Token{AccessorID: r.GetAccessorId(), SecretHex: hex.EncodeToString(r.GetSecretSha256()),
		Description: r.GetDescription(), Rules: slices.Clone(r.GetRules()), CreateUnixNs: r.GetCreateUnixNs(),
		CreateIndex: r.GetCreateIndex(), Bootstrap: r.GetBootstrap()}
}

// aclRow is the replicated ACL state other than tokens.
type aclRow struct {
	Key          string
	Bootstrapped bool
}

const aclKey = "acl"

// TokenBySecret returns the token whose secret has SHA-256 digest sum, or nil.
func (v *View) TokenBySecret(sum []byte) *Token {
	raw, err := v.txn.First(tableTokens, indexSecret, hex.EncodeToString(sum))
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*Token)
}

// Tokens calls fn for every token in accessor id order until it returns false.
func (v *View) Tokens(fn func(*Token) bool) error {
	it, err := v.txn.Get(tableTokens, indexID)
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*Token)) {
			return nil
		}
	}
	return nil
}

// WatchTokens adds to ws a channel that fires when a write after this
// view creates or deletes a token. A restore replaces the whole state
// without firing it: watch Store.AbandonCh for that.
func (v *View) WatchTokens(ws memdb.WatchSet) error {
	it, err := v.txn.Get(tableTokens, indexID)
	if err != nil {
		return fmt.Errorf("watch tokens: %w", err)
	}
	ws.Add(it.WatchCh())
	return nil
}

// ACLBootstrapped reports whether ACL bootstrap has happened.
func (v *View) ACLBootstrapped() bool {
	raw, err := v.txn.First(tableACL, indexID, aclKey)
	return err == nil && raw != nil && raw.(*aclRow).Bootstrapped
}

// SetToken creates a token at the transaction's index. With bootstrap it is
// the cluster's first management token: once bootstrap has happened it is
// refused with ErrACLBootstrapped, unless the bootstrap token with the same
// secret exists, which is a no-op. Like members, tokens are not registry
// data: they change no revision and reach no watcher.
func (w *WriteTxn) SetToken(t *Token, bootstrap bool) error {
	if t.AccessorID == "" || t.SecretHex == "" {
		return fmt.Errorf("set token: %w: empty accessor or secret", ErrTokenExists)
	}
	if bootstrap {
		raw, err := w.txn.First(tableACL, indexID, aclKey)
		if err != nil {
			return fmt.Errorf("get acl state: %w", err)
		}
		if raw != nil && raw.(*aclRow).Bootstrapped {
			prev, err := w.txn.First(tableTokens, indexSecret, t.SecretHex)
			if err != nil {
				return fmt.Errorf("get token: %w", err)
			}
			if prev != nil && prev.(*Token).Bootstrap {
				return nil
			}
			return ErrACLBootstrapped
		}
		if err := w.txn.Insert(tableACL, &aclRow{Key: aclKey, Bootstrapped: true}); err != nil {
			return fmt.Errorf("set acl state: %w", err)
		}
	}
	for _, idx := range []struct{ name, val string }{{indexID, t.AccessorID}, {indexSecret, t.SecretHex}} {
		prev, err := w.txn.First(tableTokens, idx.name, idx.val)
		if err != nil {
			return fmt.Errorf("get token: %w", err)
		}
		if prev != nil {
			return fmt.Errorf("token %s: %w", t.AccessorID, ErrTokenExists)
		}
	}
	c := *t
	c.Rules = slices.Clone(t.Rules)
	c.CreateIndex, c.Bootstrap = w.index, bootstrap
	if err := w.txn.Insert(tableTokens, &c); err != nil {
		return fmt.Errorf("insert token: %w", err)
	}
	return nil
}

// DeleteToken deletes a token by accessor id; ErrTokenNotFound if none.
func (w *WriteTxn) DeleteToken(accessorID string) error {
	raw, err := w.txn.First(tableTokens, indexID, accessorID)
	if err != nil {
		return fmt.Errorf("get token: %w", err)
	}
	if raw == nil {
		return fmt.Errorf("token %s: %w", accessorID, ErrTokenNotFound)
	}
	if err := w.txn.Delete(tableTokens, raw); err != nil {
		return fmt.Errorf("delete token: %w", err)
	}
	return nil
}

// Token restores one token.
func (r *Restorer) Token(t *Token) error {
	if t.AccessorID == "" || t.SecretHex == "" {
		return errors.New("restore: token without accessor id or secret digest")
	}
	if err := r.txn.Insert(tableTokens, t); err != nil {
		return fmt.Errorf("restore token %s: %w", t.AccessorID, err)
	}
	return nil
}

// ACLBootstrapped restores the bootstrap mark.
func (r *Restorer) ACLBootstrapped(done bool) error {
	if !done {
		return nil
	}
	if err := r.txn.Insert(tableACL, &aclRow{Key: aclKey, Bootstrapped: true}); err != nil {
		return fmt.Errorf("restore acl state: %w", err)
	}
	return nil
}

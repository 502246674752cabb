// Package acl is Roster's token policy language: it parses rules, decides
// what a set of rules allows, and hashes secrets. It imports nothing of
// Roster's, so the server, the CLI and tests share one definition.
//
// A rule is one of
//
//	service:PREFIX:ACCESS                 services whose name starts with PREFIX, in every namespace
//	namespace:NS:service:PREFIX:ACCESS    the same, in namespace NS only
//	operator:ACCESS                       cluster management (members, remove-node, transfer-leadership, self-preservation)
//	acl:ACCESS                            managing tokens
//
// where ACCESS is read, write or deny (write implies read), and an empty
// PREFIX ("service::read") matches every service. For a service, the rule
// that names its namespace beats one that does not, then the longest
// matching prefix wins, and at equal specificity deny beats write beats
// read. Anything no rule allows is denied.
package acl

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// Access is what a rule grants.
type Access int

// Access levels, ordered so that a larger one wins at equal specificity.
const (
	// None: no rule matched.
	None Access = iota
	Read
	Write
	Deny
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Deny:
		return "deny"
	}
	return "none"
}

// allows reports whether granted access a permits need (Read or Write).
func (a Access) allows(need Access) bool {
	switch a {
	case Write:
		return need == Read || need == Write
	case Read:
		return need == Read
	}
	return false
}

func parseAccess(s string) (Access, error) {
	switch s {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "deny":
		return Deny, nil
	}
	return None, fmt.Errorf("access %q is not read, write or deny", s)
}

// Rule is one parsed rule.
type Rule struct {
	// Resource is "service", "operator" or "acl".
	Resource string
	// Namespace limits a service rule to one namespace; "" is every one.
	Namespace string
	// Prefix is a service rule's service name prefix.
	Prefix string
	Access Access
}

// String returns the rule in its syntax.
func (r Rule) String() string {
	switch {
	case r.Resource != "service":
		return r.Resource + ":" + r.Access.String()
	case r.Namespace != "":
		return "namespace:" + r.Namespace + ":service:" + r.Prefix + ":" + r.Access.String()
	default:
		return "service:" + r.Prefix + ":" + r.Access.String()
	}
}

// ErrInvalidRule: a rule does not parse.
var ErrInvalidRule = errors.New("invalid rule")

// MaxRules bounds the rules of one token.
const MaxRules = 64

// ParseRule parses one rule (see the package comment).
func ParseRule(s string) (Rule, error) {
	parts := strings.Split(s, ":")
	bad := func(why string) (Rule, error) {
		return Rule{}, fmt.Errorf("%w %q: %s (want service:PREFIX:ACCESS, namespace:NS:service:PREFIX:ACCESS, operator:ACCESS or acl:ACCESS)", ErrInvalidRule, s, why)
	}
	var r Rule
	switch {
	case len(parts) == 2 && (parts[0] == "operator" || parts[0] == "acl"):
		r.Resource = parts[0]
	case len(parts) == 3 && parts[0] == "service":
		r.Resource, r.Prefix = "service", parts[1]
	case len(parts) == 5 && parts[0] == "namespace" && parts[2] == "service":
		if parts[1] == "" {
			return bad("empty namespace")
		}
		r.Resource, r.Namespace, r.Prefix = "service", parts[1], parts[3]
	default:
		return bad("unknown form")
	}
	if len(s) > 512 {
		return bad("longer than 512 bytes")
	}
	a, err := parseAccess(parts[len(parts)-1])
	if err != nil {
		return bad(err.Error())
	}
	r.Access = a
	return r, nil
}

// ParseRules parses every rule; the first error is returned.
func ParseRules(rules []string) ([]Rule, error) {
	if len(rules) > MaxRules {
		return nil, fmt.Errorf("%w: %d rules, the limit is %d", ErrInvalidRule, len(rules), MaxRules)
	}
	out := make([]Rule, 0, len(rules))
	for _, s := range rules {
		r, err := ParseRule(s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// ManagementRules are the rules of a management token: everything.
var ManagementRules = []string{"service::write", "operator:write", "acl:write"}

// Policy is what one token may do.
type Policy struct {
	rules []Rule
}

// NewPolicy returns the policy of rules.
func NewPolicy(rules []Rule) *Policy { return &Policy{rules: rules} }

// Service returns the access the policy grants to service in namespace.
func (p *Policy) Service(namespace, service string) Access {
	best, bestNS, bestLen := None, false, -1
	for _, r := range p.rules {
		if r.Resource != "service" || !strings.HasPrefix(service, r.Prefix) {
			continue
		}
		if r.Namespace != "" && r.Namespace != namespace {
			continue
		}
		ns := r.Namespace != ""
		switch {
		case ns && !bestNS, ns == bestNS && len(r.Prefix) > bestLen:
			best, bestNS, bestLen = r.Access, ns, len(r.Prefix)
		case ns == bestNS && len(r.Prefix) == bestLen && r.Access > best:
			best = r.Access
		}
	}
	return best
}

// AllowService reports whether the policy allows need (Read or Write) on
// service in namespace.
func (p *Policy) AllowService(namespace, service string, need Access) bool {
	return p.Service(namespace, service).allows(need)
}

// AllowEveryService reports whether the policy allows need on every
// service of namespace, present and future: the rule for the empty prefix
// allows it and no more specific rule for that namespace takes it away.
func (p *Policy) AllowEveryService(namespace string, need Access) bool {
	if !p.Service(namespace, "").allows(need) {
		return false
	}
	for _, r := range p.rules {
		if r.Resource != "service" || (r.Namespace != "" && r.Namespace != namespace) {
			continue
		}
		if !p.Service(namespace, r.Prefix).allows(need) {
			return false
		}
	}
	return true
}

// AllowSomeService reports whether the policy allows need on at least one
// service name of namespace: some rule that applies there allows it, and
// the service named by that rule's prefix keeps it. (It may miss a policy
// that allows only longer names under a prefix whose own name is denied;
// it never says yes when no name is allowed.)
func (p *Policy) AllowSomeService(namespace string, need Access) bool {
	for _, r := range p.rules {
		if r.Resource != "service" || (r.Namespace != "" && r.Namespace != namespace) || !r.Access.allows(need) {
			continue
		}
		if p.Service(namespace, r.Prefix).allows(need) {
			return true
		}
	}
	return false
}

// Allow reports whether the policy allows need on resource "operator" or "acl".
func (p *Policy) Allow(resource string, need Access) bool {
	best := None
	for _, r := range p.rules {
		if r.Resource == resource && r.Access > best {
			best = r.Access
		}
	}
	return best.allows(need)
}

// HashSecret returns the SHA-256 digest under which a secret is stored.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

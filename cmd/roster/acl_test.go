package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/rpc"
)

// TestACLCommands runs roster acl against a real 3-node cluster with ACLs
// on, through a follower: bootstrap once, create a token with rules, list
// it without its secret, use it with --token and ROSTER_TOKEN, delete it.
func TestACLCommands(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) { o.ACL.Enabled = true }})
	c.WaitMembersKnown()
	addr := c.Followers()[0].Addr
	ctx := testContext(t)

	code, out, errOut := runCLI(t, ctx, addr, "acl", "bootstrap", "-o", "json")
	if code != 0 {
		t.Fatalf("bootstrap: %d %s", code, errOut)
	}
	var boot tokenJSON
	if err := json.Unmarshal([]byte(out), &boot); err != nil || boot.SecretID == "" || !boot.Management {
		t.Fatalf("bootstrap printed %q (%v)", out, err)
	}
	if code, _, errOut := runCLI(t, ctx, addr, "acl", "bootstrap"); code != 1 || !strings.Contains(errOut, "failed precondition") {
		t.Fatalf("second bootstrap: %d %s", code, errOut)
	}
	waitSecret := func(secret string) {
		c.Eventually("token known everywhere", 10*time.Second, func() bool {
			for _, nd := range c.Nodes {
				if nd.Node.Store().View().TokenBySecret(acl.HashSecret(secret)) == nil {
					return false
				}
			}
			return true
		})
	}
	waitSecret(boot.SecretID)

	if code, _, errOut := runCLI(t, ctx, addr, "acl", "token", "create", "--rule", "service:web:write"); code != 1 || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("create without a token: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, ctx, addr, "--token", boot.SecretID, "acl", "token", "create", "--rule", "service:web:admin"); code != 2 {
		t.Fatalf("bad rule: %d %s", code, errOut)
	}
	code, out, errOut = runCLI(t, ctx, addr, "--token", boot.SecretID, "acl", "token", "create",
		"--rule", "service:web:write", "--rule", "service:web-internal:deny", "--description", "web deployer", "-o", "json")
	if code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	var web tokenJSON
	if err := json.Unmarshal([]byte(out), &web); err != nil || web.SecretID == "" || len(web.Rules) != 2 || web.Description != "web deployer" {
		t.Fatalf("create printed %q (%v)", out, err)
	}
	waitSecret(web.SecretID)

	code, out, errOut = runCLI(t, ctx, addr, "--token", boot.SecretID, "acl", "token", "list", "-o", "json")
	if code != 0 || !strings.Contains(out, web.AccessorID) || strings.Contains(out, web.SecretID) || strings.Contains(out, boot.SecretID) {
		t.Fatalf("list: %d %q %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, ctx, addr, "--token", web.SecretID, "acl", "token", "list"); code != 1 || !strings.Contains(errOut, "lacks acl:read") {
		t.Fatalf("list with a service token: %d %s", code, errOut)
	}

	if code, _, errOut := runCLI(t, ctx, addr, "--token", web.SecretID, "register", "web", "w1", "10.0.0.1:80"); code != 0 {
		t.Fatalf("register with --token: %d %s", code, errOut)
	}
	var stdout, stderr syncBuffer
	env := func(k string) string {
		if k == "ROSTER_TOKEN" {
			return web.SecretID
		}
		return ""
	}
	if code := run(ctx, []string{"--addr", addr, "register", "api", "a1", "10.0.0.1:80"}, &stdout, &stderr, env); code != 1 ||
		!strings.Contains(stderr.String(), "lacks service:api:write in namespace default") {
		t.Fatalf("register api with ROSTER_TOKEN: %d %s", code, stderr.String())
	}

	if code, _, errOut := runCLI(t, ctx, addr, "--token", boot.SecretID, "acl", "token", "delete", web.AccessorID); code != 0 {
		t.Fatalf("delete: %d %s", code, errOut)
	}
	c.Eventually("token gone everywhere", 10*time.Second, func() bool {
		for _, nd := range c.Nodes {
			if nd.Node.Store().View().TokenBySecret(acl.HashSecret(web.SecretID)) != nil {
				return false
			}
		}
		return true
	})
	if code, _, errOut := runCLI(t, ctx, addr, "--token", web.SecretID, "register", "web", "w2", "10.0.0.1:80"); code != 1 || !strings.Contains(errOut, "token not found") {
		t.Fatalf("register with a deleted token: %d %s", code, errOut)
	}
}

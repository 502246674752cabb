package rpc

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	"github.com/roster-registry/roster/acl"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestEveryMethodHasAnACLRule: with ACLs on, a method nobody gave a rule
// is refused even to a management token. Every method of every service
// must be open, need an operator or acl permission, or be checked by its
// request's service; a new RPC without a rule fails here.
func TestEveryMethodHasAnACLRule(t *testing.T) {
	rules, err := acl.ParseRules(acl.ManagementRules)
	if err != nil {
		t.Fatal(err)
	}
	mgmt := &caller{policy: acl.NewPolicy(rules), name: "management token"}
	s := &Server{}
	for _, sd := range []grpc.ServiceDesc{rosterv1.Registry_ServiceDesc, rosterv1.Cluster_ServiceDesc, rosterv1.ACL_ServiceDesc} {
		for _, m := range sd.Methods {
			full := "/" + sd.ServiceName + "/" + m.MethodName
			if openMethod(full) {
				continue
			}
			// The generated handler decodes into its request type and hands
			// it to the interceptor: that is the request authorize sees.
			var checked error
			_, _ = m.Handler(nil, context.Background(), func(any) error { return nil },
				func(_ context.Context, req any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
					checked = s.authorize(mgmt, info.FullMethod, req)
					return nil, nil
				})
			if checked != nil {
				t.Errorf("%s has no ACL rule: a management token is refused: %v", full, checked)
			}
		}
		for _, st := range sd.Streams {
			full := "/" + sd.ServiceName + "/" + st.StreamName
			_, byResource := resourceNeeds[full]
			if !openMethod(full) && !byResource && !checkedPerMessage(full) {
				t.Errorf("stream %s has no ACL rule", full)
			}
		}
	}
}

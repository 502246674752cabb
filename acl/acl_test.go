package acl

import (
	"strings"
	"testing"
)

func policy(t *testing.T, rules ...string) *Policy {
	t.Helper()
	rs, err := ParseRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	return NewPolicy(rs)
}

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		bad     bool
	}{
		{in: "service:web:write", out: "service:web:write"},
		{in: "service::read", out: "service::read"},
		{in: "namespace:payments:service:web:deny", out: "namespace:payments:service:web:deny"},
		{in: "operator:read", out: "operator:read"},
		{in: "acl:write", out: "acl:write"},
		{in: "service:web:admin", bad: true},
		{in: "service:web", bad: true},
		{in: "namespace::service:web:read", bad: true},
		{in: "node:x:read", bad: true},
		{in: "operator", bad: true},
		{in: "", bad: true},
	} {
		r, err := ParseRule(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q parsed as %v", tc.in, r)
			}
			continue
		}
		if err != nil || r.String() != tc.out {
			t.Errorf("%q: %v, %v", tc.in, r, err)
		}
	}
	if _, err := ParseRules(make([]string, MaxRules+1)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("too many rules: %v", err)
	}
}

func TestPolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rules     []string
		ns, svc   string
		read, wrt bool
	}{
		{"nothing", nil, "default", "web", false, false},
		{"exact", []string{"service:web:write"}, "default", "web", true, true},
		{"prefix", []string{"service:web:read"}, "default", "webhook", true, false},
		{"not prefix", []string{"service:web:read"}, "default", "api", false, false},
		{"every service", []string{"service::read"}, "other", "api", true, false},
		{"longer prefix wins", []string{"service::write", "service:web:deny"}, "default", "web", false, false},
		{"longer prefix wins over deny", []string{"service:we:deny", "service:web:write"}, "default", "web", true, true},
		{"deny beats at equal specificity", []string{"service:web:write", "service:web:deny"}, "default", "web", false, false},
		{"write beats read at equal", []string{"service:web:read", "service:web:write"}, "default", "web", true, true},
		{"namespace rule wins", []string{"service:web:write", "namespace:payments:service::deny"}, "payments", "web", false, false},
		{"namespace rule elsewhere", []string{"service:web:write", "namespace:payments:service::deny"}, "default", "web", true, true},
		{"namespace only", []string{"namespace:payments:service:web:read"}, "default", "web", false, false},
		{"operator is no service", []string{"operator:write", "acl:write"}, "default", "web", false, false},
	} {
		p := policy(t, tc.rules...)
		if got := p.AllowService(tc.ns, tc.svc, Read); got != tc.read {
			t.Errorf("%s: read %v, want %v", tc.name, got, tc.read)
		}
		if got := p.AllowService(tc.ns, tc.svc, Write); got != tc.wrt {
			t.Errorf("%s: write %v, want %v", tc.name, got, tc.wrt)
		}
	}
}

func TestAllowEveryServiceAndResources(t *testing.T) {
	if !policy(t, "service::read").AllowEveryService("default", Read) {
		t.Error("service::read reads every service")
	}
	if policy(t, "service::read", "service:secret:deny").AllowEveryService("default", Read) {
		t.Error("a deny under service::read leaves some service unreadable")
	}
	if !policy(t, "service::read", "namespace:other:service:secret:deny").AllowEveryService("default", Read) {
		t.Error("a deny in another namespace does not matter")
	}
	if policy(t, "service:web:read").AllowEveryService("default", Read) {
		t.Error("a prefix does not read every service")
	}
	p := policy(t, "operator:read", "acl:write")
	if !p.Allow("operator", Read) || p.Allow("operator", Write) || !p.Allow("acl", Read) || !p.Allow("acl", Write) {
		t.Error("operator:read, acl:write")
	}
	if policy(t, "operator:write", "operator:deny").Allow("operator", Read) {
		t.Error("deny beats")
	}
	m := policy(t, ManagementRules...)
	if !m.Allow("acl", Write) || !m.Allow("operator", Write) || !m.AllowService("any", "thing", Write) {
		t.Error("management allows everything")
	}
}

func TestAllowSomeService(t *testing.T) {
	for _, tc := range []struct {
		rules []string
		ns    string
		need  Access
		want  bool
	}{
		{[]string{"service:web:read"}, "default", Read, true},
		{[]string{"service:web:read"}, "default", Write, false},
		{[]string{"service::read", "service::deny"}, "default", Read, false},
		{[]string{"service::read", "service:web:deny"}, "default", Read, true},
		{[]string{"service:api:write", "service:api:deny"}, "default", Read, false},
		{[]string{"namespace:other:service:web:read"}, "default", Read, false},
		{[]string{"namespace:other:service:web:read"}, "other", Read, true},
		{[]string{"service:web:read", "namespace:other:service::deny"}, "other", Read, false},
		{[]string{"operator:write", "acl:write"}, "default", Read, false},
		{nil, "default", Read, false},
	} {
		if got := policy(t, tc.rules...).AllowSomeService(tc.ns, tc.need); got != tc.want {
			t.Errorf("%v in %s, %v: %v, want %v", tc.rules, tc.ns, tc.need, got, tc.want)
		}
	}
}

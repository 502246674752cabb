package rpc_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

func TestGetLeasesThroughFollower(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Configure: noSelfPreservation})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	f := c.Followers()[0]
	const ttl = 30 * time.Second

	if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: ttlInstance("web", "leased", ttl, 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "plain", 8081)}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if _, err := f.Registry().Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: "web", Id: "leased"}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()

	resp, err := f.Registry().GetLeases(ctx, &rosterv1.GetLeasesRequest{Service: "web"})
	if err != nil {
		t.Fatalf("get leases through follower %s: %v", f.ID, err)
	}
	if len(resp.Leases) != 1 || resp.Leases[0].Id != "leased" {
		t.Fatalf("leases = %v, want only \"leased\" (\"plain\" has no ttl)", resp.Leases)
	}
	l := resp.Leases[0]
	if got := l.Ttl.AsDuration(); got != ttl {
		t.Fatalf("ttl = %s, want %s", got, ttl)
	}
	renewed := l.LastRenewedAt.AsTime()
	if renewed.Before(before) || renewed.After(after) {
		t.Fatalf("last_renewed_at %s outside the heartbeat call [%s, %s]", renewed, before, after)
	}
	if d := l.Deadline.AsTime(); !d.Equal(renewed.Add(ttl)) {
		t.Fatalf("deadline %s, want last_renewed_at + ttl = %s", d, renewed.Add(ttl))
	}
	if resp.Header.GetLeaderId() == "" || resp.Header.GetNodeId() != resp.Header.GetLeaderId() {
		t.Fatalf("answered by %q, leader %q: want the leader to answer", resp.Header.GetNodeId(), resp.Header.GetLeaderId())
	}

	// A service without leases lists none.
	if resp, err := f.Registry().GetLeases(ctx, &rosterv1.GetLeasesRequest{Service: "api"}); err != nil || len(resp.Leases) != 0 {
		t.Fatalf("leases of a service without instances: %v, %v", resp.GetLeases(), err)
	}
	for _, bad := range []*rosterv1.GetLeasesRequest{{Service: "Bad_Name"}, {Service: ""}, {Namespace: "no/slash", Service: "web"}} {
		_, err := f.Registry().GetLeases(ctx, bad)
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("GetLeases(%v) = %v, want InvalidArgument", bad, err)
		}
	}
}

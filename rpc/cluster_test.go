package rpc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

func instance(svc, id string, port uint32) *rosterv1.Instance {
	return &rosterv1.Instance{Service: svc, Id: id, Address: "10.0.0.1", Port: port, Metadata: map[string]string{"v": id}}
}

func TestWriteOnFollowerReadLinearizableEverywhere(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	follower := c.Followers()[0]

	resp, err := follower.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 8080)})
	if err != nil {
		t.Fatalf("register through follower %s: %v", follower.ID, err)
	}
	if resp.Revision == 0 || resp.Header.GetNodeId() == "" {
		t.Fatalf("response lacks revision or header: %v", resp)
	}
	for _, nd := range c.Nodes {
		got, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
		if err != nil {
			t.Fatalf("linearizable get on %s: %v", nd.ID, err)
		}
		if len(got.Instances) != 1 || got.Instances[0].Port != 8080 || got.Instances[0].ModRevision != resp.Revision {
			t.Fatalf("%s sees %v, want the instance at revision %d", nd.ID, got.Instances, resp.Revision)
		}
		if got.Instances[0].Namespace != "default" || got.Instances[0].Weight != 100 || !got.Instances[0].Enabled {
			t.Fatalf("defaults not applied: %v", got.Instances[0])
		}
		if got.Header.Revision < resp.Revision {
			t.Fatalf("%s header revision %d < write revision %d", nd.ID, got.Header.Revision, resp.Revision)
		}
	}
	// Deregister through the other follower; min_revision read-your-writes.
	other := c.Followers()[1]
	dr, err := other.Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.Nodes {
		got, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
			Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE, MinRevision: dr.Revision}})
		if err != nil || len(got.Instances) != 0 {
			t.Fatalf("%s after deregister (min_revision %d): %v %v", nd.ID, dr.Revision, got.GetInstances(), err)
		}
	}
	_, err = other.Registry().Deregister(ctx, &rosterv1.DeregisterRequest{Service: "web", Id: "a"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("deregister of a missing instance: %v, want NotFound", err)
	}
}

func TestLeaderLossThenWritesContinue(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	old := c.WaitLeader()
	if _, err := old.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "before", 1)}); err != nil {
		t.Fatal(err)
	}
	c.Stop(old)
	leader := c.WaitLeader()
	if leader == old {
		t.Fatal("stopped node still leads")
	}
	for _, nd := range c.Running() {
		id := "after-" + nd.ID
		if _, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", id, 2)}); err != nil {
			t.Fatalf("register through %s after failover: %v", nd.ID, err)
		}
	}
	for _, nd := range c.Running() {
		got, err := nd.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Instances) != 3 {
			t.Fatalf("%s sees %d instances, want 3 (one before, two after failover)", nd.ID, len(got.Instances))
		}
	}
}

func TestPartitionedLeaderServesNoLinearizableRead(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	old := c.WaitLeader()
	if _, err := old.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 1)}); err != nil {
		t.Fatal(err)
	}
	c.Partition(old)
	leader := c.WaitLeader()
	// The majority moves on: a write the old leader cannot know about.
	if _, err := leader.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: instance("web", "a", 2)}); err != nil {
		t.Fatal(err)
	}
	// However often we ask, the old leader never answers linearizably with
	// its stale state (port 1).
	for i := 0; i < 20; i++ {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		got, err := old.Registry().GetService(rctx, &rosterv1.GetServiceRequest{Service: "web"})
		cancel()
		if err == nil {
			t.Fatalf("partitioned old leader answered a linearizable read: %v", got.Instances)
		}
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Fatalf("unexpected error code %v: %v", code, err)
		}
	}
	// A stale read is allowed, and says how far behind it is.
	got, err := old.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web",
		Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE}})
	if err != nil || len(got.Instances) != 1 || got.Instances[0].Port != 1 {
		t.Fatalf("stale read on the old leader: %v %v", got.GetInstances(), err)
	}
	c.Heal(old)
	c.Eventually("old leader catches up", 10*time.Second, func() bool {
		got, err := old.Registry().GetService(ctx, &rosterv1.GetServiceRequest{Service: "web"})
		return err == nil && len(got.Instances) == 1 && got.Instances[0].Port == 2
	})
}

func TestBadInputIsRejectedAndStoresNothing(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	follower := c.Followers()[0]
	huge := map[string]string{}
	for i := 0; i < 10; i++ {
		huge[fmt.Sprintf("k%d", i)] = strings.Repeat("x", 1<<20)
	}
	tests := []struct {
		name string
		inst *rosterv1.Instance
		want string
	}{
		{"uppercase service", &rosterv1.Instance{Service: "Bad_Name", Id: "a", Address: "10.0.0.1", Port: 80}, "lowercase DNS label"},
		{"port 0", &rosterv1.Instance{Service: "web", Id: "a", Address: "10.0.0.1", Port: 0}, "port 0"},
		{"port 70000", &rosterv1.Instance{Service: "web", Id: "a", Address: "10.0.0.1", Port: 70000}, "port 70000"},
		{"10 MB metadata", &rosterv1.Instance{Service: "web", Id: "a", Address: "10.0.0.1", Port: 80, Metadata: huge}, "bytes; the limit is 1048576"},
		{"missing id", &rosterv1.Instance{Service: "web", Address: "10.0.0.1", Port: 80}, "id is required"},
		{"bad address", &rosterv1.Instance{Service: "web", Id: "a", Address: "http://x y", Port: 80}, "neither an IP"},
		{"bad namespace", &rosterv1.Instance{Namespace: "Prod!", Service: "web", Id: "a", Address: "10.0.0.1", Port: 80}, "namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, nd := range []*testcluster.Node{c.WaitLeader(), follower} {
				_, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: tt.inst})
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
					t.Fatalf("on %s: got %v, want InvalidArgument mentioning %q", nd.ID, err, tt.want)
				}
			}
		})
	}
	for _, nd := range c.Nodes {
		got, err := nd.Registry().ListServices(ctx, &rosterv1.ListServicesRequest{})
		if err != nil || len(got.Services) != 0 {
			t.Fatalf("%s: something was stored: %v %v", nd.ID, got.GetServices(), err)
		}
		if rev := nd.Node.Store().Revision(); rev != 0 {
			t.Fatalf("%s: registry revision moved to %d", nd.ID, rev)
		}
	}
}

// TestMembersIncludeStatusAndLeaderChanges: Members with include_status
// carries every member's own status, and after the leader stops each
// survivor's Status lists the old leader, then the new one.
func TestMembersIncludeStatusAndLeaderChanges(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	old := c.WaitLeader()
	follower := c.Followers()[0]

	resp, err := follower.Cluster().Members(ctx, &rosterv1.MembersRequest{IncludeStatus: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Members) != 3 {
		t.Fatalf("members = %v", resp.Members)
	}
	for _, m := range resp.Members {
		if m.Status == nil || m.StatusError != "" {
			t.Fatalf("member %s: no status (%q)", m.NodeId, m.StatusError)
		}
		if m.Status.NodeId != m.NodeId || m.Status.LeaderId != old.ID || m.Status.Term == 0 {
			t.Fatalf("member %s reports %v", m.NodeId, m.Status)
		}
	}
	plain, err := follower.Cluster().Members(ctx, &rosterv1.MembersRequest{})
	if err != nil || plain.Members[0].Status != nil {
		t.Fatalf("members without include_status: %v %v", plain, err)
	}

	st, err := follower.Cluster().Status(ctx, &rosterv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.StartedAt == nil || len(st.LeaderChanges) == 0 || st.LeaderChanges[len(st.LeaderChanges)-1].LeaderId != old.ID {
		t.Fatalf("leader changes before failover: %v (started %v)", st.LeaderChanges, st.StartedAt)
	}

	c.Stop(old)
	leader := c.WaitLeader()
	c.Eventually("the follower to record the new leader", 10*time.Second, func() bool {
		st, err = follower.Cluster().Status(ctx, &rosterv1.StatusRequest{})
		if err != nil {
			return false
		}
		n := len(st.LeaderChanges)
		return n > 0 && st.LeaderChanges[n-1].LeaderId == leader.ID
	})
	seenOld := -1
	for i, lc := range st.LeaderChanges {
		if lc.LeaderId == old.ID {
			seenOld = i
		}
		if i > 0 && lc.At.AsTime().Before(st.LeaderChanges[i-1].At.AsTime()) {
			t.Fatalf("leader changes out of order: %v", st.LeaderChanges)
		}
	}
	last := st.LeaderChanges[len(st.LeaderChanges)-1]
	if seenOld < 0 || last.Term <= st.LeaderChanges[seenOld].Term {
		t.Fatalf("leader changes %v: want %s, then %s at a later term", st.LeaderChanges, old.ID, leader.ID)
	}

	// A stopped member is reported with the reason its status is missing.
	resp, err = leader.Cluster().Members(ctx, &rosterv1.MembersRequest{IncludeStatus: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range resp.Members {
		if m.NodeId == old.ID && (m.Status != nil || m.StatusError == "") {
			t.Fatalf("stopped member %s: status %v, error %q", m.NodeId, m.Status, m.StatusError)
		}
	}
}

// TestTransferLeadershipRefusesWhatCannotLead: a read replica, the leader
// itself and an unknown id are refused with a clear code, on the leader and
// through a follower alike, and the leader keeps its term.
func TestTransferLeadershipRefusesWhatCannotLead(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.Join("r1", false, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	leader := c.WaitLeader()
	term := leader.Node.Status().Term
	tests := []struct {
		id   string
		code codes.Code
		want string
	}{
		{"r1", codes.FailedPrecondition, `node "r1" is not a voter`},
		{leader.ID, codes.FailedPrecondition, "is already the leader"},
		{"nope", codes.NotFound, `"nope" is not in the cluster`},
	}
	for _, tt := range tests {
		for _, nd := range []*testcluster.Node{leader, c.Followers()[0]} {
			_, err := nd.Cluster().TransferLeadership(ctx, &rosterv1.TransferLeadershipRequest{NodeId: tt.id})
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("transfer to %s through %s: %v, want %v mentioning %q", tt.id, nd.ID, err, tt.code, tt.want)
			}
		}
	}
	if !leader.Node.IsLeader() || leader.Node.Status().Term != term {
		t.Fatalf("leadership moved: %s leads %v, term %d, was %d", leader.ID, leader.Node.IsLeader(), leader.Node.Status().Term, term)
	}
}

// TestTransferLeadershipReportsTheNewLeader: the answer names the voter
// that leads now, whether the target was named or Raft chose it.
func TestTransferLeadershipReportsTheNewLeader(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	target := c.Followers()[0]
	resp, err := c.Followers()[1].Cluster().TransferLeadership(ctx, &rosterv1.TransferLeadershipRequest{NodeId: target.ID})
	if err != nil || resp.LeaderId != target.ID {
		t.Fatalf("transfer to %s: %v, %v", target.ID, resp, err)
	}
	resp, err = target.Cluster().TransferLeadership(ctx, &rosterv1.TransferLeadershipRequest{})
	if err != nil || resp.LeaderId == "" || resp.LeaderId == target.ID {
		t.Fatalf("transfer away from %s: %v, %v", target.ID, resp, err)
	}
}

// TestMembershipChangesRaftRefusesAreFailedPrecondition: removing the only
// voter, or handing leadership away when no other voter exists, is refused
// as FailedPrecondition (not Internal, nor "outcome unknown" through a
// replica), and the member table keeps the node.
func TestMembershipChangesRaftRefusesAreFailedPrecondition(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	r1 := c.Join("r1", false, testcluster.Options{})
	c.WaitMembersKnown()
	ctx := testcluster.Ctx(t)
	for _, nd := range []*testcluster.Node{c.Nodes[0], r1} {
		_, err := nd.Cluster().RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: "n1"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "only voter") {
			t.Fatalf("remove the only voter through %s: %v, want FailedPrecondition", nd.ID, err)
		}
		_, err = nd.Cluster().TransferLeadership(ctx, &rosterv1.TransferLeadershipRequest{})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "no other voter") {
			t.Fatalf("transfer with no other voter through %s: %v, want FailedPrecondition", nd.ID, err)
		}
	}
	if c.Nodes[0].Node.Store().View().Member("n1") == nil {
		t.Fatal("n1's member record is gone")
	}
}

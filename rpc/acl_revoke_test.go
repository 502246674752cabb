package rpc_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// newToken creates a token through nd and returns its secret and accessor id.
func newToken(t *testing.T, nd *testcluster.Node, rules ...string) (secret, accessor string) {
	t.Helper()
	resp, err := rosterv1.NewACLClient(nd.Conn).CreateToken(withToken(testcluster.Ctx(t), bootSecret),
		&rosterv1.CreateTokenRequest{Description: "test", Rules: rules})
	if err != nil {
		t.Fatalf("create token %v: %v", rules, err)
	}
	return resp.Token.SecretId, resp.Token.AccessorId
}

// deleteToken deletes a token through the leader.
func deleteToken(t *testing.T, c *testcluster.Cluster, accessor string) {
	t.Helper()
	if err := deleteTokenErr(testcluster.Ctx(t), c.WaitLeader(), accessor); err != nil {
		t.Fatal(err)
	}
}

func deleteTokenErr(ctx context.Context, leader *testcluster.Node, accessor string) error {
	_, err := rosterv1.NewACLClient(leader.Conn).DeleteToken(withToken(ctx, bootSecret),
		&rosterv1.DeleteTokenRequest{AccessorId: accessor})
	return err
}

// wantTokenGone fails unless err ended a call because its token was
// deleted while it lasted: PermissionDenied, ACL_TOKEN_NOT_FOUND, saying so.
func wantTokenGone(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied || rpc.Reason(err) != rpc.ReasonACLTokenNotFound {
		t.Fatalf("%s: ended with %v, want PermissionDenied with reason %s", what, err, rpc.ReasonACLTokenNotFound)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "ACL token not found") || !strings.Contains(msg, "deleted") {
		t.Fatalf("%s: message %q does not say the token was deleted", what, msg)
	}
}

// recvErr reads a stream until it fails and returns why.
func recvErr[T any](recv func() (T, error)) error {
	for {
		if _, err := recv(); err != nil {
			return err
		}
	}
}

// openWebWatch opens a Watch of service web on nd under secret and reads its
// first message, the reset.
func openWebWatch(t *testing.T, ctx context.Context, nd *testcluster.Node, secret string) rosterv1.Registry_WatchClient {
	t.Helper()
	w, err := nd.Registry().Watch(withToken(ctx, secret), &rosterv1.WatchRequest{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || !m.Reset_ {
		t.Fatalf("%s: first watch message %v, %v: want the reset", nd.ID, m, err)
	}
	return w
}

// TestACLDeletedTokenEndsWatches: a Watch on a follower and one on the
// leader end once their token is deleted, each on its own node's state; a
// watch on the same node under another token goes on and sees the next
// change.
func TestACLDeletedTokenEndsWatches(t *testing.T) {
	c := aclCluster(t, nil)
	leader := c.WaitLeader()
	ctx := testcluster.Ctx(t)
	if err := register(withToken(ctx, bootSecret), leader, "web", "w1"); err != nil {
		t.Fatal(err)
	}
	gone, goneID := newToken(t, leader, "service:web:read")
	kept, _ := newToken(t, leader, "service:web:read")
	waitTokens(t, c, gone, kept)
	follower := c.Followers()[0]
	onLeader := openWebWatch(t, ctx, leader, gone)
	onFollower := openWebWatch(t, ctx, follower, gone)
	other := openWebWatch(t, ctx, follower, kept)

	deleteToken(t, c, goneID)
	wantTokenGone(t, "watch on the follower", recvErr(onFollower.Recv))
	wantTokenGone(t, "watch on the leader", recvErr(onLeader.Recv))

	// The follower has looked at its streams since the deletion (it ended
	// one): the other token's watch is still served.
	if err := register(withToken(ctx, bootSecret), leader, "web", "w2"); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := other.Recv()
		if err != nil {
			t.Fatalf("the watch under another token: %v", err)
		}
		if len(m.Events) > 0 && m.Events[0].Instance.GetId() == "w2" {
			break
		}
	}
}

// TestACLDeletedTokenEndsWatchMany: a WatchMany stream ends as a whole
// once its token is deleted, not watch by watch.
func TestACLDeletedTokenEndsWatchMany(t *testing.T) {
	c := aclCluster(t, nil)
	leader := c.WaitLeader()
	ctx := testcluster.Ctx(t)
	if err := register(withToken(ctx, bootSecret), leader, "web", "w1"); err != nil {
		t.Fatal(err)
	}
	gone, goneID := newToken(t, leader, "service:web:read")
	waitTokens(t, c, gone)
	many, err := c.Followers()[0].Registry().WatchMany(withToken(ctx, gone))
	if err != nil {
		t.Fatal(err)
	}
	for id, req := range map[uint64]*rosterv1.WatchRequest{1: {Service: "web"}, 2: {Namespace: "default"}} {
		if err := many.Send(createWatch(id, req)); err != nil {
			t.Fatal(err)
		}
	}
	reset := map[uint64]bool{}
	for len(reset) < 2 {
		m, err := many.Recv()
		if err != nil || m.Ended != nil {
			t.Fatalf("before the deletion: %v, %v", m, err)
		}
		for _, id := range m.WatchIds {
			reset[id] = true
		}
	}

	deleteToken(t, c, goneID)
	for {
		m, err := many.Recv()
		if err != nil {
			wantTokenGone(t, "WatchMany stream", err)
			break
		}
		if m.Ended != nil {
			t.Fatalf("watch %v ended alone (%v): the whole stream should end", m.WatchIds, m.Ended)
		}
	}
}

// TestACLDeletedTokenEndsKeepAlive: KeepAlive streams on the leader and
// on a follower end once their token is deleted; one under another token
// on the follower goes on renewing.
func TestACLDeletedTokenEndsKeepAlive(t *testing.T) {
	c := aclCluster(t, nil)
	leader := c.WaitLeader()
	ctx := testcluster.Ctx(t)
	if _, err := leader.Registry().Register(withToken(ctx, bootSecret), &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
		Service: "web", Id: "w1", Address: "10.0.0.1", Port: 80, Ttl: durationpb.New(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	gone, goneID := newToken(t, leader, "service:web:write")
	kept, _ := newToken(t, leader, "service:web:write")
	waitTokens(t, c, gone, kept)
	follower := c.Followers()[0]
	renew := func(st rosterv1.Registry_KeepAliveClient) (*rosterv1.HeartbeatResponse, error) {
		if err := st.Send(&rosterv1.HeartbeatRequest{Service: "web", Id: "w1"}); err != nil {
			return nil, err
		}
		return st.Recv()
	}
	open := func(nd *testcluster.Node, secret string) rosterv1.Registry_KeepAliveClient {
		st, err := nd.Registry().KeepAlive(withToken(ctx, secret))
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := renew(st); err != nil || resp.Code != 0 {
			t.Fatalf("%s: renewal before the deletion: %v, %v", nd.ID, resp, err)
		}
		return st
	}
	onLeader, onFollower, other := open(leader, gone), open(follower, gone), open(follower, kept)

	deleteToken(t, c, goneID)
	wantTokenGone(t, "keepalive on the follower", recvErr(onFollower.Recv))
	wantTokenGone(t, "keepalive on the leader", recvErr(onLeader.Recv))
	if resp, err := renew(other); err != nil || resp.Code != 0 {
		t.Fatalf("renewal under another token after the deletion: %v, %v", resp, err)
	}
}

// TestACLDeletedTokenEndsBlockingRead: a blocking GetService, which may
// wait ten minutes and then answer, ends once its token is deleted.
func TestACLDeletedTokenEndsBlockingRead(t *testing.T) {
	c := aclCluster(t, nil)
	leader := c.WaitLeader()
	ctx := testcluster.Ctx(t)
	if err := register(withToken(ctx, bootSecret), leader, "web", "w1"); err != nil {
		t.Fatal(err)
	}
	gone, goneID := newToken(t, leader, "service:web:read")
	waitTokens(t, c, gone)
	follower := c.Followers()[0]
	resp, err := follower.Registry().GetService(withToken(ctx, gone), &rosterv1.GetServiceRequest{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	var once sync.Once
	rpc.SetReadHooks(follower.Server, rpc.ReadHooks{Waiting: func(uint64) { once.Do(func() { close(waiting) }) }})
	ended := make(chan error, 1)
	go func() {
		_, err := follower.Registry().GetService(withToken(ctx, gone), &rosterv1.GetServiceRequest{Service: "web",
			WaitRevision: resp.ServiceRevision, WaitTimeout: durationpb.New(rpc.MaxWaitTimeout)})
		ended <- err
	}()
	select {
	case <-waiting:
	case <-ctx.Done():
		t.Fatal("the blocking read never waited")
	}
	deleteToken(t, c, goneID)
	wantTokenGone(t, "blocking read", <-ended)
}

// TestACLTokenDeletedAsAStreamOpens: a token deleted after a stream's
// token was resolved, and looked for by the node before the stream was
// added to the ones it ends, still ends the stream (here refuses it).
func TestACLTokenDeletedAsAStreamOpens(t *testing.T) {
	c := aclCluster(t, nil)
	leader := c.WaitLeader()
	ctx := testcluster.Ctx(t)
	gone, goneID := newToken(t, leader, "service:web:write")
	waitTokens(t, c, gone)
	nd := c.Followers()[0]

	var mu sync.Mutex
	var passedAt uint64
	passed := make(chan struct{}, 1)
	var once sync.Once
	rpc.SetTokenHooks(nd.Server, rpc.TokenHooks{
		Passed: func(applied uint64) {
			mu.Lock()
			passedAt = max(passedAt, applied)
			mu.Unlock()
			select {
			case passed <- struct{}{}:
			default:
			}
		},
		BeforeAdd: func() {
			once.Do(func() {
				// On a handler's goroutine: errors, not t.Fatal.
				if err := deleteTokenErr(ctx, leader, goneID); err != nil {
					t.Errorf("delete token: %v", err)
					return
				}
				// Wait until the node has applied the deletion and looked
				// at its streams since.
				var at uint64
				if !testcluster.Within(10*time.Second, func() bool {
					v := nd.Node.Store().View()
					at = v.Applied()
					return v.TokenBySecret(acl.HashSecret(gone)) == nil
				}) {
					t.Error("the deletion never reached the node")
					return
				}
				for {
					mu.Lock()
					done := passedAt >= at
					mu.Unlock()
					if done {
						return
					}
					select {
					case <-passed:
					case <-ctx.Done():
						t.Error("the node never looked at its streams after the deletion")
						return
					}
				}
			})
		},
	})
	// KeepAlive: a Watch resolves its token once more as it starts, a
	// KeepAlive stream only in the interceptor.
	st, err := nd.Registry().KeepAlive(withToken(ctx, gone))
	if err != nil {
		t.Fatal(err)
	}
	wantTokenGone(t, "keepalive opened as its token was deleted", recvErr(st.Recv))
}

// TestACLRestoreEndsStreamsOfReplacedTokens: restoring a snapshot taken
// before a token was made replaces the tokens, and ends the streams under
// the token the snapshot lacks; one under the management token, which the
// snapshot holds as it was, goes on, reset to the restored state.
func TestACLRestoreEndsStreamsOfReplacedTokens(t *testing.T) {
	c := aclCluster(t, nil)
	leader := c.WaitLeader()
	ctx := testcluster.Ctx(t)
	mgmt := withToken(ctx, bootSecret)
	if err := register(mgmt, leader, "web", "w1"); err != nil {
		t.Fatal(err)
	}
	file := saveSnapshot(t, mgmt, leader)
	gone, _ := newToken(t, leader, "service:web:read")
	waitTokens(t, c, gone)
	follower := c.Followers()[0]
	lost := openWebWatch(t, ctx, follower, gone)
	kept := openWebWatch(t, ctx, follower, bootSecret)

	resp, err := restoreSnapshot(mgmt, leader, file)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	wantTokenGone(t, "watch under a token the snapshot lacks", recvErr(lost.Recv))
	for {
		m, err := kept.Recv()
		if err != nil {
			t.Fatalf("the watch under the management token: %v", err)
		}
		if m.Reset_ && m.Revision >= resp.Revision {
			break
		}
	}
}

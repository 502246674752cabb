package rpc_test

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/internal/certs"
	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/internal/tlsconfig"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// TestACLStatusNamesOnlyReadableServices: Status is open, but with ACLs
// and TLS the services it names (per-service minimum lease counts, held
// services) are only those the caller's token may read; a server, proven
// by its certificate, sees them all (followers learn the held services
// from the leader's Status).
func TestACLStatusNamesOnlyReadableServices(t *testing.T) {
	f := newTLSFiles(t)
	peerConf, err := tlsconfig.Client(f.ca, f.serverCert, f.serverKey, certs.ServerName("dc1"))
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.New(t, 3, testcluster.Options{
		Server: func(o *rpc.Options) {
			o.ACL = rpc.ACLOptions{Enabled: true, BootstrapSecret: bootSecret}
			o.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(peerConf))}
			o.VerifyPeerServer = f.node.VerifyServer
		},
		GRPCOptions: func(string) []grpc.ServerOption {
			return []grpc.ServerOption{grpc.Creds(rpc.ServerCredentials(f.node.API()))}
		},
	})
	leader := c.WaitLeader()
	c.Eventually("bootstrap token on the leader", 10*time.Second, func() bool {
		return leader.Node.Store().View().TokenBySecret(acl.HashSecret(bootSecret)) != nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	clientConn := f.dial(t, leader.Addr, f.clientCert, f.clientKey, "")
	asClient := rosterv1.NewClusterClient(clientConn)
	asServer := rosterv1.NewClusterClient(f.dial(t, leader.Addr, f.serverCert, f.serverKey, certs.ServerName("dc1")))

	if _, err := asClient.SetSelfPreservation(withToken(ctx, bootSecret), &rosterv1.SetSelfPreservationRequest{
		ServiceMinLeases: map[string]uint32{"default/web": 2, "payments/pay": 3}}); err != nil {
		t.Fatal(err)
	}
	created, err := rosterv1.NewACLClient(clientConn).CreateToken(withToken(ctx, bootSecret),
		&rosterv1.CreateTokenRequest{Description: "web reader", Rules: []string{"service:web:read"}})
	if err != nil {
		t.Fatal(err)
	}
	webReader := created.Token.SecretId

	for _, tc := range []struct {
		name       string
		client     rosterv1.ClusterClient
		ctx        context.Context
		want       []string
		unreadable uint32
	}{
		{"anonymous", asClient, ctx, nil, 2},
		{"unknown token", asClient, withToken(ctx, "no-such-secret"), nil, 2},
		{"service:web:read", asClient, withToken(ctx, webReader), []string{"default/web"}, 1},
		{"management", asClient, withToken(ctx, bootSecret), []string{"default/web", "payments/pay"}, 0},
		{"server certificate, no token", asServer, ctx, []string{"default/web", "payments/pay"}, 0},
	} {
		st, err := tc.client.Status(tc.ctx, &rosterv1.StatusRequest{})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := slices.Sorted(maps.Keys(st.SelfPreservationServiceMinLeases)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Status names %v, want %v", tc.name, got, tc.want)
		}
		if got := st.SelfPreservationUnreadableServiceMinLeases; got != tc.unreadable {
			t.Errorf("%s: Status counts %d unreadable minimums, want %d", tc.name, got, tc.unreadable)
		}
		if st.NodeId != leader.ID || st.Instances != 0 {
			t.Errorf("%s: node %q, %d instances", tc.name, st.NodeId, st.Instances)
		}
	}
}

package main

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/roster-registry/roster/internal/testcluster"
)

// TestShutdownPhasesShareOneDeadline: with an HTTP call and a gRPC call that
// never finish on their own, shutdown ends both once its one deadline has
// passed; the HTTP phase does not take a budget of its own that the gRPC
// phase then takes again.
func TestShutdownPhasesShareOneDeadline(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.WaitLeader()
	release := make(chan struct{})
	defer close(release)

	httpIn := make(chan struct{}, 1)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpIn <- struct{}{}
		<-release
	})}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(hl) }()

	grpcIn := make(chan struct{}, 1)
	g := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		grpcIn <- struct{}{}
		<-stream.Context().Done()
		return stream.Context().Err()
	}))
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(gl) }()
	cc, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	go func() {
		if resp, err := http.Get("http://" + hl.Addr().String() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	go func() { _ = cc.Invoke(context.Background(), "/test.Hang/Forever", &emptypb.Empty{}, &emptypb.Empty{}) }()
	<-httpIn
	<-grpcIn

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- shutdownWithin(ctx, hclog.NewNullLogger(), nd.Node, nd.Server, g, &frontEnds{http: hs, lis: hl})
	}()
	cancel() // the deadline passes
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // catches hangs only
		t.Fatal("shutdown still running 30s after its deadline passed")
	}
}

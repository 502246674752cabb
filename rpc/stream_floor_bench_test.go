package rpc_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// BenchmarkGRPCStreamFloor is the floor under a watch fan-out: what
// gRPC itself takes to deliver one small message on each of N server
// streams (grpc-go's health Watch, server and client in this process, two
// connections), with nothing of Roster's on the path. ns/message is the
// time until every stream has the message, over N. Compare it with
// BenchmarkWatchDelivery's time a write over its watchers: when the two
// are close, the fan-out costs its messages, and only fewer messages
// (several watches on one stream, sent once for all of them) make it
// cheaper.
func BenchmarkGRPCStreamFloor(b *testing.B) {
	for _, streams := range []int{1000, 100, 25} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) { benchStreamFloor(b, streams) })
	}
}

func benchStreamFloor(b *testing.B, streams int) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	hs.SetServingStatus("x", healthpb.HealthCheckResponse_SERVING)
	var conns []*grpc.ClientConn
	for range 2 {
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		conns = append(conns, cc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got, ready, all sync.WaitGroup
	for i := range streams {
		ready.Add(1)
		all.Add(1)
		go func() {
			defer all.Done()
			st, err := healthpb.NewHealthClient(conns[i%len(conns)]).Watch(ctx, &healthpb.HealthCheckRequest{Service: "x"})
			if err == nil {
				_, err = st.Recv() // the current status
			}
			ready.Done()
			if err != nil {
				b.Error(err)
				return
			}
			for {
				if _, err := st.Recv(); err != nil {
					return
				}
				got.Done()
			}
		}()
	}
	ready.Wait()
	if b.Failed() {
		return
	}
	b.ResetTimer()
	start := time.Now()
	for n := range b.N {
		got.Add(streams)
		status := healthpb.HealthCheckResponse_NOT_SERVING
		if n%2 == 1 {
			status = healthpb.HealthCheckResponse_SERVING
		}
		hs.SetServingStatus("x", status)
		got.Wait()
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*streams), "ns/message")
	b.StopTimer()
	cancel()
	all.Wait()
}

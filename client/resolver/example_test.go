package resolver_test

import (
	"context"
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/client/balancer"
	"github.com/roster-registry/roster/client/resolver"
)

// A channel to the healthy instances of the service echo, split by weight.
func ExampleNewBuilder() {
	ctx := context.Background()
	c, err := client.New(ctx, []string{"127.0.0.1:7420", "127.0.0.1:7430", "127.0.0.1:7440"},
		client.WithCacheDir("/var/cache/myapp/roster"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	conn, err := grpc.NewClient("roster:///echo",
		grpc.WithResolvers(resolver.NewBuilder(c)),
		grpc.WithDefaultServiceConfig(balancer.ServiceConfig(balancer.WeightedRoundRobin, "")),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	// Use conn with any generated client.
}

// A target naming its registry nodes needs no setup beyond importing the
// package.
func Example_target() {
	conn, err := grpc.NewClient("roster://127.0.0.1:7420,127.0.0.1:7430/payments/api",
		grpc.WithDefaultServiceConfig(balancer.ServiceConfig(balancer.P2C, "eu-1a")),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// Registry nodes with IPv6 addresses, more than one, go in the target
// without the slashes: net/url, which gRPC parses targets with, refuses
// them as an authority.
func Example_targetIPv6() {
	conn, err := grpc.NewClient("roster:[2001:db8::1]:7420,[2001:db8::2]:7420/payments/api",
		grpc.WithDefaultServiceConfig(balancer.ServiceConfig(balancer.P2C, "")),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// A service registers itself, stays registered while it runs (its lease is
// kept alive, and it is registered again if the cluster loses it), and
// deregisters on SIGINT or SIGTERM.
func ExampleClient_RegisterInstance() {
	ctx := context.Background()
	c, err := client.New(ctx, []string{"127.0.0.1:7420", "127.0.0.1:7430"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	reg, err := c.RegisterInstance(ctx,
		&rosterv1.Instance{Service: "echo", Id: "echo-1", Address: "10.0.0.5", Port: 9001},
		client.WithTTL(10*time.Second), client.WithWeight(200), client.WithZone("eu-1a"))
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for ev := range reg.Events() {
			log.Printf("%s: %s", ev.Instance, ev.Kind)
		}
	}()
	// ... serve ...
	if err := <-client.DeregisterOnSignal(ctx, 5*time.Second, reg); err != nil {
		log.Print(err)
	}
}

// Instances answers from a local copy kept current by a watch, and keeps
// answering with the last known list while the cluster is unreachable.
func ExampleClient_CachedService() {
	ctx := context.Background()
	c, err := client.New(ctx, []string{"127.0.0.1:7420"}, client.WithCacheDir("/var/cache/myapp/roster"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, err := c.CachedService(ctx, "echo")
	if err != nil {
		log.Fatal(err)
	}
	if s.Stale {
		log.Printf("registry unreachable; serving the list from %s ago", s.Age().Round(time.Second))
	}
	for _, inst := range s.Instances {
		fmt.Printf("%s:%d weight %d\n", inst.GetAddress(), inst.GetPort(), inst.GetWeight())
	}
}

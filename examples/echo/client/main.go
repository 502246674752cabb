// Command client is the echo example's client: it calls the echo service
// through a roster:/// channel, balanced by the chosen strategy, and prints
// on its last line how many calls each server answered:
//
//	{"counts": {"127.0.0.1:9001": 167, ...}}
//
// Usage:
//
//	go run ./examples/echo/client --registry 127.0.0.1:7420 --balancer roster_weighted_round_robin --calls 600
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/client/balancer"
	"github.com/roster-registry/roster/client/resolver"
	"github.com/roster-registry/roster/examples/echo/echo"
)

func main() {
	registry := flag.String("registry", "127.0.0.1:7420", "Roster nodes, HOST:PORT[,HOST:PORT...]")
	policyName := flag.String("balancer", string(balancer.WeightedRoundRobin), "balancer: "+policyNames())
	calls := flag.Int("calls", 600, "number of calls")
	service := flag.String("service", "echo", "service to call")
	zone := flag.String("zone", "", "prefer instances in this zone")
	interval := flag.Duration("interval", 0, "pause between calls")
	report := flag.Duration("report", 0, "print the counts so far to stderr this often (0: never)")
	registryTLS := echo.RegistryTLSFlags()
	flag.Parse()

	log := hclog.New(&hclog.LoggerOptions{Name: "echo-client", Level: hclog.Warn})
	policy, err := balancer.ParsePolicy(*policyName)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := run(log, *registry, registryTLS, policy, *service, *zone, *calls, *interval, *report); err != nil {
		log.Error("echo client failed", "error", err)
		os.Exit(1)
	}
}

func policyNames() string {
	var names []string
	for _, p := range balancer.Policies {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}

func run(log hclog.Logger, registry string, registryTLS *echo.RegistryTLS, policy balancer.Policy, service, zone string, calls int, interval, report time.Duration) error {
	addrs, err := client.ParseAddrs(registry)
	if err != nil {
		return fmt.Errorf("--registry: %w", err)
	}
	ctx := context.Background()
	opts := []client.Option{client.WithLogger(log)}
	tlsConf, err := registryTLS.Config()
	if err != nil {
		return err
	}
	if tlsConf != nil {
		opts = append(opts, client.WithTLS(tlsConf))
	}
	if tok := registryTLS.Token(); tok != "" {
		opts = append(opts, client.WithToken(tok))
	}
	c, err := client.New(ctx, addrs, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	conn, err := grpc.NewClient("roster:///"+service,
		grpc.WithResolvers(resolver.NewBuilder(c)),
		grpc.WithDefaultServiceConfig(balancer.ServiceConfig(policy, zone)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()

	counts := map[string]int{}
	failed := 0
	lastReport := time.Now()
	for i := range calls {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		// Wait for a first instance rather than fail while the channel
		// connects.
		from, err := echo.Call(cctx, conn, fmt.Sprint(i), grpc.WaitForReady(true))
		cancel()
		if err != nil {
			failed++
			log.Warn("call failed", "call", i, "error", err)
		} else {
			counts[from]++
		}
		if report > 0 && time.Since(lastReport) >= report {
			lastReport = time.Now()
			b, _ := json.Marshal(counts)
			fmt.Fprintf(os.Stderr, "after %d calls: %s errors=%d\n", i+1, b, failed)
		}
		if interval > 0 {
			time.Sleep(interval)
		}
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "%d of %d calls failed\n", failed, calls)
	}
	b, err := json.Marshal(map[string]map[string]int{"counts": counts})
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}

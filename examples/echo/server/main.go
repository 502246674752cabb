// Command server is the echo example's server: a gRPC echo service that
// registers itself in Roster with a TTL lease kept alive by the client,
// and deregisters on SIGINT or SIGTERM before it stops.
//
//	go run ./examples/echo/server --registry 127.0.0.1:7420,127.0.0.1:7430 --listen 127.0.0.1:9001 --weight 100
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/examples/echo/echo"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

func main() {
	registry := flag.String("registry", "127.0.0.1:7420", "Roster nodes, HOST:PORT[,HOST:PORT...]")
	listen := flag.String("listen", "127.0.0.1:9001", "address to serve echo on, HOST:PORT; registered as it is")
	weight := flag.Uint("weight", 100, "weight of this instance")
	service := flag.String("service", "echo", "service name to register under")
	id := flag.String("id", "", "instance id (default: the listen address)")
	zone := flag.String("zone", "", "zone of this instance")
	ttl := flag.Duration("ttl", 10*time.Second, "TTL of the instance's lease")
	registryTLS := echo.RegistryTLSFlags()
	flag.Parse()

	log := hclog.New(&hclog.LoggerOptions{Name: "echo-server", Level: hclog.Info})
	if err := run(log, *registry, registryTLS, *listen, uint32(*weight), *service, *id, *zone, *ttl); err != nil {
		log.Error("echo server failed", "error", err)
		os.Exit(1)
	}
}

func run(log hclog.Logger, registry string, registryTLS *echo.RegistryTLS, listen string, weight uint32, service, id, zone string, ttl time.Duration) error {
	addrs, err := client.ParseAddrs(registry)
	if err != nil {
		return fmt.Errorf("--registry: %w", err)
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return fmt.Errorf("--listen %q: want HOST:PORT with a host clients can reach", listen)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("--listen %q: bad port", listen)
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	echo.Register(srv, &echo.Server{Name: listen})
	go func() { _ = srv.Serve(lis) }()
	defer srv.GracefulStop()

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
	if id == "" {
		id = listen
	}
	inst := &rosterv1.Instance{Service: service, Id: id, Address: host, Port: uint32(port)}
	regCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	reg, err := c.RegisterInstance(regCtx, inst, client.WithTTL(ttl), client.WithWeight(weight), client.WithZone(zone))
	cancel()
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	log.Info("serving and registered", "service", service, "id", id, "listen", listen, "weight", weight, "ttl", ttl, "revision", reg.Revision())
	go func() {
		for ev := range reg.Events() {
			log.Warn("registration event", "event", ev.Kind.String(), "revision", ev.Revision, "error", ev.Err)
		}
	}()

	if err := <-client.DeregisterOnSignal(ctx, 5*time.Second, reg); err != nil {
		return err
	}
	log.Info("deregistered; stopping", "id", id)
	return nil
}

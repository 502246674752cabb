// Package resolver registers the gRPC name resolver for the scheme
// "roster": a channel to roster:///echo reaches the healthy instances of
// the service echo, updated live from the registry.
//
// Targets:
//
//   - roster:///SERVICE and roster:///NAMESPACE/SERVICE use the registry of
//     the *client.Client given to NewBuilder, passed to the channel with
//     grpc.WithResolvers(resolver.NewBuilder(c)).
//   - roster://HOST:PORT,HOST:PORT/SERVICE (or .../NAMESPACE/SERVICE)
//     needs no setup: importing this package registers the scheme, and each
//     channel gets its own client of those registry nodes.
//
// The list comes from the client's discovery cache, so it keeps the last
// known instances while the registry is unreachable and holds back an update
// that would leave none (client.WithEmptyListGrace). Each address carries
// the instance's id, weight, zone, tags and metadata as a *balancer.Info in
// its attributes, read by the balancers of package client/balancer. Pick one
// of those in the service config; gRPC's default, pick_first, sends every
// call to one instance.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/client/balancer"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// Scheme is the resolver's URI scheme.
const Scheme = "roster"

// ErrNoRegistry is returned for a target that names no registry nodes when
// the builder has no client.
var ErrNoRegistry = errors.New("roster:///SERVICE needs a builder from resolver.NewBuilder(client) passed with grpc.WithResolvers, or registry addresses in the target (roster://HOST:PORT/SERVICE)")

func init() {
	grpcresolver.Register(&Builder{})
}

// Builder builds roster resolvers. The zero Builder, registered globally,
// serves targets that name their registry nodes.
type Builder struct {
	c    *client.Client
	opts []client.Option
}

// NewBuilder returns a builder that resolves roster:///SERVICE targets
// through c. Targets naming registry nodes still get their own client.
func NewBuilder(c *client.Client) *Builder {
	return &Builder{c: c}
}

// NewBuilderWithOptions returns a builder whose own clients, made for
// targets naming registry nodes, use opts (credentials, a cache dir).
func NewBuilderWithOptions(opts ...client.Option) *Builder {
	return &Builder{opts: opts}
}

// Scheme returns "roster".
func (b *Builder) Scheme() string { return Scheme }

// ParseTarget splits a roster target's path into namespace and service; the
// namespace is empty when the path names only the service.
func ParseTarget(path string) (namespace, service string, err error) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] != "":
		return "", parts[0], nil
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return parts[0], parts[1], nil
	}
	return "", "", fmt.Errorf("roster target path %q: want /SERVICE or /NAMESPACE/SERVICE", path)
}

// Build starts resolving target.
func (b *Builder) Build(target grpcresolver.Target, cc grpcresolver.ClientConn, _ grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	ns, svc, err := ParseTarget(target.URL.Path)
	if err != nil {
		return nil, err
	}
	c, owned := b.c, false
	if host := target.URL.Host; host != "" {
		c, err = client.New(context.Background(), strings.Split(host, ","), b.opts...)
		if err != nil {
			return nil, err
		}
		owned = true
	}
	if c == nil {
		return nil, ErrNoRegistry
	}
	var opts []client.DiscoveryOption
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	sub, err := c.Subscribe(svc, opts...)
	if err != nil {
		if owned {
			_ = c.Close()
		}
		return nil, err
	}
	r := &rosterResolver{cc: cc, sub: sub, stop: make(chan struct{})}
	if owned {
		r.owned = c
	}
	r.wg.Add(1)
	go r.run()
	return r, nil
}

type rosterResolver struct {
	cc    grpcresolver.ClientConn
	sub   *client.Subscription
	owned *client.Client
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

// run pushes every list the subscription signals. The cache only signals
// lists it has from the registry or its cache dir, and never an empty one
// merely because the registry is unreachable, so neither is pushed here.
func (r *rosterResolver) run() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.sub.Changed():
		}
		s := r.sub.Service()
		if err := r.sub.Err(); err != nil && len(s.Instances) == 0 {
			// The watch cannot work (an invalid service name, say):
			// calls fail with why instead of waiting.
			r.cc.ReportError(err)
			continue
		}
		addrs := make([]grpcresolver.Address, 0, len(s.Instances))
		for _, inst := range s.Instances {
			addrs = append(addrs, Address(inst))
		}
		if err := r.cc.UpdateState(grpcresolver.State{Addresses: addrs}); err != nil && len(addrs) > 0 {
			// The balancer rejected the list; it asks again with
			// ResolveNow, and the next change is pushed anyway.
			r.cc.ReportError(err)
		}
	}
}

// Address returns the gRPC address of inst, carrying its balancer.Info.
func Address(inst *rosterv1.Instance) grpcresolver.Address {
	addr := grpcresolver.Address{Addr: net.JoinHostPort(inst.GetAddress(), strconv.Itoa(int(inst.GetPort())))}
	return balancer.SetInfo(addr, &balancer.Info{
		ID: inst.GetId(), Weight: inst.GetWeight(), Zone: inst.GetZone(),
		Tags: inst.GetTags(), Metadata: inst.GetMetadata(),
	})
}

// ResolveNow does nothing: the list is pushed as soon as it changes.
func (r *rosterResolver) ResolveNow(grpcresolver.ResolveNowOptions) {}

// Close stops the resolver.
func (r *rosterResolver) Close() {
	r.once.Do(func() {
		close(r.stop)
		r.wg.Wait()
		r.sub.Close()
		if r.owned != nil {
			_ = r.owned.Close()
		}
	})
}

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
//   - roster:HOST:PORT,HOST:PORT/SERVICE, without the slashes, is the same
//     for any list, IPv6 hosts included: roster:[::1]:7420,[::1]:7421/SERVICE.
//     gRPC parses targets with net/url, which takes an authority with an
//     IPv6 host only when that host is the only one: roster://[::1]:7420/SERVICE
//     works, but roster://[::1]:7420,[::1]:7421/SERVICE is refused before any
//     resolver sees it (gRPC then hands the whole target to DNS, which fails
//     with "too many colons"). Without the slashes the list is not an
//     authority, as in gRPC's own ipv6: scheme, and net/url leaves it alone.
//
// The registry addresses of a target are read as client.ParseAddrs reads
// them: HOST:PORT each, an IPv6 host in brackets.
//
// The list comes from the client's discovery cache, so it keeps the last
// known instances while the registry is unreachable and holds back an update
// that would leave none (client.WithEmptyListGrace). Each address carries
// the instance's id, weight, zone, tags and metadata as a *balancer.Info in
// its balancer attributes, read by the balancers of package client/balancer
// (so a change to them keeps the instance's connection). Pick one
// of those in the service config; gRPC's default, pick_first, sends every
// call to one instance.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
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

// OverrideAuthority gives a channel its target's path as authority
// (SERVICE, or NAMESPACE%2FSERVICE), as gRPC does by default for
// roster:///SERVICE and roster://HOST:PORT/SERVICE; for the form without
// slashes, roster:HOST:PORT/SERVICE, gRPC's default would take in the
// registry addresses.
func (b *Builder) OverrideAuthority(target grpcresolver.Target) string {
	_, path, err := splitTarget(&target.URL)
	if err != nil {
		return target.Endpoint()
	}
	return encodeAuthority(strings.TrimPrefix(path, "/"))
}

// encodeAuthority escapes what RFC 3986 does not allow in an authority, as
// gRPC escapes a target's endpoint for its default authority.
func encodeAuthority(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-_.~!$&'()*+,;=:[]@", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

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

// splitTarget returns the registry address list and the path of a target:
// roster://LIST/PATH, or roster:LIST/PATH for a list net/url would not take
// as an authority (several IPv6 hosts).
func splitTarget(u *url.URL) (list, path string, err error) {
	if u.Opaque == "" {
		return u.Host, u.Path, nil
	}
	list, path, ok := strings.Cut(u.Opaque, "/")
	if !ok {
		return "", "", fmt.Errorf("roster target %q: want roster:HOST:PORT,HOST:PORT/SERVICE or roster:///SERVICE", u)
	}
	// net/url leaves an opaque part escaped (a zone: [fe80::1%25eth0]),
	// where it unescapes an authority and a path.
	if list, err = url.PathUnescape(list); err == nil {
		path, err = url.PathUnescape(path)
	}
	if err != nil {
		return "", "", fmt.Errorf("roster target %q: %w", u, err)
	}
	return list, "/" + path, nil
}

// readTarget returns the registry addresses a target names (none for
// roster:///...) and the namespace and service it resolves.
func readTarget(u *url.URL) (addrs []string, namespace, service string, err error) {
	list, path, err := splitTarget(u)
	if err != nil {
		return nil, "", "", err
	}
	if namespace, service, err = ParseTarget(path); err != nil {
		return nil, "", "", err
	}
	if list != "" {
		if addrs, err = client.ParseAddrs(list); err != nil {
			return nil, "", "", fmt.Errorf("roster target %q: %w", u, err)
		}
	}
	return addrs, namespace, service, nil
}

// Build starts resolving target.
func (b *Builder) Build(target grpcresolver.Target, cc grpcresolver.ClientConn, _ grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	addrs, ns, svc, err := readTarget(&target.URL)
	if err != nil {
		return nil, err
	}
	c, owned := b.c, false
	if len(addrs) > 0 {
		c, err = client.New(context.Background(), addrs, b.opts...)
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
	r := &rosterResolver{cc: cc, sub: sub, stop: make(chan struct{}), again: make(chan struct{}, 1)}
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
	// again asks run to push the current list again (ResolveNow).
	again chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

// run pushes every list the subscription signals. The cache only signals
// lists it has from the registry or its cache dir, and never an empty one
// merely because the registry is unreachable, so neither is pushed here.
func (r *rosterResolver) run() {
	defer r.wg.Done()
	pushed := false
	for {
		select {
		case <-r.stop:
			return
		case <-r.sub.Changed():
		case <-r.again:
			if !pushed {
				continue // nothing to push again: the first list is still to come
			}
		}
		s := r.sub.Service()
		if err := r.sub.Err(); err != nil && len(s.Instances) == 0 {
			// No list, and the watch cannot work (an invalid service
			// name) or fails on every endpoint for now (a refused token,
			// a proxy's error; the cache keeps trying): calls fail with
			// why instead of waiting.
			r.cc.ReportError(err)
			continue
		}
		addrs := make([]grpcresolver.Address, 0, len(s.Instances))
		for _, inst := range s.Instances {
			addrs = append(addrs, Address(inst))
		}
		pushed = true
		if err := r.cc.UpdateState(grpcresolver.State{Addresses: addrs}); err != nil && len(addrs) > 0 {
			// The balancer rejected the list; gRPC asks again with
			// ResolveNow (with backoff), which pushes it again, and the
			// next change is pushed anyway.
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

// ResolveNow pushes the current list again. A list is pushed as soon as it
// changes; gRPC asks for it again when its balancer rejected the last one
// or a connection failed.
func (r *rosterResolver) ResolveNow(grpcresolver.ResolveNowOptions) {
	select {
	case r.again <- struct{}{}:
	default:
	}
}

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

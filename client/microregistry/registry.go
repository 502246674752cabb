// Package microregistry gives Roster the shape of go-micro's registry
// interface: Init, Options, Register, Deregister, GetService, ListServices,
// Watch and String, over types that mirror go-micro's registry.Service,
// registry.Node and registry.Result field for field. A team on go-micro
// switches with a shim of a few lines that converts between the two sets
// of types; this package does not import go-micro.
//
// Mapping:
//
//   - A go-micro domain is a Roster namespace (DefaultDomain is Roster's
//     default namespace).
//   - Each Node is one instance: Node.Id is the instance id, Node.Address
//     its HOST:PORT, Node.Metadata its metadata. Service.Version travels in
//     the metadata key "version"; Service.Metadata and Endpoints are not
//     stored.
//   - Register with a TTL keeps the nodes alive over the client's shared
//     keepalive session (client.RegisterInstance); calling it again, as
//     go-micro servers do every RegisterInterval, changes nothing while the
//     node is unchanged. Deregister closes those registrations. After Init
//     replaces the client, the next Register registers every node again
//     through the new one.
//   - GetService answers from the client's discovery cache, healthy nodes
//     only, so it keeps answering while the registry is unreachable.
//   - Watch reports healthy nodes: a node turning critical or drained is a
//     "delete", and one recovering a "create".
package microregistry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// DefaultDomain is the domain used when none is given: Roster's default
// namespace.
const DefaultDomain = client.DefaultNamespace

// VersionKey is the instance metadata key holding Service.Version.
const VersionKey = "version"

// ErrNotFound is returned by GetService for a service with no healthy node.
var ErrNotFound = errors.New("service not found")

// ErrWatcherStopped is returned by Watcher.Next after Stop.
var ErrWatcherStopped = errors.New("watcher stopped")

// ErrNoClient is returned by calls made before Init gave the registry
// addresses or a client.
var ErrNoClient = errors.New("registry has no addresses")

// Service mirrors go-micro's registry.Service.
type Service struct {
	// Name is the service name.
	Name string `json:"name"`
	// Version is kept in each node's metadata under VersionKey.
	Version string `json:"version"`
	// Metadata is not stored by Roster.
	Metadata map[string]string `json:"metadata"`
	// Endpoints are not stored by Roster.
	Endpoints []*Endpoint `json:"endpoints"`
	// Nodes are the service's instances.
	Nodes []*Node `json:"nodes"`
}

// Node mirrors go-micro's registry.Node.
type Node struct {
	// Id is the instance id.
	Id string `json:"id"`
	// Address is the instance's HOST:PORT.
	Address string `json:"address"`
	// Metadata is the instance's metadata.
	Metadata map[string]string `json:"metadata"`
}

// Endpoint mirrors go-micro's registry.Endpoint. Roster does not store
// endpoints; the type is here so that Service converts field for field.
type Endpoint struct {
	// Name, Request, Response and Metadata are go-micro's.
	Name     string            `json:"name"`
	Request  *Value            `json:"request"`
	Response *Value            `json:"response"`
	Metadata map[string]string `json:"metadata"`
}

// Value mirrors go-micro's registry.Value.
type Value struct {
	// Name, Type and Values are go-micro's.
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Values []*Value `json:"values"`
}

// Result mirrors go-micro's registry.Result: Action is "create", "update"
// or "delete", and Service holds the one node concerned.
type Result struct {
	// Action is "create", "update" or "delete".
	Action string
	// Service holds the node concerned.
	Service *Service
}

// Options mirrors go-micro's registry.Options, less its TLS and logger
// fields (use client options through WithClientOptions).
type Options struct {
	// Addrs are the registry nodes, HOST:PORT each.
	Addrs []string
	// Timeout bounds each call.
	Timeout time.Duration
	// Context is the parent of every call's context.
	Context context.Context
	// Client, when set, is used instead of a client made from Addrs.
	Client *client.Client
	// ClientOptions are passed to the client made from Addrs.
	ClientOptions []client.Option
}

// Option mirrors go-micro's registry.Option.
type Option func(*Options)

// Addrs sets the registry nodes, HOST:PORT each.
func Addrs(addrs ...string) Option { return func(o *Options) { o.Addrs = addrs } }

// Timeout bounds each call (default 10s).
func Timeout(d time.Duration) Option { return func(o *Options) { o.Timeout = d } }

// WithClient uses c for every call; the registry does not close it.
func WithClient(c *client.Client) Option { return func(o *Options) { o.Client = c } }

// WithClientOptions configures the client made from Addrs.
func WithClientOptions(opts ...client.Option) Option {
	return func(o *Options) { o.ClientOptions = append(o.ClientOptions, opts...) }
}

// RegisterOptions mirrors go-micro's registry.RegisterOptions.
type RegisterOptions struct {
	// TTL, when positive, gives the nodes a lease kept alive by the client.
	TTL time.Duration
	// Context bounds the call.
	Context context.Context
	// Domain is the namespace.
	Domain string
}

// RegisterOption mirrors go-micro's registry.RegisterOption.
type RegisterOption func(*RegisterOptions)

// RegisterTTL gives the nodes a TTL lease kept alive by the client.
func RegisterTTL(d time.Duration) RegisterOption {
	return func(o *RegisterOptions) { o.TTL = d }
}

// RegisterDomain registers in domain (a Roster namespace).
func RegisterDomain(d string) RegisterOption { return func(o *RegisterOptions) { o.Domain = d } }

// RegisterContext bounds the call with ctx.
func RegisterContext(ctx context.Context) RegisterOption {
	return func(o *RegisterOptions) { o.Context = ctx }
}

// DeregisterOptions mirrors go-micro's registry.DeregisterOptions.
type DeregisterOptions struct {
	// Context bounds the call.
	Context context.Context
	// Domain is the namespace.
	Domain string
}

// DeregisterOption mirrors go-micro's registry.DeregisterOption.
type DeregisterOption func(*DeregisterOptions)

// DeregisterDomain deregisters from domain.
func DeregisterDomain(d string) DeregisterOption {
	return func(o *DeregisterOptions) { o.Domain = d }
}

// GetOptions mirrors go-micro's registry.GetOptions.
type GetOptions struct {
	// Context bounds the call.
	Context context.Context
	// Domain is the namespace.
	Domain string
}

// GetOption mirrors go-micro's registry.GetOption.
type GetOption func(*GetOptions)

// GetDomain looks in domain.
func GetDomain(d string) GetOption { return func(o *GetOptions) { o.Domain = d } }

// ListOptions mirrors go-micro's registry.ListOptions.
type ListOptions struct {
	// Context bounds the call.
	Context context.Context
	// Domain is the namespace.
	Domain string
}

// ListOption mirrors go-micro's registry.ListOption.
type ListOption func(*ListOptions)

// ListDomain lists domain.
func ListDomain(d string) ListOption { return func(o *ListOptions) { o.Domain = d } }

// WatchOptions mirrors go-micro's registry.WatchOptions.
type WatchOptions struct {
	// Service limits the watch to one service; empty watches all.
	Service string
	// Context ends the watch.
	Context context.Context
	// Domain is the namespace.
	Domain string
}

// WatchOption mirrors go-micro's registry.WatchOption.
type WatchOption func(*WatchOptions)

// WatchService watches one service.
func WatchService(name string) WatchOption { return func(o *WatchOptions) { o.Service = name } }

// WatchDomain watches domain.
func WatchDomain(d string) WatchOption { return func(o *WatchOptions) { o.Domain = d } }

// WatchContext ends the watch with ctx.
func WatchContext(ctx context.Context) WatchOption {
	return func(o *WatchOptions) { o.Context = ctx }
}

// Registry is Roster behind go-micro's registry interface.
type Registry struct {
	mu     sync.Mutex
	opts   Options
	c      *client.Client
	owned  bool
	nodes  map[client.InstanceKey]node
	closed bool
}

// node is a node registered with a TTL: its registration and the client
// that keeps it alive.
type node struct {
	reg *client.Registration
	c   *client.Client
}

// NewRegistry returns a Registry configured by opts.
func NewRegistry(opts ...Option) *Registry {
	r := &Registry{nodes: map[client.InstanceKey]node{}}
	_ = r.Init(opts...)
	return r
}

// Init applies opts. A change of addresses replaces the client; a client
// made by the registry is closed then. Nodes registered through the old
// client are registered again through the new one by the next Register.
func (r *Registry) Init(opts ...Option) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.opts
	for _, o := range opts {
		o(&r.opts)
	}
	if r.opts.Timeout <= 0 {
		r.opts.Timeout = 10 * time.Second
	}
	if r.opts.Context == nil {
		r.opts.Context = context.Background()
	}
	switch {
	case r.opts.Client != nil:
		if r.owned {
			_ = r.c.Close()
		}
		r.c, r.owned = r.opts.Client, false
	case len(r.opts.Addrs) > 0 && (r.c == nil || !slices.Equal(prev.Addrs, r.opts.Addrs)):
		c, err := client.New(r.opts.Context, r.opts.Addrs, r.opts.ClientOptions...)
		if err != nil {
			return err
		}
		if r.owned {
			_ = r.c.Close()
		}
		r.c, r.owned = c, true
	}
	return nil
}

// Options returns the registry's options.
func (r *Registry) Options() Options {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opts
}

// String returns "roster".
func (r *Registry) String() string { return "roster" }

// Close closes the client the registry made. It does not deregister.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owned && r.c != nil {
		return r.c.Close()
	}
	return nil
}

func (r *Registry) client() (*client.Client, Options, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		return nil, r.opts, ErrNoClient
	}
	return r.c, r.opts, nil
}

func (r *Registry) ctx(ctx context.Context, o Options) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = o.Context
	}
	return context.WithTimeout(ctx, o.Timeout)
}

func domainOr(d string) string {
	if d == "" {
		return DefaultDomain
	}
	return d
}

// instance converts one node of s to a Roster instance in namespace.
func instance(namespace string, s *Service, n *Node) (*rosterv1.Instance, error) {
	host, portStr, err := net.SplitHostPort(n.Address)
	if err != nil {
		return nil, fmt.Errorf("node %s address %q: %w", n.Id, n.Address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("node %s address %q: bad port", n.Id, n.Address)
	}
	md := maps.Clone(n.Metadata)
	if s.Version != "" {
		if md == nil {
			md = map[string]string{}
		}
		md[VersionKey] = s.Version
	}
	return &rosterv1.Instance{
		Namespace: namespace, Service: s.Name, Id: n.Id,
		Address: host, Port: uint32(port), Metadata: md,
	}, nil
}

// Register registers every node of s. With RegisterTTL the nodes are kept
// alive until Deregister; without, they are plain registrations (give them
// a check or deregister them yourself).
func (r *Registry) Register(s *Service, opts ...RegisterOption) error {
	c, o, err := r.client()
	if err != nil {
		return err
	}
	var ro RegisterOptions
	for _, opt := range opts {
		opt(&ro)
	}
	ns := domainOr(ro.Domain)
	ctx, cancel := r.ctx(ro.Context, o)
	defer cancel()
	var errs []error
	for _, n := range s.Nodes {
		inst, err := instance(ns, s, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k := client.InstanceKey{Namespace: ns, Service: s.Name, ID: n.Id}
		r.mu.Lock()
		prev, ok := r.nodes[k]
		r.mu.Unlock()
		// A registration made through a client Init has since replaced is
		// no longer kept alive (a client the registry made is closed): the
		// node is registered again through the current one.
		if ok && prev.c == c && sameInstance(prev.reg.Instance(), inst, ro.TTL) {
			continue
		}
		if ok {
			// Stops renewing it; through a closed client the Deregister
			// fails, and the Register below replaces the instance.
			_ = prev.reg.Close(ctx)
		}
		if ro.TTL <= 0 {
			if _, err := c.Register(ctx, &rosterv1.RegisterRequest{Instance: inst}); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		reg, err := c.RegisterInstance(ctx, inst, client.WithTTL(ro.TTL))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.mu.Lock()
		r.nodes[k] = node{reg: reg, c: c}
		r.mu.Unlock()
	}
	return errors.Join(errs...)
}

func sameInstance(a, b *rosterv1.Instance, ttl time.Duration) bool {
	return a.GetAddress() == b.GetAddress() && a.GetPort() == b.GetPort() &&
		maps.Equal(a.GetMetadata(), b.GetMetadata()) && a.GetTtl().AsDuration() == ttl
}

// Deregister removes every node of s.
func (r *Registry) Deregister(s *Service, opts ...DeregisterOption) error {
	c, o, err := r.client()
	if err != nil {
		return err
	}
	var do DeregisterOptions
	for _, opt := range opts {
		opt(&do)
	}
	ns := domainOr(do.Domain)
	ctx, cancel := r.ctx(do.Context, o)
	defer cancel()
	var errs []error
	for _, n := range s.Nodes {
		k := client.InstanceKey{Namespace: ns, Service: s.Name, ID: n.Id}
		r.mu.Lock()
		prev, ok := r.nodes[k]
		delete(r.nodes, k)
		r.mu.Unlock()
		if ok {
			err := prev.reg.Close(ctx)
			if err == nil {
				continue
			}
			if prev.c == c {
				errs = append(errs, err)
				continue
			}
			// Registered through a client Init has replaced (and closed,
			// when the registry made it): deregister through this one.
		}
		if _, err := c.Deregister(ctx, &rosterv1.DeregisterRequest{Namespace: ns, Service: s.Name, Id: n.Id}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// GetService returns the healthy nodes of a service, one Service per
// version, from the client's discovery cache. It returns ErrNotFound when
// there is none.
func (r *Registry) GetService(name string, opts ...GetOption) ([]*Service, error) {
	c, o, err := r.client()
	if err != nil {
		return nil, err
	}
	var g GetOptions
	for _, opt := range opts {
		opt(&g)
	}
	ctx, cancel := r.ctx(g.Context, o)
	defer cancel()
	insts, err := c.Instances(ctx, name, client.InNamespace(domainOr(g.Domain)))
	if err != nil {
		return nil, err
	}
	if len(insts) == 0 {
		return nil, ErrNotFound
	}
	byVersion := map[string]*Service{}
	var out []*Service
	for _, inst := range insts {
		v := inst.GetMetadata()[VersionKey]
		s := byVersion[v]
		if s == nil {
			s = &Service{Name: name, Version: v}
			byVersion[v] = s
			out = append(out, s)
		}
		s.Nodes = append(s.Nodes, nodeOf(inst))
	}
	return out, nil
}

func nodeOf(inst *rosterv1.Instance) *Node {
	return &Node{
		Id:       inst.GetId(),
		Address:  net.JoinHostPort(inst.GetAddress(), strconv.Itoa(int(inst.GetPort()))),
		Metadata: maps.Clone(inst.GetMetadata()),
	}
}

// ListServices returns every service of the domain, by name only, as
// go-micro's registries do.
func (r *Registry) ListServices(opts ...ListOption) ([]*Service, error) {
	c, o, err := r.client()
	if err != nil {
		return nil, err
	}
	var l ListOptions
	for _, opt := range opts {
		opt(&l)
	}
	ctx, cancel := r.ctx(l.Context, o)
	defer cancel()
	resp, err := c.ListServices(ctx, &rosterv1.ListServicesRequest{Namespace: domainOr(l.Domain)})
	if err != nil {
		return nil, err
	}
	out := make([]*Service, 0, len(resp.GetServices()))
	for _, s := range resp.GetServices() {
		out = append(out, &Service{Name: s.GetService()})
	}
	return out, nil
}

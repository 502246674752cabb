package balancer

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

func init() {
	for _, p := range Policies {
		balancer.Register(builder{policy: p})
	}
}

// Config is the gRPC load-balancing config of every Roster balancer, for
// example {"roster_p2c": {"zone": "eu-1a"}}.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Zone is the caller's zone: while some ready instance is in it, only
	// those are picked.
	Zone string `json:"zone,omitempty"`
	// Seed, when not zero, seeds the random strategies so that a test can
	// reproduce a sequence of picks.
	Seed uint64 `json:"seed,omitempty"`
}

// ServiceConfig returns a gRPC service config (for
// grpc.WithDefaultServiceConfig) that selects policy, preferring zone when
// it is not empty.
func ServiceConfig(policy Policy, zone string) string {
	cfg, _ := json.Marshal(map[string]any{
		"loadBalancingConfig": []map[string]Config{{string(policy): {Zone: zone}}},
	})
	return string(cfg)
}

// Info is what the roster resolver knows about an address: it travels in
// the address's balancer attributes, where the balancers read weight and
// zone. gRPC tells addresses apart without them, so a change of weight,
// zone, tags or metadata keeps the address's connection.
type Info struct {
	// ID is the instance id.
	ID string
	// Weight is the instance's weight.
	Weight uint32
	// Zone is the instance's zone.
	Zone string
	// Tags are the instance's tags.
	Tags []string
	// Metadata is the instance's metadata.
	Metadata map[string]string
}

// Equal reports whether o is an Info equal to i.
func (i *Info) Equal(o any) bool {
	j, ok := o.(*Info)
	if !ok || i == nil || j == nil {
		return ok && i == j
	}
	return i.ID == j.ID && i.Weight == j.Weight && i.Zone == j.Zone &&
		slices.Equal(i.Tags, j.Tags) && maps.Equal(i.Metadata, j.Metadata)
}

type infoKey struct{}

// SetInfo returns addr carrying info in its balancer attributes.
func SetInfo(addr resolver.Address, info *Info) resolver.Address {
	addr.BalancerAttributes = addr.BalancerAttributes.WithValue(infoKey{}, info)
	return addr
}

// InfoOf returns the Info addr carries, or nil.
func InfoOf(addr resolver.Address) *Info {
	info, _ := addr.BalancerAttributes.Value(infoKey{}).(*Info)
	return info
}

// builder builds one of the Roster balancers: gRPC's base balancer (one
// SubConn per address, a new picker whenever the ready set changes) with a
// Picker of the policy inside.
type builder struct {
	policy Policy
}

func (b builder) Name() string { return string(b.policy) }

func (b builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	pb := &pickerBuilder{policy: b.policy, loads: map[balancer.SubConn]*atomic.Int64{}}
	inner := base.NewBalancerBuilder(string(b.policy), pb, base.Config{}).Build(cc, opts)
	return &configured{Balancer: inner, pb: pb}
}

func (b builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	cfg := &Config{}
	if len(js) > 0 && string(js) != "null" {
		if err := json.Unmarshal(js, cfg); err != nil {
			return nil, fmt.Errorf("%s config: %w", b.policy, err)
		}
	}
	return cfg, nil
}

// configured hands the load-balancing config to the picker builder before
// the base balancer, which ignores configs, builds the next picker.
type configured struct {
	balancer.Balancer
	pb *pickerBuilder
}

func (c *configured) UpdateClientConnState(s balancer.ClientConnState) error {
	if cfg, ok := s.BalancerConfig.(*Config); ok {
		c.pb.setConfig(*cfg)
	}
	c.pb.setInfos(s.ResolverState.Addresses)
	return c.Balancer.UpdateClientConnState(s)
}

type pickerBuilder struct {
	policy Policy

	mu  sync.Mutex
	cfg Config
	// loads are the calls in flight per SubConn, kept across pickers.
	loads map[balancer.SubConn]*atomic.Int64
	// infos are the newest Info of each address the resolver sent. The
	// base balancer keeps each SubConn's address as it was when the
	// SubConn was made (an address whose balancer attributes changed is
	// the same address to it), so a new weight or zone is read here.
	infos map[string]*Info
}

func (pb *pickerBuilder) setConfig(cfg Config) {
	pb.mu.Lock()
	pb.cfg = cfg
	pb.mu.Unlock()
}

func (pb *pickerBuilder) setInfos(addrs []resolver.Address) {
	infos := make(map[string]*Info, len(addrs))
	for _, a := range addrs {
		in := InfoOf(a)
		if in == nil {
			continue
		}
		if prev := infos[a.Addr]; prev != nil {
			// Instances at one address share its connection, and
			// their weights add up, as if they had one each.
			sum := *prev
			sum.Weight = uint32(min(uint64(prev.Weight)+uint64(max(in.Weight, 1)), math.MaxUint32))
			in = &sum
		} else if in.Weight == 0 {
			one := *in
			one.Weight = 1
			in = &one
		}
		infos[a.Addr] = in
	}
	pb.mu.Lock()
	pb.infos = infos
	pb.mu.Unlock()
}

func (pb *pickerBuilder) Build(info base.PickerBuildInfo) balancer.Picker {
	if len(info.ReadySCs) == 0 {
		return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
	}
	pb.mu.Lock()
	defer pb.mu.Unlock()
	type ready struct {
		sc   balancer.SubConn
		addr resolver.Address
	}
	scs := make([]ready, 0, len(info.ReadySCs))
	for sc, sci := range info.ReadySCs {
		scs = append(scs, ready{sc, sci.Address})
	}
	// A fixed order, so a seeded picker repeats itself.
	slices.SortFunc(scs, func(a, b ready) int { return strings.Compare(a.addr.Addr, b.addr.Addr) })

	endpoints := make([]Endpoint, len(scs))
	loads := make([]*atomic.Int64, len(scs))
	p := &grpcPicker{subConns: make([]balancer.SubConn, len(scs))}
	live := make(map[balancer.SubConn]*atomic.Int64, len(scs))
	for i, r := range scs {
		ep := Endpoint{Addr: r.addr.Addr, Weight: 1}
		in := pb.infos[r.addr.Addr]
		if in == nil {
			in = InfoOf(r.addr)
		}
		if in != nil {
			ep.Weight, ep.Zone = in.Weight, in.Zone
		}
		endpoints[i] = ep
		load := pb.loads[r.sc]
		if load == nil {
			load = new(atomic.Int64)
		}
		live[r.sc] = load
		loads[i] = load
		p.subConns[i] = r.sc
	}
	pb.loads = live
	opts := []PickerOption{WithZone(pb.cfg.Zone), withLoads(loads)}
	if pb.cfg.Seed != 0 {
		opts = append(opts, WithSeed(pb.cfg.Seed))
	}
	picker, err := NewPicker(pb.policy, endpoints, opts...)
	if err != nil {
		return base.NewErrPicker(err)
	}
	p.picker = picker
	if pb.policy == P2C {
		// One Done per SubConn, made here so that a pick allocates nothing.
		p.done = make([]func(balancer.DoneInfo), len(scs))
		for i, load := range loads {
			p.done[i] = func(balancer.DoneInfo) { load.Add(-1) }
		}
	}
	return p
}

type grpcPicker struct {
	picker   *Picker
	subConns []balancer.SubConn
	done     []func(balancer.DoneInfo)
}

func (p *grpcPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	sel := p.picker.Pick()
	res := balancer.PickResult{SubConn: p.subConns[sel.Index]}
	if p.done != nil {
		res.Done = p.done[sel.Index]
	}
	return res, nil
}

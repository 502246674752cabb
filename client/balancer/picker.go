package balancer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
)

// Policy names a load-balancing strategy. The names are also the names of
// the gRPC balancers this package registers.
type Policy string

// The strategies.
const (
	RoundRobin         Policy = "roster_round_robin"
	Random             Policy = "roster_random"
	WeightedRoundRobin Policy = "roster_weighted_round_robin"
	WeightedRandom     Policy = "roster_weighted_random"
	P2C                Policy = "roster_p2c"
)

// Policies lists every strategy.
var Policies = []Policy{RoundRobin, Random, WeightedRoundRobin, WeightedRandom, P2C}

// ErrNoEndpoints is returned by NewPicker when it is given no endpoint.
var ErrNoEndpoints = errors.New("no endpoints")

// ErrUnknownPolicy is returned for a policy name this package does not know.
var ErrUnknownPolicy = errors.New("unknown balancing policy")

// ParsePolicy returns the policy named s; the roster_ prefix may be left
// out ("p2c" is P2C).
func ParsePolicy(s string) (Policy, error) {
	for _, p := range Policies {
		if string(p) == s || string(p) == "roster_"+s {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: %w", s, ErrUnknownPolicy)
}

// Endpoint is one place a call can go.
type Endpoint struct {
	// Addr is the endpoint's HOST:PORT.
	Addr string
	// Weight is its share under the weighted strategies; 0 counts as 1.
	Weight uint32
	// Zone is where it runs, for zone preference.
	Zone string
	// Value is anything the caller wants back with the pick (an HTTP
	// client, the registry's instance record).
	Value any
}

// PickerOption configures a Picker.
type PickerOption func(*pickerOptions)

type pickerOptions struct {
	zone   string
	seeded bool
	seed   uint64
	loads  []*atomic.Int64
}

// WithZone makes the picker prefer endpoints in zone: while at least one
// endpoint is in zone, only those are picked.
func WithZone(zone string) PickerOption {
	return func(o *pickerOptions) { o.zone = zone }
}

// WithSeed makes the random strategies draw from a generator seeded with
// seed, so that a sequence of picks can be reproduced. Without it they use
// the runtime's per-thread generator, which needs no lock.
func WithSeed(seed uint64) PickerOption {
	return func(o *pickerOptions) { o.seeded, o.seed = true, seed }
}

// withLoads hands P2C the in-flight counters of the endpoints, by position,
// so that they outlive one picker (the gRPC balancer builds a new picker on
// every change).
func withLoads(loads []*atomic.Int64) PickerOption {
	return func(o *pickerOptions) { o.loads = loads }
}

// Picker chooses an endpoint for each call. It is immutable once built and
// safe for concurrent use; build a new one when the endpoints change.
type Picker struct {
	policy    Policy
	endpoints []Endpoint
	// index maps a position in endpoints to the caller's original position.
	index []int
	loads []*atomic.Int64

	next atomic.Uint64 // round robin

	// Smooth weighted round robin.
	mu      sync.Mutex
	current []int64
	weights []int64
	total   int64

	// Weighted random: cumulative weights.
	cum []uint64

	rmu sync.Mutex
	rnd *rand.Rand // nil: the runtime's generator
}

// NewPicker returns a picker using policy over endpoints.
func NewPicker(policy Policy, endpoints []Endpoint, opts ...PickerOption) (*Picker, error) {
	if !slices.Contains(Policies, policy) {
		return nil, fmt.Errorf("%q: %w", policy, ErrUnknownPolicy)
	}
	if len(endpoints) == 0 {
		return nil, ErrNoEndpoints
	}
	var o pickerOptions
	for _, opt := range opts {
		opt(&o)
	}
	p := &Picker{policy: policy}
	if o.seeded {
		p.rnd = rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15))
	}
	for i, ep := range endpoints {
		if o.zone != "" && ep.Zone != o.zone {
			continue
		}
		p.endpoints = append(p.endpoints, ep)
		p.index = append(p.index, i)
	}
	if len(p.endpoints) == 0 {
		// Nobody in the preferred zone: every zone will do.
		p.endpoints = slices.Clone(endpoints)
		p.index = make([]int, len(endpoints))
		for i := range p.index {
			p.index[i] = i
		}
	}
	p.loads = make([]*atomic.Int64, len(p.endpoints))
	for i, orig := range p.index {
		if orig < len(o.loads) && o.loads[orig] != nil {
			p.loads[i] = o.loads[orig]
		} else {
			p.loads[i] = new(atomic.Int64)
		}
	}
	p.weights = make([]int64, len(p.endpoints))
	p.current = make([]int64, len(p.endpoints))
	p.cum = make([]uint64, len(p.endpoints))
	var sum uint64
	for i, ep := range p.endpoints {
		w := uint64(max(ep.Weight, 1))
		p.weights[i] = int64(w)
		sum += w
		p.cum[i] = sum
	}
	p.total = int64(sum)
	return p, nil
}

// Policy returns the picker's strategy.
func (p *Picker) Policy() Policy { return p.policy }

// Endpoints returns the endpoints the picker chooses from, after zone
// preference.
func (p *Picker) Endpoints() []Endpoint { return slices.Clone(p.endpoints) }

// Selection is the outcome of one pick.
type Selection struct {
	// Endpoint is the chosen endpoint.
	Endpoint Endpoint
	// Index is its position in the slice given to NewPicker.
	Index int
	load  *atomic.Int64
}

// Done reports that the call sent to the selected endpoint has finished.
// P2C counts calls in flight with it; the other strategies ignore it, but
// calling it is always correct. Call it exactly once per Pick.
func (s Selection) Done() {
	if s.load != nil {
		s.load.Add(-1)
	}
}

// Pick chooses an endpoint. It does not allocate.
func (p *Picker) Pick() Selection {
	var i int
	switch p.policy {
	case RoundRobin:
		i = int((p.next.Add(1) - 1) % uint64(len(p.endpoints)))
	case Random:
		i = int(p.uint64n(uint64(len(p.endpoints))))
	case WeightedRoundRobin:
		i = p.smooth()
	case WeightedRandom:
		r := p.uint64n(p.cum[len(p.cum)-1])
		// The first endpoint whose cumulative weight exceeds r.
		i, _ = slices.BinarySearch(p.cum, r+1)
	case P2C:
		i = p.twoChoices()
		p.loads[i].Add(1)
		return Selection{Endpoint: p.endpoints[i], Index: p.index[i], load: p.loads[i]}
	}
	return Selection{Endpoint: p.endpoints[i], Index: p.index[i]}
}

// smooth is nginx's smooth weighted round robin: every endpoint's current
// weight grows by its weight, the largest wins and gives back the total.
func (p *Picker) smooth() int {
	p.mu.Lock()
	best := 0
	for i, w := range p.weights {
		p.current[i] += w
		if p.current[i] > p.current[best] {
			best = i
		}
	}
	p.current[best] -= p.total
	p.mu.Unlock()
	return best
}

// twoChoices draws two different endpoints and returns the one with fewer
// calls in flight; on a tie one of the two in proportion to their weights,
// so weights still count when the endpoints are idle.
func (p *Picker) twoChoices() int {
	n := uint64(len(p.endpoints))
	if n == 1 {
		return 0
	}
	a := p.uint64n(n)
	b := p.uint64n(n - 1)
	if b >= a {
		b++
	}
	la, lb := p.loads[a].Load(), p.loads[b].Load()
	switch {
	case la < lb:
		return int(a)
	case lb < la:
		return int(b)
	}
	wa, wb := uint64(p.weights[a]), uint64(p.weights[b])
	if p.uint64n(wa+wb) < wb {
		return int(b)
	}
	return int(a)
}

func (p *Picker) uint64n(n uint64) uint64 {
	if p.rnd == nil {
		return rand.Uint64N(n)
	}
	p.rmu.Lock()
	v := p.rnd.Uint64N(n)
	p.rmu.Unlock()
	return v
}

// P2CIdleShares returns the share of picks each endpoint gets under P2C
// while no call is in flight: every pair is drawn equally often and its tie
// settled by weight. Tests compare observed splits with it.
func P2CIdleShares(weights []float64) []float64 {
	n := len(weights)
	out := make([]float64, n)
	if n == 1 {
		out[0] = 1
		return out
	}
	pairs := float64(n * (n - 1) / 2)
	for i := range n {
		for j := i + 1; j < n; j++ {
			out[i] += weights[i] / (weights[i] + weights[j]) / pairs
			out[j] += weights[j] / (weights[i] + weights[j]) / pairs
		}
	}
	return out
}

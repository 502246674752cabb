package balancer

import (
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
)

func endpoints(weights ...uint32) []Endpoint {
	eps := make([]Endpoint, len(weights))
	for i, w := range weights {
		eps[i] = Endpoint{Addr: string(rune('a' + i)), Weight: w}
	}
	return eps
}

func counts(p *Picker, n int) []int {
	out := make([]int, slices.Max(p.index)+1)
	for range n {
		s := p.Pick()
		out[s.Index]++
		s.Done()
	}
	return out
}

// withinShare fails unless each count is within tol (a fraction of n) of
// its expected share.
func withinShare(t *testing.T, got []int, weights []float64, n int, tol float64) {
	t.Helper()
	var sum float64
	for _, w := range weights {
		sum += w
	}
	for i, w := range weights {
		want := float64(n) * w / sum
		if math.Abs(float64(got[i])-want) > tol*float64(n) {
			t.Fatalf("endpoint %d got %d of %d picks, want %.0f ± %.0f (all: %v)", i, got[i], n, want, tol*float64(n), got)
		}
	}
}

func TestSmoothWeightedRoundRobinIsNginxSequence(t *testing.T) {
	p, err := NewPicker(WeightedRoundRobin, endpoints(5, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	var seq []string
	for range 14 {
		seq = append(seq, p.Pick().Endpoint.Addr)
	}
	// nginx's documented sequence for weights 5,1,1, twice.
	want := []string{"a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"}
	if !slices.Equal(seq, want) {
		t.Fatalf("sequence %v, want %v", seq, want)
	}
}

func TestStrategiesSplit(t *testing.T) {
	const n = 60000
	for _, tc := range []struct {
		policy Policy
		share  []float64
		tol    float64
	}{
		{RoundRobin, []float64{1, 1, 1}, 0},
		{WeightedRoundRobin, []float64{100, 200, 300}, 0},
		{Random, []float64{1, 1, 1}, 0.01},
		{WeightedRandom, []float64{100, 200, 300}, 0.01},
		// Nothing is in flight: every draw is a tie, settled by weight.
		{P2C, P2CIdleShares([]float64{100, 200, 300}), 0.01},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			p, err := NewPicker(tc.policy, endpoints(100, 200, 300), WithSeed(7))
			if err != nil {
				t.Fatal(err)
			}
			got := counts(p, n)
			withinShare(t, got, tc.share, n, tc.tol)
		})
	}
}

func TestSeededPicksRepeat(t *testing.T) {
	for _, policy := range []Policy{Random, WeightedRandom, P2C} {
		a, _ := NewPicker(policy, endpoints(1, 2, 3, 4), WithSeed(42))
		b, _ := NewPicker(policy, endpoints(1, 2, 3, 4), WithSeed(42))
		for range 100 {
			x, y := a.Pick(), b.Pick()
			if x.Index != y.Index {
				t.Fatalf("%s: seeded pickers differ", policy)
			}
		}
	}
}

func TestP2CAvoidsBusyEndpoint(t *testing.T) {
	p, err := NewPicker(P2C, endpoints(1, 1), WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	busy := p.Pick() // never Done: one call stays in flight on it
	for range 100 {
		s := p.Pick()
		if s.Index == busy.Index {
			t.Fatalf("picked the endpoint with a call in flight")
		}
		s.Done()
	}
	busy.Done()
}

func TestZonePreference(t *testing.T) {
	eps := endpoints(1, 1, 1)
	eps[0].Zone, eps[1].Zone, eps[2].Zone = "z1", "z2", "z2"
	for _, policy := range Policies {
		p, err := NewPicker(policy, eps, WithZone("z2"), WithSeed(3))
		if err != nil {
			t.Fatal(err)
		}
		got := counts(p, 200)
		if got := len(p.Endpoints()); got != 2 {
			t.Fatalf("%s: %d endpoints in zone, want 2", policy, got)
		}
		for _, s := range []int{1, 2} {
			if got[s] == 0 {
				t.Fatalf("%s: zone endpoint %d never picked: %v", policy, s, got)
			}
		}
		// Indexes point into the caller's slice: the z1 endpoint is 0.
		if idx := p.Pick().Index; idx == 0 {
			t.Fatalf("%s: picked the endpoint outside the zone", policy)
		}
		// A zone with nobody in it falls back to every endpoint.
		q, _ := NewPicker(policy, eps, WithZone("z9"))
		if len(q.Endpoints()) != 3 {
			t.Fatalf("%s: empty zone did not fall back to all", policy)
		}
	}
}

func TestNewPickerErrors(t *testing.T) {
	if _, err := NewPicker(RoundRobin, nil); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("no endpoints: %v", err)
	}
	if _, err := NewPicker("nope", endpoints(1)); !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("unknown policy: %v", err)
	}
	if p, err := ParsePolicy("p2c"); err != nil || p != P2C {
		t.Fatalf("ParsePolicy(p2c) = %v, %v", p, err)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, policy := range Policies {
		p, _ := NewPicker(policy, endpoints(1, 2, 3, 4, 5))
		allocs := testing.AllocsPerRun(1000, func() { p.Pick().Done() })
		if allocs != 0 {
			t.Fatalf("%s: %v allocations per pick", policy, allocs)
		}
	}
}

func TestConcurrentPicks(t *testing.T) {
	for _, policy := range Policies {
		p, _ := NewPicker(policy, endpoints(1, 2, 3))
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 1000 {
					p.Pick().Done()
				}
			})
		}
		wg.Wait()
		for i, l := range p.loads {
			if l.Load() != 0 {
				t.Fatalf("%s: endpoint %d has %d calls in flight after all were done", policy, i, l.Load())
			}
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, policy := range Policies {
		b.Run(string(policy), func(b *testing.B) {
			weights := make([]uint32, 16)
			for i := range weights {
				weights[i] = uint32(100 * (i + 1))
			}
			p, _ := NewPicker(policy, endpoints(weights...))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p.Pick().Done()
				}
			})
		})
	}
}

package balancer

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/resolver"
)

// fakeSubConn stands for a ready connection; the picker only hands it back.
type fakeSubConn struct {
	balancer.SubConn
	id int
}

func buildInfo(weights ...uint32) (base.PickerBuildInfo, map[balancer.SubConn]string) {
	info := base.PickerBuildInfo{ReadySCs: map[balancer.SubConn]base.SubConnInfo{}}
	names := map[balancer.SubConn]string{}
	for i, w := range weights {
		sc := &fakeSubConn{id: i}
		addr := SetInfo(resolver.Address{Addr: fmt.Sprintf("10.0.0.%d:80", i)}, &Info{ID: fmt.Sprint(i), Weight: w, Zone: fmt.Sprintf("z%d", i%2)})
		info.ReadySCs[sc] = base.SubConnInfo{Address: addr}
		names[sc] = addr.Addr
	}
	return info, names
}

func TestGRPCPickerWeightsZoneAndDone(t *testing.T) {
	info, names := buildInfo(100, 200, 300)
	pb := &pickerBuilder{policy: WeightedRoundRobin, loads: map[balancer.SubConn]*atomic.Int64{}}
	p := pb.Build(info)
	counts := map[string]int{}
	for range 600 {
		res, err := p.Pick(balancer.PickInfo{})
		if err != nil {
			t.Fatal(err)
		}
		counts[names[res.SubConn]]++
	}
	if counts["10.0.0.0:80"] != 100 || counts["10.0.0.1:80"] != 200 || counts["10.0.0.2:80"] != 300 {
		t.Fatalf("weighted round robin split %v", counts)
	}

	// Zone preference from the load-balancing config.
	cfg, err := builder{policy: RoundRobin}.ParseConfig(json.RawMessage(`{"zone":"z1"}`))
	if err != nil {
		t.Fatal(err)
	}
	pb = &pickerBuilder{policy: RoundRobin, loads: map[balancer.SubConn]*atomic.Int64{}}
	pb.setConfig(*cfg.(*Config))
	p = pb.Build(info)
	for range 10 {
		res, _ := p.Pick(balancer.PickInfo{})
		if names[res.SubConn] != "10.0.0.1:80" {
			t.Fatalf("picked %s outside zone z1", names[res.SubConn])
		}
	}

	// P2C counts calls in flight across pickers, and Done gives them back.
	pb = &pickerBuilder{policy: P2C, loads: map[balancer.SubConn]*atomic.Int64{}}
	p = pb.Build(info)
	res, _ := p.Pick(balancer.PickInfo{})
	if got := pb.loads[res.SubConn].Load(); got != 1 {
		t.Fatalf("in flight after a pick: %d", got)
	}
	p = pb.Build(info) // a new picker keeps the count
	if got := pb.loads[res.SubConn].Load(); got != 1 {
		t.Fatalf("in flight after rebuilding: %d", got)
	}
	res.Done(balancer.DoneInfo{})
	if got := pb.loads[res.SubConn].Load(); got != 0 {
		t.Fatalf("in flight after Done: %d", got)
	}

	// No ready connection: calls wait for one.
	if _, err := pb.Build(base.PickerBuildInfo{}).Pick(balancer.PickInfo{}); err != balancer.ErrNoSubConnAvailable {
		t.Fatalf("empty picker: %v", err)
	}
}

func TestGRPCPickDoesNotAllocate(t *testing.T) {
	info, _ := buildInfo(1, 2, 3, 4)
	for _, policy := range Policies {
		pb := &pickerBuilder{policy: policy, loads: map[balancer.SubConn]*atomic.Int64{}}
		p := pb.Build(info)
		allocs := testing.AllocsPerRun(1000, func() {
			res, _ := p.Pick(balancer.PickInfo{})
			if res.Done != nil {
				res.Done(balancer.DoneInfo{})
			}
		})
		if allocs != 0 {
			t.Fatalf("%s: %v allocations per gRPC pick", policy, allocs)
		}
	}
}

func TestRegisteredByName(t *testing.T) {
	for _, policy := range Policies {
		if balancer.Get(string(policy)) == nil {
			t.Fatalf("%s not registered with gRPC", policy)
		}
	}
	var sc map[string][]map[string]Config
	if err := json.Unmarshal([]byte(ServiceConfig(P2C, "z1")), &sc); err != nil || sc["loadBalancingConfig"][0]["roster_p2c"].Zone != "z1" {
		t.Fatalf("service config %s: %v", ServiceConfig(P2C, "z1"), err)
	}
}

func BenchmarkGRPCPick(b *testing.B) {
	weights := make([]uint32, 16)
	for i := range weights {
		weights[i] = uint32(100 * (i + 1))
	}
	info, _ := buildInfo(weights...)
	for _, policy := range Policies {
		b.Run(string(policy), func(b *testing.B) {
			pb := &pickerBuilder{policy: policy, loads: map[balancer.SubConn]*atomic.Int64{}}
			p := pb.Build(info)
			b.ReportAllocs()
			b.RunParallel(func(pbb *testing.PB) {
				for pbb.Next() {
					res, _ := p.Pick(balancer.PickInfo{})
					if res.Done != nil {
						res.Done(balancer.DoneInfo{})
					}
				}
			})
		})
	}
}

// TestInstancesAtOneAddressAddTheirWeights: instances sharing an address
// share its connection, and their weights add up (a zero weight counts as
// one).
func TestInstancesAtOneAddressAddTheirWeights(t *testing.T) {
	pb := &pickerBuilder{}
	at := func(addr, id string, w uint32) resolver.Address {
		return SetInfo(resolver.Address{Addr: addr}, &Info{ID: id, Weight: w})
	}
	pb.setInfos([]resolver.Address{at("10.0.0.1:80", "a", 2), at("10.0.0.1:80", "b", 3), at("10.0.0.2:80", "c", 0), at("10.0.0.1:80", "d", 0)})
	if w := pb.infos["10.0.0.1:80"].Weight; w != 6 {
		t.Errorf("10.0.0.1:80 weighs %d, want 2+3+1", w)
	}
	if w := pb.infos["10.0.0.2:80"].Weight; w != 1 {
		t.Errorf("10.0.0.2:80 weighs %d, want 1", w)
	}
}

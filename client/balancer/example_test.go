package balancer_test

import (
	"fmt"
	"net/http"

	"github.com/roster-registry/roster/client/balancer"
)

// A Picker spreads HTTP requests (or anything else) over endpoints by
// weight. Build a new one when the endpoints change.
func ExampleNewPicker() {
	picker, err := balancer.NewPicker(balancer.WeightedRoundRobin, []balancer.Endpoint{
		{Addr: "10.0.0.1:8080", Weight: 100},
		{Addr: "10.0.0.2:8080", Weight: 200},
		{Addr: "10.0.0.3:8080", Weight: 300},
	})
	if err != nil {
		panic(err)
	}
	for range 6 {
		sel := picker.Pick()
		fmt.Println(sel.Endpoint.Addr)
		sel.Done() // when the request has finished
	}
	// Output:
	// 10.0.0.3:8080
	// 10.0.0.2:8080
	// 10.0.0.1:8080
	// 10.0.0.3:8080
	// 10.0.0.2:8080
	// 10.0.0.3:8080
}

// With P2C, Done matters: it counts the requests in flight on each
// endpoint.
func ExamplePicker_Pick_http() {
	picker, _ := balancer.NewPicker(balancer.P2C, []balancer.Endpoint{
		{Addr: "10.0.0.1:8080", Zone: "eu-1a"},
		{Addr: "10.0.0.2:8080", Zone: "eu-1b"},
	}, balancer.WithZone("eu-1a"))
	send := func(path string) (*http.Response, error) {
		sel := picker.Pick()
		defer sel.Done()
		return http.Get("http://" + sel.Endpoint.Addr + path)
	}
	_ = send
	fmt.Println(picker.Pick().Endpoint.Addr)
	// Output: 10.0.0.1:8080
}

// The service config selecting a Roster balancer for a gRPC channel.
func ExampleServiceConfig() {
	fmt.Println(balancer.ServiceConfig(balancer.P2C, "eu-1a"))
	// Output: {"loadBalancingConfig":[{"roster_p2c":{"zone":"eu-1a"}}]}
}

// Package balancer holds Roster's load-balancing strategies in two shapes:
// a plain Picker for HTTP or any other protocol, and gRPC balancers
// registered by name, so that a channel resolved by the roster:/// resolver
// spreads its calls by the instances' weights.
//
// The strategies are
//
//   - roster_round_robin: each endpoint in turn;
//   - roster_random: uniformly at random;
//   - roster_weighted_round_robin: smooth weighted round robin, as nginx does
//     it: over any window of total-weight picks each endpoint gets exactly its
//     share, and the picks of a heavy endpoint are spread out, not bunched;
//   - roster_weighted_random: at random in proportion to the weights;
//   - roster_p2c: power of two choices on outstanding requests: two endpoints
//     drawn at random, the one with fewer calls in flight wins.
//
// A pick takes no lock except under smooth weighted round robin (one short
// mutex), and allocates nothing.
//
// Zone preference: with a zone set (WithZone, or "zone" in the gRPC
// load-balancing config), only the endpoints in that zone are picked as long
// as there is one; otherwise all are.
//
// gRPC use:
//
//	conn, err := grpc.NewClient("roster:///echo",
//		grpc.WithResolvers(resolver.NewBuilder(c)),
//		grpc.WithDefaultServiceConfig(balancer.ServiceConfig(balancer.WeightedRoundRobin, "")),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
package balancer

package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// checkModes checks the flags of the watch, failover, memory and keepalive
// modes.
func (o *benchOptions) checkModes(mode string) error {
	switch mode {
	case "watch":
		if o.watchers < 1 || o.watchers > 100_000 {
			return usagef("--watchers %d: must be 1-100000", o.watchers)
		}
		switch o.watchOn {
		case "", "all", "voters", "leader", "followers", "replicas":
		default:
			return usagef("--watch-on %q: must be replicas, all, voters, leader or followers", o.watchOn)
		}
		if o.local && o.watchOn == "replicas" && o.replicas == 0 {
			return usagef("--watch-on replicas with --local: give --replicas N to start some")
		}
	case "failover":
		if o.rounds < 1 || o.rounds > 100 {
			return usagef("--rounds %d: must be 1-100", o.rounds)
		}
	}
	if o.replicas < 0 || o.replicas > 16 {
		return usagef("--replicas %d: must be 0-16", o.replicas)
	}
	if o.replicas > 0 && (mode != "watch" || !o.local) {
		return usagef("--replicas starts read replicas beside a local cluster: it goes with bench watch --local")
	}
	if o.local && len(o.pids) > 0 {
		return usagef("--local starts its own cluster: --pids cannot go with it")
	}
	switch mode {
	case "memory", "keepalive":
		if o.instances < 1 || o.instances > 10_000_000 {
			return usagef("--instances %d: must be 1-10000000", o.instances)
		}
	}
	if mode == "keepalive" {
		if o.streams < 1 || o.streams > 10_000 {
			return usagef("--streams %d: must be 1-10000", o.streams)
		}
		if o.batch < 1 || o.batch > client.MaxKeepAliveBatch {
			return usagef("--batch %d: must be 1-%d", o.batch, client.MaxKeepAliveBatch)
		}
		if o.ttl < time.Second {
			return usagef("--ttl %s: must be at least 1s", o.ttl)
		}
		if o.interval < 0 || (o.interval > 0 && o.interval >= o.ttl) {
			return usagef("--interval %s: must be 0 or shorter than --ttl %s", o.interval, o.ttl)
		}
	}
	return nil
}

// benchNode is one node a benchmark talks to.
type benchNode struct {
	addr  string
	conns []*grpc.ClientConn
	pid   int // 0 when unknown
	// replica: a non-voting read replica.
	replica bool
}

// watchPlacement is what --watch-on means for a cluster with replicas
// read replicas: when not given, the replicas if there are any (they are
// there to serve watchers), else every node.
func watchPlacement(watchOn string, replicas int) string {
	if watchOn != "" {
		return watchOn
	}
	if replicas > 0 {
		return "replicas"
	}
	return "all"
}

// watchNodes returns the nodes that serve the watchers under placement
// (all, voters, leader, followers or replicas); followers are the voters
// other than the leader.
func watchNodes(nodes []*benchNode, leader *benchNode, placement string) []*benchNode {
	var on []*benchNode
	for _, n := range nodes {
		switch {
		case placement == "all",
			placement == "voters" && !n.replica,
			placement == "leader" && n == leader,
			placement == "followers" && !n.replica && n != leader,
			placement == "replicas" && n.replica:
			on = append(on, n)
		}
	}
	return on
}

// watchNodeLayout is one node of a watch run and the watchers it serves.
type watchNodeLayout struct {
	Addr string `json:"addr"`
	// Role: leader, follower (a voter) or replica.
	Role     string `json:"role"`
	Watchers int    `json:"watchers"`
}

// watchLayout spreads watchers over the conns connections of each node of
// on, as benchWatch opens them (watcher i on connection i mod conns*len(on),
// the connections taken node by node), and describes every node.
func watchLayout(nodes, on []*benchNode, leader *benchNode, watchers, conns int) []watchNodeLayout {
	per := map[*benchNode]int{}
	if len(on) > 0 {
		slots := conns * len(on)
		for slot := range slots {
			// Slot slot serves watchers slot, slot+slots, ...
			if slot < watchers {
				per[on[slot%len(on)]] += (watchers-slot-1)/slots + 1
			}
		}
	}
	var out []watchNodeLayout
	for _, n := range nodes {
		role := "follower"
		switch {
		case n.replica:
			role = "replica"
		case n == leader:
			role = "leader"
		}
		out = append(out, watchNodeLayout{Addr: n.addr, Role: role, Watchers: per[n]})
	}
	return out
}

// markReplicas asks the nodes who they are and the cluster which members
// do not vote, and marks the replicas among nodes. A node or a member list
// that does not answer leaves the nodes as voters.
func markReplicas(ctx context.Context, nodes []*benchNode) {
	ids := make([]string, len(nodes))
	var members *rosterv1.MembersResponse
	for i, n := range nodes {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cc := rosterv1.NewClusterClient(n.conns[0])
		if st, err := cc.Status(cctx, &rosterv1.StatusRequest{}); err == nil {
			ids[i] = st.GetNodeId()
		}
		if members == nil {
			if ms, err := cc.Members(cctx, &rosterv1.MembersRequest{}); err == nil {
				members = ms
			}
		}
		cancel()
	}
	nonVoter := map[string]bool{}
	for _, m := range members.GetMembers() {
		nonVoter[m.GetNodeId()] = !m.GetVoter()
	}
	for i, n := range nodes {
		n.replica = ids[i] != "" && nonVoter[ids[i]]
	}
}

// dialNodes opens conns connections to each address.
func dialNodes(addrs []string, conns int, pids []int, dial []grpc.DialOption) ([]*benchNode, func(), error) {
	var nodes []*benchNode
	closeAll := func() {
		for _, n := range nodes {
			for _, c := range n.conns {
				c.Close()
			}
		}
	}
	for i, addr := range addrs {
		n := &benchNode{addr: addr}
		if i < len(pids) {
			n.pid = pids[i]
		}
		nodes = append(nodes, n)
		for range conns {
			cc, err := grpc.NewClient(addr, dial...)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("connect to %s: %w", addr, err)
			}
			n.conns = append(n.conns, cc)
		}
	}
	return nodes, closeAll, nil
}

// findLeader asks every node for its status and returns the one that
// leads, or nil.
func findLeader(ctx context.Context, nodes []*benchNode) (*benchNode, *rosterv1.StatusResponse) {
	for _, n := range nodes {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := rosterv1.NewClusterClient(n.conns[0]).Status(cctx, &rosterv1.StatusRequest{})
		cancel()
		if err == nil && st.GetState() == "leader" {
			return n, st
		}
	}
	return nil, nil
}

// latencyMS returns the usual percentiles of sorted latencies.
func latencyMS(sorted []time.Duration) map[string]float64 {
	out := map[string]float64{}
	for _, q := range []struct {
		name string
		p    float64
	}{{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"max", 1}} {
		out[q.name] = percentile(sorted, q.p)
	}
	return out
}

func ms(v float64) string { return fmt.Sprintf("%.2fms", v) }

// realisticInstance is instance k of service as services really register:
// a few tags and metadata entries, a zone and a weight.
func realisticInstance(service string, k int, ttl time.Duration) *rosterv1.Instance {
	in := &rosterv1.Instance{
		Service: service,
		Id:      fmt.Sprintf("%s-%08d", service, k),
		Address: fmt.Sprintf("10.%d.%d.%d", (k>>16)&255, (k>>8)&255, k&255),
		Port:    8080,
		Tags:    []string{"v2", "http", "canary=false"},
		Metadata: map[string]string{
			"version": "2.14.3",
			"commit":  "4f9c2e1d7a",
			"region":  "eu-west-1",
			"team":    "payments",
		},
		Weight: 100,
		Zone:   fmt.Sprintf("eu-west-1%c", 'a'+k%3),
	}
	if ttl > 0 {
		in.Ttl = durationpb.New(ttl)
	}
	return in
}

// registerMany registers instances 0..n-1 made by mk with the given
// concurrency, round robin over stubs, printing progress on stderr.
func (a *app) registerMany(ctx context.Context, stubs []rosterv1.RegistryClient, n, clients int, mk func(k int) *rosterv1.Instance) error {
	return a.registerManyMarked(ctx, stubs, n, clients, mk, nil)
}

// registerManyMarked is registerMany that also keeps mark, when not nil,
// at a count k such that instances 0 to k-1 are all registered, and at n
// when it returns without error.
func (a *app) registerManyMarked(ctx context.Context, stubs []rosterv1.RegistryClient, n, clients int, mk func(k int) *rosterv1.Instance, mark *atomic.Int64) error {
	var next, done, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	stop := make(chan struct{})
	go a.benchProgress(start, "registered", &done, &failed, stop)
	defer close(stop)
	callers := min(clients, n)
	// current[c] is at most the instance caller c is registering, n once
	// it is done: every instance below the smallest is registered. A caller
	// publishes the counter's value before it takes the next instance
	// from it, so an instance taken and not yet published is never below
	// the caller's entry.
	current := make([]atomic.Int64, callers)
	if mark != nil {
		marked := make(chan struct{})
		defer func() { <-marked }()
		markStop := make(chan struct{})
		defer close(markStop)
		go func() {
			defer close(marked)
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				low := int64(n)
				for c := range current {
					low = min(low, current[c].Load())
				}
				mark.Store(low)
				select {
				case <-t.C:
				case <-markStop:
					return
				}
			}
		}()
	}
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer current[c].Store(int64(n))
			stub := stubs[c%len(stubs)]
			for ctx.Err() == nil {
				current[c].Store(next.Load())
				k := int(next.Add(1)) - 1
				if k >= n {
					return
				}
				current[c].Store(int64(k))
				// A registration that fails (an election, say) is tried
				// again a few times: it is an idempotent upsert.
				var err error
				for try := 0; try < 5; try++ {
					cctx, cancel := context.WithTimeout(ctx, a.timeout)
					_, err = stub.Register(cctx, &rosterv1.RegisterRequest{Instance: mk(k)})
					cancel()
					if err == nil || ctx.Err() != nil {
						break
					}
					failed.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return fmt.Errorf("register: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if mark != nil {
		mark.Store(int64(n))
	}
	return nil
}

// runOver reports whether a run bounded by duration (if positive) and
// count (if positive) is over after n units.
func runOver(start time.Time, o benchOptions, n int64) bool {
	if o.count > 0 && n >= int64(o.count) {
		return true
	}
	return o.duration > 0 && time.Since(start) >= o.duration
}

// watchResult is what roster bench watch reports.
type watchResult struct {
	Op      string   `json:"op"`
	Addrs   []string `json:"addrs"`
	WatchOn string   `json:"watch_on"`
	// Voters and Replicas count the nodes; Layout gives each node's role
	// and how many watchers it serves.
	Voters   int               `json:"voters"`
	Replicas int               `json:"replicas"`
	Layout   []watchNodeLayout `json:"layout"`
	Watchers int               `json:"watchers"`
	Conns    int               `json:"conns_per_addr"`
	// OwnStreams: each watcher had a Watch stream of its own, instead of
	// sharing its client's WatchMany stream.
	OwnStreams bool    `json:"own_streams"`
	Writer     string  `json:"writer_addr"`
	Ops        int64   `json:"ops"`
	Errors     int64   `json:"errors"`
	DurationS  float64 `json:"duration_s"`
	// OpsPerS is writes per second, each awaited by every watcher.
	OpsPerS float64 `json:"ops_per_s"`
	// Deliveries counts (watcher, write) pairs received.
	Deliveries int64 `json:"deliveries"`
	// BeforeAck counts deliveries that arrived before the writer had its
	// acknowledgement; they count as 0 ms.
	BeforeAck int64 `json:"before_ack"`
	// LatencyMS: from a write's acknowledgement to its arrival at one
	// watcher, over every delivery.
	LatencyMS map[string]float64 `json:"latency_ms"`
	// LastWatcherMS: from a write's acknowledgement to its arrival at the
	// last of the watchers, over every write.
	LastWatcherMS map[string]float64 `json:"last_watcher_ms"`
	// LastFromSendMS: from the sending of a write to its arrival at the
	// last of the watchers, over every write. It holds the write's own
	// latency too, so it compares layouts fairly when the watchers a node
	// serves slow the acknowledgements it gives.
	LastFromSendMS map[string]float64 `json:"last_watcher_from_send_ms"`
	// WriteMS: the writes' own latency.
	WriteMS        map[string]float64 `json:"write_latency_ms"`
	WatchersFailed int64              `json:"watchers_failed"`
	FirstError     string             `json:"first_error,omitempty"`
}

// benchWatcher is one watch stream and what it received.
type benchWatcher struct {
	seen atomic.Uint64
	got  []watchArrival
}

type watchArrival struct {
	rev uint64
	at  time.Time
}

func (a *app) benchWatch(ctx context.Context, o benchOptions) error {
	target, err := a.benchTarget(ctx, o, nil)
	if err != nil {
		return err
	}
	defer target.close()
	nodes := target.nodes
	if target.local == nil {
		markReplicas(ctx, nodes)
	}
	leader, _ := findLeader(ctx, nodes)
	writer := nodes[0]
	if leader != nil {
		writer = leader
	}
	replicas := 0
	for _, n := range nodes {
		if n.replica {
			replicas++
		}
	}
	placement := watchPlacement(o.watchOn, replicas)
	on := watchNodes(nodes, leader, placement)
	if len(on) == 0 {
		return fmt.Errorf("--watch-on %s: no such node among --addr (leader found: %v, replicas: %d)", placement, leader != nil, replicas)
	}
	layout := watchLayout(nodes, on, leader, o.watchers, o.conns)
	// The watchers go through the Go SDK, one client per connection, so
	// they watch as an application does: by default the watches of one
	// client share a WatchMany stream.
	copts, err := a.clientOptions()
	if err != nil {
		return err
	}
	if a.token != "" {
		copts = append(copts, client.WithToken(a.token))
	}
	if o.ownStreams {
		copts = append(copts, client.WithoutWatchMany())
	}
	var clients []*client.Client
	for i := 0; i < o.conns; i++ {
		for _, n := range on {
			c, err := client.New(ctx, []string{n.addr}, copts...)
			if err != nil {
				return fmt.Errorf("connect to %s: %w", n.addr, err)
			}
			defer c.Close()
			clients = append(clients, c)
		}
	}

	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	notify := make(chan struct{}, 1)
	watchers := make([]*benchWatcher, o.watchers)
	var watchersFailed atomic.Int64
	var watchErr atomic.Value
	var wg sync.WaitGroup
	for i := range watchers {
		w := &benchWatcher{}
		watchers[i] = w
		watch := clients[i%len(clients)].Watch(wctx, &rosterv1.WatchRequest{Service: o.service, OmitPrevInstance: !o.prevInstance})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				// A watcher that ended waits for nothing more.
				w.seen.Store(^uint64(0))
				select {
				case notify <- struct{}{}:
				default:
				}
			}()
			for resp, err := range watch {
				if err != nil {
					if wctx.Err() == nil {
						watchersFailed.Add(1)
						watchErr.CompareAndSwap(nil, err.Error())
					}
					return
				}
				now := time.Now()
				top := resp.GetRevision()
				for _, ev := range resp.GetEvents() {
					w.got = append(w.got, watchArrival{ev.GetRevision(), now})
					top = max(top, ev.GetRevision())
				}
				if top > w.seen.Load() {
					w.seen.Store(top)
					select {
					case notify <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	stub := rosterv1.NewRegistryClient(writer.conns[0])
	// waitAll waits until every watcher has seen rev.
	waitAll := func(rev uint64) bool {
		deadline := time.NewTimer(30 * time.Second)
		defer deadline.Stop()
		for {
			all := true
			for _, w := range watchers {
				if w.seen.Load() < rev {
					all = false
					break
				}
			}
			if all {
				return true
			}
			select {
			case <-notify:
			case <-deadline.C:
				return false
			case <-ctx.Done():
				return false
			}
		}
	}
	write := func(n int) (uint64, time.Time, error) {
		cctx, cancel := context.WithTimeout(ctx, a.timeout)
		defer cancel()
		t0 := time.Now()
		resp, err := stub.Register(cctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
			Service: o.service, Id: fmt.Sprintf("bench-%d", n%o.keys), Address: "10.0.0.1", Port: uint32(n%65535 + 1)}})
		return resp.GetRevision(), t0, err
	}
	// A first write, awaited by every watcher, proves every stream is live.
	fmt.Fprintf(a.stderr, "bench: %d watchers on the %s: %s; writer %s\n", o.watchers, placement, describeLayout(layout), writer.addr)
	rev, _, err := write(0)
	if err != nil {
		return fmt.Errorf("first write: %w", err)
	}
	if !waitAll(rev) {
		return fmt.Errorf("not every watcher had the first write within 30s")
	}
	// A run with fewer watchers than asked measures something else.
	if n := watchersFailed.Load(); n > 0 {
		e, _ := watchErr.Load().(string)
		return fmt.Errorf("%d of %d watch streams failed before the run (first: %s); a node allows --max-watchers-per-connection streams per connection: raise --conns", n, o.watchers, e)
	}

	var (
		done, failed atomic.Int64
		acks         = map[uint64]time.Time{}
		sent         = map[uint64]time.Time{}
		writeLat     []time.Duration
		firstErr     string
	)
	start := time.Now()
	stop := make(chan struct{})
	go a.benchProgress(start, "writes", &done, &failed, stop)
	for n := 1; !runOver(start, o, done.Load()+failed.Load()) && ctx.Err() == nil; n++ {
		rev, t0, err := write(n)
		ack := time.Now()
		d := ack.Sub(t0)
		if err != nil {
			failed.Add(1)
			if firstErr == "" {
				firstErr = status.Convert(err).Message()
			}
			continue
		}
		acks[rev] = ack
		sent[rev] = t0
		writeLat = append(writeLat, d)
		if !waitAll(rev) {
			failed.Add(1)
			if firstErr == "" {
				firstErr = fmt.Sprintf("revision %d did not reach every watcher within 30s", rev)
			}
			continue
		}
		done.Add(1)
	}
	close(stop)
	elapsed := time.Since(start)
	cancelWatch()
	wg.Wait()

	var deliveries, beforeAck int64
	var each []time.Duration
	last := map[uint64]time.Duration{}
	lastFromSend := map[uint64]time.Duration{}
	for _, w := range watchers {
		for _, g := range w.got {
			ack, ok := acks[g.rev]
			if !ok {
				continue
			}
			deliveries++
			d := g.at.Sub(ack)
			if d < 0 {
				beforeAck++
				d = 0
			}
			each = append(each, d)
			last[g.rev] = max(last[g.rev], d)
			lastFromSend[g.rev] = max(lastFromSend[g.rev], g.at.Sub(sent[g.rev]))
		}
	}
	var lasts, fromSend []time.Duration
	for _, d := range last {
		lasts = append(lasts, d)
	}
	for _, d := range lastFromSend {
		fromSend = append(fromSend, d)
	}
	slices.Sort(fromSend)
	slices.Sort(each)
	slices.Sort(lasts)
	slices.Sort(writeLat)
	res := watchResult{
		Op: "watch", Addrs: target.addrs(), WatchOn: placement, Voters: len(nodes) - replicas, Replicas: replicas, Layout: layout,
		Watchers: o.watchers, Conns: o.conns, OwnStreams: o.ownStreams, Writer: writer.addr,
		Ops: done.Load(), Errors: failed.Load(), DurationS: elapsed.Seconds(),
		OpsPerS: float64(done.Load()) / elapsed.Seconds(), Deliveries: deliveries, BeforeAck: beforeAck,
		LatencyMS: latencyMS(each), LastWatcherMS: latencyMS(lasts), LastFromSendMS: latencyMS(fromSend), WriteMS: latencyMS(writeLat),
		WatchersFailed: watchersFailed.Load(), FirstError: firstErr,
	}
	if e, ok := watchErr.Load().(string); ok && res.FirstError == "" {
		res.FirstError = e
	}
	if a.json() {
		return writeJSON(a.stdout, res)
	}
	t := newTable(a.stdout, "OP", "VOTERS", "REPLICAS", "WATCHERS", "ON", "WRITES", "ERRORS", "WRITES/S", "DELIVERY P50", "P99", "LAST WATCHER P50", "P99", "SEND TO LAST P50", "P99", "WRITE P50")
	t.row("watch", fmt.Sprint(res.Voters), fmt.Sprint(res.Replicas), fmt.Sprint(o.watchers), placement, fmt.Sprint(res.Ops), fmt.Sprint(res.Errors), fmt.Sprintf("%.0f", res.OpsPerS),
		ms(res.LatencyMS["p50"]), ms(res.LatencyMS["p99"]), ms(res.LastWatcherMS["p50"]), ms(res.LastWatcherMS["p99"]),
		ms(res.LastFromSendMS["p50"]), ms(res.LastFromSendMS["p99"]), ms(res.WriteMS["p50"]))
	if err := t.flush(); err != nil {
		return err
	}
	if res.FirstError != "" {
		fmt.Fprintf(a.stdout, "first error: %s\n", res.FirstError)
	}
	return nil
}

// describeLayout is the layout in a line: each node's role, address and
// watchers.
func describeLayout(layout []watchNodeLayout) string {
	var parts []string
	for _, l := range layout {
		parts = append(parts, fmt.Sprintf("%s %s %d", l.Role, l.Addr, l.Watchers))
	}
	return strings.Join(parts, ", ")
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// benchOptions are the flags of roster bench.
type benchOptions struct {
	clients     int
	conns       int
	duration    time.Duration
	count       int
	keys        int
	service     string
	consistency string
	ttl         time.Duration

	watchers     int
	prevInstance bool
	ownStreams   bool
	watchOn      string
	rosterd      string
	rosterdFlags []string
	rounds       int
	instances    int
	streams      int
	interval     time.Duration
	batch        int
	local        bool
	replicas     int
	pids         []int
}

// benchResult is what roster bench reports; -o json prints it as is.
type benchResult struct {
	Op           string             `json:"op"`
	Addrs        []string           `json:"addrs"`
	Clients      int                `json:"clients"`
	Conns        int                `json:"conns_per_addr"`
	Keys         int                `json:"keys"`
	Ops          int64              `json:"ops"`
	Errors       int64              `json:"errors"`
	ErrorsByCode map[string]int64   `json:"errors_by_code"`
	FirstErrors  map[string]string  `json:"first_errors"`
	DurationS    float64            `json:"duration_s"`
	OpsPerS      float64            `json:"ops_per_s"`
	LatencyMS    map[string]float64 `json:"latency_ms"`
	CPUs         int                `json:"client_cpus"`
}

func (a *app) benchCommand() *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench register|get|heartbeat|watch|failover|memory|keepalive",
		Short: "Measure throughput and latency of one kind of call",
		Long: `bench runs --clients concurrent callers, each with one call in flight,
spread over every --addr (each address gets --conns connections), for
--duration or until --count calls are done, printing progress every second
on stderr. It reports calls per second and latency percentiles of the
successful calls; errors are counted by code.

  register   upserts instances bench-0..bench-(keys-1) of --service, with a
             changing port so every call is a real write through Raft
  get        reads --service at --consistency (registers --keys instances first)
  heartbeat  renews TTL leases of --keys instances (registered first with --ttl);
             heartbeats never write to Raft
  watch      --watchers streams spread evenly over the nodes --watch-on names
             (--conns connections to each) and one writer to the leader;
             each write is awaited by every watcher. Reports delivery latency
             from the write's acknowledgement to each watcher, and to the last
             watcher of each write (also timed from the write's sending, which
             counts a slow acknowledgement), and the layout: voters, replicas and
             the watchers on each node. --watch-on: replicas (the non-voting
             members), all, voters, leader or followers (voters other than
             the leader); by default replicas when the cluster has any, else
             all. With --local, --replicas N starts N read replicas
             (rosterd --join --non-voter) beside the 3 voters
  failover   starts its own local cluster of --rosterd processes, then
             --rounds times: kill -9 the leader, time until the next write
             succeeds (writes go to the survivors), restart the killed node
  memory     resident memory (anon RSS) of each node before and after
             registering --instances instances with realistic metadata, and
             the time a restarted node takes to restore that state; of a
             local cluster it starts with --local, or of --pids (one per
             --addr, in order) on this machine. With --local also each
             node's live Go heap, read after a forced collection: the anon
             RSS says as much about when a node last collected as about
             what it keeps
  keepalive  registers --instances instances with --ttl, then renews them
             over --streams KeepAlive streams for --duration: heartbeats per
             second, the Raft entries they caused (the leader's applied index
             delta) and the leader's CPU (with --local or --pids). With
             --interval each instance is renewed once per interval from its
             registration on, and the leader's instance count before and
             after the window shows whether any lease expired. --batch N
             renews N instances a message, as a Session keeping many
             instances alive does

Calls go straight to the given nodes (a follower forwards writes to the
leader) without client-side retries, so every call is measured as sent.

A local cluster's rosterd processes are killed when the run ends, fails or
is interrupted (Ctrl-C, SIGTERM), and on Linux also when roster itself is
killed.`,
		Example: `  roster --addr 127.0.0.1:7420,127.0.0.1:7430,127.0.0.1:7440 bench register --clients 256 --duration 20s
  roster bench get --consistency stale --clients 64 -o json
  roster bench watch --local --replicas 2 --watchers 20000 --conns 16 --count 300`,
		Args: exactArgs("register|get|heartbeat|watch|failover|memory|keepalive"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "register", "get", "heartbeat", "watch", "failover", "memory", "keepalive":
			default:
				return usagef("bench %q: choose register, get, heartbeat, watch, failover, memory or keepalive", args[0])
			}
			if o.clients < 1 || o.clients > 100_000 {
				return usagef("--clients %d: must be 1-100000", o.clients)
			}
			if o.conns < 1 || o.conns > 1000 {
				return usagef("--conns %d: must be 1-1000", o.conns)
			}
			if o.keys < 1 || o.keys > 1_000_000 {
				return usagef("--keys %d: must be 1-1000000", o.keys)
			}
			if o.duration <= 0 && o.count <= 0 {
				return usagef("give a positive --duration or --count")
			}
			cons, err := parseConsistency(o.consistency)
			if err != nil {
				return err
			}
			if err := o.checkModes(args[0]); err != nil {
				return err
			}
			ctx := cmd.Context()
			if o.local || args[0] == "failover" {
				// An interrupt ends the run through its deferred stops, so
				// no node it started outlives it.
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
			}
			switch args[0] {
			case "watch":
				return a.benchWatch(ctx, o)
			case "failover":
				return a.benchFailover(ctx, o)
			case "memory":
				return a.benchMemory(ctx, o)
			case "keepalive":
				return a.benchKeepAlive(ctx, o)
			}
			if o.local {
				// A local cluster of its own: the calls go to its leader.
				target, err := a.benchTarget(ctx, o, nil)
				if err != nil {
					return err
				}
				defer target.close()
				leader, _ := findLeader(ctx, target.nodes)
				if leader == nil {
					return fmt.Errorf("the local cluster has no leader")
				}
				a.addrs = []string{leader.addr}
			}
			return a.bench(ctx, args[0], o, cons)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.clients, "clients", 64, "concurrent callers, each with one call in flight")
	f.IntVar(&o.conns, "conns", 1, "gRPC connections per address")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long to start calls for (0 with --count: until count); calls still out at the end finish, within --timeout")
	f.IntVar(&o.count, "count", 0, "stop after this many calls (0: run for --duration)")
	f.IntVar(&o.keys, "keys", 1000, "distinct instances the calls touch")
	f.StringVar(&o.service, "service", "bench", "service the benchmark writes and reads")
	f.StringVar(&o.consistency, "consistency", "linearizable", "for get: linearizable or stale")
	f.DurationVar(&o.ttl, "ttl", 30*time.Second, "for heartbeat and keepalive: the instances' TTL")
	f.IntVar(&o.watchers, "watchers", 100, "for watch: watch streams")
	f.BoolVar(&o.prevInstance, "prev-instance", false, "for watch: the watchers ask for each event's prev_instance too (as a client that does not set omit_prev_instance); off, they ask for the new state only, as the Go SDK's cache does")
	f.BoolVar(&o.ownStreams, "own-streams", false, "for watch: each watcher opens a Watch stream of its own; off, the watchers of one connection share one WatchMany stream, as the Go SDK's watches do")
	f.StringVar(&o.watchOn, "watch-on", "", "for watch: which nodes serve the watchers: replicas, all, voters, leader or followers (default: replicas when the cluster has read replicas, else all)")
	f.StringVar(&o.rosterd, "rosterd", "", "for a local cluster: the rosterd binary (default: beside roster, else bin/rosterd, else on PATH)")
	f.StringArrayVar(&o.rosterdFlags, "rosterd-flag", nil, "for a local cluster: an extra rosterd flag for every node, e.g. --rosterd-flag=--raft-timeout-scale=2 (repeatable). "+
		"A local cluster runs with the per-client limits off (--rate-limit=0 and the like: every bench client is 127.0.0.1); set them here to measure them")
	f.IntVar(&o.rounds, "rounds", 5, "for failover: how many leaders to kill")
	f.IntVar(&o.instances, "instances", 10000, "for memory and keepalive: instances to register")
	f.IntVar(&o.streams, "streams", 16, "for keepalive: KeepAlive streams, spread over every --addr")
	f.IntVar(&o.batch, "batch", 1, "for keepalive: instances renewed by one KeepAlive message (1-1000; a client SDK Session sends up to 500)")
	f.DurationVar(&o.interval, "interval", 0, "for keepalive: renew each instance once per interval, from its registration on, as a client keeping it alive does "+
		"(e.g. 10s for a 30s TTL), and report whether every instance stayed; 0: renew as fast as the streams allow")
	f.BoolVar(&o.local, "local", false, "start a local 3-node cluster of --rosterd processes instead of using --addr (register, get and heartbeat then call its leader)")
	f.IntVar(&o.replicas, "replicas", 0, "for watch with --local: also start this many non-voting read replicas (rosterd --join --non-voter); the watchers go to them unless --watch-on says otherwise")
	f.IntSliceVar(&o.pids, "pids", nil, "for memory and keepalive without --local: the process ids of the --addr nodes on this machine, in the same order")
	return cmd
}

func parseConsistency(s string) (rosterv1.Consistency, error) {
	switch s {
	case "linearizable", "":
		return rosterv1.Consistency_CONSISTENCY_LINEARIZABLE, nil
	case "stale":
		return rosterv1.Consistency_CONSISTENCY_STALE, nil
	}
	return 0, usagef("--consistency %q: must be linearizable or stale", s)
}

func (a *app) bench(ctx context.Context, op string, o benchOptions, cons rosterv1.Consistency) error {
	dial, err := a.dialOptions()
	if err != nil {
		return err
	}
	var stubs []rosterv1.RegistryClient
	for _, addr := range a.addrs {
		for range o.conns {
			cc, err := grpc.NewClient(addr, dial...)
			if err != nil {
				return fmt.Errorf("connect to %s: %w", addr, err)
			}
			defer cc.Close()
			stubs = append(stubs, rosterv1.NewRegistryClient(cc))
		}
	}
	inst := func(k, port int) *rosterv1.Instance {
		i := &rosterv1.Instance{Service: o.service, Id: fmt.Sprintf("bench-%d", k), Address: "10.0.0.1", Port: uint32(port%65535 + 1)}
		if op == "heartbeat" {
			i.Ttl = durationpb.New(o.ttl)
		}
		return i
	}
	if op != "register" {
		fmt.Fprintf(a.stderr, "bench: registering %d instances of %s first\n", o.keys, o.service)
		for k := range o.keys {
			cctx, cancel := context.WithTimeout(ctx, a.timeout)
			_, err := stubs[k%len(stubs)].Register(cctx, &rosterv1.RegisterRequest{Instance: inst(k, k)})
			cancel()
			if err != nil {
				return fmt.Errorf("prepare: %w", err)
			}
		}
	}
	call := func(ctx context.Context, stub rosterv1.RegistryClient, n int) error {
		k := n % o.keys
		var err error
		switch op {
		case "register":
			_, err = stub.Register(ctx, &rosterv1.RegisterRequest{Instance: inst(k, n)})
		case "get":
			_, err = stub.GetService(ctx, &rosterv1.GetServiceRequest{Service: o.service, Read: &rosterv1.ReadOptions{Consistency: cons}})
		case "heartbeat":
			_, err = stub.Heartbeat(ctx, &rosterv1.HeartbeatRequest{Service: o.service, Id: fmt.Sprintf("bench-%d", k)})
		}
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var (
		seq, done, failed atomic.Int64
		mu                sync.Mutex
		byCode            = map[string]int64{}
		firstErr          = map[string]string{}
		lat               = make([][]time.Duration, o.clients)
		wg                sync.WaitGroup
	)
	start := time.Now()
	for c := range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stub := stubs[c%len(stubs)]
			// The run is over at its deadline, even before the context's
			// timer marks it done: no call starts after it.
			over := func() bool {
				if runCtx.Err() != nil {
					return true
				}
				d, ok := runCtx.Deadline()
				return ok && !time.Now().Before(d)
			}
			for !over() {
				n := int(seq.Add(1))
				if o.count > 0 && n > o.count {
					return
				}
				// A call has --timeout of its own, not what is left of the
				// run: one still out when the run ends finishes and counts.
				// Tied to the run's end, its deadline would arrive with the
				// run's, and a server that answers a little before a
				// caller's deadline (a write's outcome unknown, say) would
				// have been counted as failing.
				cctx, ccancel := context.WithTimeout(ctx, a.timeout)
				t0 := time.Now()
				err := call(cctx, stub, n)
				d := time.Since(t0)
				ccancel()
				if err != nil {
					if ctx.Err() != nil {
						return // interrupted (Ctrl-C): not an error of the server
					}
					failed.Add(1)
					mu.Lock()
					code := status.Code(err).String()
					if byCode[code]++; byCode[code] == 1 {
						firstErr[code] = status.Convert(err).Message()
					}
					mu.Unlock()
					continue
				}
				done.Add(1)
				lat[c] = append(lat[c], d)
			}
		}()
	}
	stop := make(chan struct{})
	go a.benchProgress(start, "calls", &done, &failed, stop)
	wg.Wait()
	close(stop)
	elapsed := time.Since(start)

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	res := benchResult{
		Op: op, Addrs: a.addrs, Clients: o.clients, Conns: o.conns, Keys: o.keys,
		Ops: done.Load(), Errors: failed.Load(), ErrorsByCode: byCode, FirstErrors: firstErr,
		DurationS: elapsed.Seconds(), OpsPerS: float64(done.Load()) / elapsed.Seconds(),
		LatencyMS: map[string]float64{}, CPUs: runtime.NumCPU(),
	}
	for _, q := range []struct {
		name string
		p    float64
	}{{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"p999", 0.999}, {"max", 1}} {
		res.LatencyMS[q.name] = percentile(all, q.p)
	}
	if a.json() {
		return writeJSON(a.stdout, res)
	}
	t := newTable(a.stdout, "OP", "CLIENTS", "CALLS", "ERRORS", "SECONDS", "CALLS/S", "P50", "P90", "P99", "P99.9", "MAX")
	ms := func(v float64) string { return fmt.Sprintf("%.2fms", v) }
	t.row(op, fmt.Sprint(o.clients), fmt.Sprint(res.Ops), fmt.Sprint(res.Errors), fmt.Sprintf("%.1f", res.DurationS),
		fmt.Sprintf("%.0f", res.OpsPerS), ms(res.LatencyMS["p50"]), ms(res.LatencyMS["p90"]), ms(res.LatencyMS["p99"]),
		ms(res.LatencyMS["p999"]), ms(res.LatencyMS["max"]))
	if err := t.flush(); err != nil {
		return err
	}
	for code, n := range byCode {
		fmt.Fprintf(a.stdout, "errors %s: %d (first: %s)\n", code, n, firstErr[code])
	}
	return nil
}

// percentile of sorted latencies, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

// benchProgress prints one line a second on stderr until stop closes:
// elapsed time, how many units are done, the rate and the errors.
func (a *app) benchProgress(start time.Time, unit string, done, failed *atomic.Int64, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := int64(0)
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			n := done.Load()
			fmt.Fprintf(a.stderr, "bench: %4.0fs  %d %s  %d/s  %d errors\n", time.Since(start).Seconds(), n, unit, n-last, failed.Load())
			last = n
		}
	}
}

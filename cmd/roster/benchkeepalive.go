package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// keepAliveResult is what roster bench keepalive reports.
type keepAliveResult struct {
	Op        string   `json:"op"`
	Addrs     []string `json:"addrs"`
	Instances int      `json:"instances"`
	Streams   int      `json:"streams"`
	// Batch: instances renewed by one message.
	Batch int `json:"batch"`
	// Ops: heartbeats (instances renewed) answered without error.
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	DurationS   float64 `json:"duration_s"`
	OpsPerS     float64 `json:"ops_per_s"`
	RaftEntries uint64  `json:"raft_entries"`
	// LeaderCPU: cores the leader process used on average (-1: unknown).
	LeaderCPU  float64 `json:"leader_cpu_cores"`
	LeaderPID  int     `json:"leader_pid"`
	FirstError string  `json:"first_error,omitempty"`
	// With --interval: each instance renewed once per IntervalS, from the
	// start of registration on; the measured window starts once every
	// instance is registered. InstancesBefore/After are the leader's
	// instance count at the window's start and end (an expired lease
	// removes its instance), MaxLagMS how far the renewals fell behind
	// their schedule at worst.
	IntervalS       float64 `json:"interval_s,omitempty"`
	InstancesBefore uint64  `json:"instances_before"`
	InstancesAfter  uint64  `json:"instances_after"`
	LeasesAfter     uint64  `json:"leases_after"`
	MaxLagMS        float64 `json:"max_lag_ms,omitempty"`
}

// benchKeepAliveWindow bounds a stream's heartbeats in flight.
const benchKeepAliveWindow = 512

func (a *app) benchKeepAlive(ctx context.Context, o benchOptions) error {
	target, err := a.benchTarget(ctx, o, nil)
	if err != nil {
		return err
	}
	defer target.close()
	var stubs []rosterv1.RegistryClient
	for i := 0; i < o.conns; i++ {
		for _, n := range target.nodes {
			stubs = append(stubs, rosterv1.NewRegistryClient(n.conns[i]))
		}
	}
	mk := func(k int) *rosterv1.Instance { return realisticInstance(o.service, k, o.ttl) }
	paced := o.interval > 0
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// registered: instances below it are registered and may be renewed.
	var registered atomic.Int64
	var done, failed atomic.Int64
	var firstErr atomic.Value
	var lagNS atomic.Int64
	var measuring atomic.Bool
	var windowStart time.Time
	over := func() bool {
		return runCtx.Err() != nil || (measuring.Load() && runOver(windowStart, o, done.Load()+failed.Load()))
	}
	var wg sync.WaitGroup
	startStreams := func() error {
		schedule := time.Now()
		// A stream beyond the instances would have none to renew.
		for s := range min(o.streams, o.instances) {
			stream, err := stubs[s%len(stubs)].KeepAlive(runCtx)
			if err != nil {
				return fmt.Errorf("keepalive: %w", err)
			}
			// window holds the instance count of each message in flight.
			window := make(chan int, benchKeepAliveWindow)
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer stream.CloseSend()
				// This stream's instances are s, s+streams, ...: mine of
				// them, each renewed once per interval when paced.
				mine := (o.instances - s + o.streams - 1) / o.streams
				for c, j := 0, 0; !over(); {
					if j >= mine {
						c, j = c+1, 0
					}
					// This message renews instances first..j-1 of the cycle.
					first := j
					j = min(j+o.batch, mine)
					if paced {
						// first/mine of the way through cycle c, without
						// overflowing first*interval.
						offset := time.Duration(float64(o.interval) * float64(first) / float64(mine))
						due := schedule.Add(time.Duration(c)*o.interval + offset)
						if d := time.Until(due); d > time.Millisecond {
							select {
							case <-time.After(d):
							case <-runCtx.Done():
								return
							}
						} else if measuring.Load() {
							for lag := int64(-d); ; {
								prev := lagNS.Load()
								if lag <= prev || lagNS.CompareAndSwap(prev, lag) {
									break
								}
							}
						}
					}
					req := &rosterv1.HeartbeatRequest{}
					for jj := first; jj < j; jj++ {
						k := s + jj*o.streams
						if paced && int64(k) >= registered.Load() {
							continue
						}
						in := mk(k)
						if o.batch == 1 {
							req.Service, req.Id = in.Service, in.Id
						} else {
							req.Instances = append(req.Instances, &rosterv1.InstanceRef{Service: in.Service, Id: in.Id})
						}
					}
					if req.Id == "" && len(req.Instances) == 0 {
						continue
					}
					select {
					case window <- max(1, len(req.Instances)):
					case <-runCtx.Done():
						return
					}
					if err := stream.Send(req); err != nil {
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				for {
					resp, err := stream.Recv()
					if err != nil {
						if runCtx.Err() == nil && !over() {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, status.Convert(err).Message())
						}
						return
					}
					n := <-window
					if resp.GetError() != "" {
						failed.Add(int64(n))
						firstErr.CompareAndSwap(nil, resp.GetError())
						continue
					}
					if len(resp.GetResults()) == 0 {
						done.Add(1)
						continue
					}
					var ok int64
					for _, r := range resp.GetResults() {
						if r.GetError() != "" {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, r.GetError())
						} else {
							ok++
						}
					}
					done.Add(ok)
				}
			}()
		}
		return nil
	}
	if paced {
		fmt.Fprintf(a.stderr, "bench: registering %d instances with TTL %s, each renewed every %s from its registration on\n", o.instances, o.ttl, o.interval)
		if err := startStreams(); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.stderr, "bench: registering %d instances with TTL %s\n", o.instances, o.ttl)
	}
	if err := a.registerManyMarked(ctx, stubs, o.instances, o.clients, mk, &registered); err != nil {
		return err
	}
	leader, before := findLeader(ctx, target.nodes)
	if leader == nil {
		return fmt.Errorf("no node says it leads")
	}
	res := keepAliveResult{Op: "keepalive", Addrs: target.addrs(), Instances: o.instances, Streams: o.streams, Batch: o.batch, LeaderCPU: -1, LeaderPID: leader.pid,
		IntervalS: o.interval.Seconds(), InstancesBefore: before.GetInstances()}
	var cpu0 time.Duration
	if leader.pid > 0 {
		if cpu0, err = readProcCPU(leader.pid); err != nil {
			return err
		}
	}
	if paced {
		fmt.Fprintf(a.stderr, "bench: all registered; measuring for %s\n", o.duration)
	}
	// The window: counters start from zero here.
	done.Store(0)
	failed.Store(0)
	windowStart = time.Now()
	measuring.Store(true)
	if !paced {
		if err := startStreams(); err != nil {
			return err
		}
	}
	stop := make(chan struct{})
	go a.benchProgress(windowStart, "heartbeats", &done, &failed, stop)
	for !over() {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(windowStart)
	var cpu1 time.Duration
	if leader.pid > 0 {
		cpu1, _ = readProcCPU(leader.pid)
	}
	res.Ops, res.Errors, res.DurationS = done.Load(), failed.Load(), elapsed.Seconds()
	cancel()
	wg.Wait()
	close(stop)
	after, err := rosterv1.NewClusterClient(leader.conns[0]).Status(ctx, &rosterv1.StatusRequest{})
	if err != nil {
		return fmt.Errorf("status of the leader after the run: %w", err)
	}
	res.OpsPerS = float64(res.Ops) / elapsed.Seconds()
	res.RaftEntries = after.GetAppliedIndex() - before.GetAppliedIndex()
	res.InstancesAfter, res.LeasesAfter = after.GetInstances(), after.GetLeases()
	res.MaxLagMS = float64(lagNS.Load()) / 1e6
	if leader.pid > 0 {
		res.LeaderCPU = float64(cpu1-cpu0) / float64(elapsed)
	}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	if a.json() {
		return writeJSON(a.stdout, res)
	}
	t := newTable(a.stdout, "OP", "INSTANCES", "STREAMS", "BATCH", "HEARTBEATS", "ERRORS", "SECONDS", "HEARTBEATS/S", "RAFT ENTRIES", "LEADER CPU", "INSTANCES AFTER")
	cpu := "unknown"
	if res.LeaderCPU >= 0 {
		cpu = fmt.Sprintf("%.2f cores", res.LeaderCPU)
	}
	t.row("keepalive", fmt.Sprint(o.instances), fmt.Sprint(o.streams), fmt.Sprint(o.batch), fmt.Sprint(res.Ops), fmt.Sprint(res.Errors),
		fmt.Sprintf("%.1f", res.DurationS), fmt.Sprintf("%.0f", res.OpsPerS), fmt.Sprint(res.RaftEntries), cpu, fmt.Sprint(res.InstancesAfter))
	if err := t.flush(); err != nil {
		return err
	}
	if paced {
		fmt.Fprintf(a.stdout, "each instance renewed every %s; renewals behind schedule by %.0f ms at most\n", o.interval, res.MaxLagMS)
	}
	if res.FirstError != "" {
		fmt.Fprintf(a.stdout, "first error: %s\n", res.FirstError)
	}
	return nil
}

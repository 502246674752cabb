package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-registry/roster/internal/liveheap"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// benchTarget is the cluster a memory or keepalive run measures: a local
// one it started, or --addr with optional --pids.
type benchTarget struct {
	nodes []*benchNode
	local *localCluster
	close func()
}

func (a *app) benchTarget(ctx context.Context, o benchOptions, extra []string) (*benchTarget, error) {
	addrs, pids := a.addrs, o.pids
	var lc *localCluster
	if o.local {
		rosterd, err := findRosterd(o.rosterd)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(a.stderr, "bench: starting a local 3-node cluster of %s\n", rosterd)
		flags := append(extra, o.rosterdFlags...)
		lc, err = startLocalCluster(ctx, rosterd, 3, flags)
		if err != nil {
			return nil, err
		}
		if o.replicas > 0 {
			fmt.Fprintf(a.stderr, "bench: starting %d read replica(s) (--join --non-voter)\n", o.replicas)
			if err := lc.addReplicas(ctx, o.replicas, flags); err != nil {
				lc.stop()
				return nil, err
			}
		}
		addrs, pids = lc.addrs(), nil
		for _, nd := range lc.nodes {
			pids = append(pids, nd.pid())
		}
	} else if len(pids) > 0 && len(pids) != len(addrs) {
		return nil, usagef("--pids gives %d process ids for %d --addr nodes", len(pids), len(addrs))
	}
	// A local cluster the bench starts is plaintext and has no ACLs; a
	// named one is reached with the command's TLS and token flags.
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if lc == nil {
		var err error
		if dial, err = a.dialOptions(); err != nil {
			return nil, err
		}
	}
	nodes, closeNodes, err := dialNodes(addrs, o.conns, pids, dial)
	if err != nil {
		if lc != nil {
			lc.stop()
		}
		return nil, err
	}
	if lc != nil {
		for i, nd := range lc.nodes {
			nodes[i].replica = nd.replica
		}
	}
	return &benchTarget{nodes: nodes, local: lc, close: func() {
		closeNodes()
		if lc != nil {
			lc.stop()
		}
	}}, nil
}

func (t *benchTarget) addrs() []string {
	var out []string
	for _, n := range t.nodes {
		out = append(out, n.addr)
	}
	return out
}

// nodeMemory is one node's memory in roster bench memory.
type nodeMemory struct {
	Addr   string     `json:"addr"`
	PID    int        `json:"pid"`
	Leader bool       `json:"leader"`
	Before procMemory `json:"before"`
	After  procMemory `json:"after"`
	// BytesPerInstance: the anon RSS delta divided by the instances.
	BytesPerInstance float64 `json:"bytes_per_instance"`
	// HeapBefore, HeapAfter: the live Go heap right after a forced
	// collection (local clusters only; 0 otherwise).
	HeapBefore int64 `json:"live_heap_before_bytes,omitempty"`
	HeapAfter  int64 `json:"live_heap_after_bytes,omitempty"`
	// HeapBytesPerInstance: the live heap's growth over the instances.
	HeapBytesPerInstance float64 `json:"live_heap_bytes_per_instance,omitempty"`
}

// memoryResult is what roster bench memory reports.
type memoryResult struct {
	Op        string       `json:"op"`
	Addrs     []string     `json:"addrs"`
	Instances int          `json:"instances"`
	Nodes     []nodeMemory `json:"nodes"`
	// BytesPerInstance: the largest per-node figure.
	BytesPerInstance float64 `json:"bytes_per_instance"`
	// HeapBytesPerInstance: the largest per-node live heap figure (local
	// clusters only). Unlike the anon RSS it does not depend on when each
	// node last collected its garbage.
	HeapBytesPerInstance float64 `json:"live_heap_bytes_per_instance,omitempty"`
	DurationS            float64 `json:"duration_s"`
	// OpsPerS: registrations per second while loading.
	OpsPerS float64 `json:"ops_per_s"`
	// SnapshotMS: the leader's last snapshot, from its log (local only;
	// 0 when none was taken).
	SnapshotMS float64 `json:"snapshot_ms"`
	// RestoreMS: a follower killed with kill -9 and started again, until
	// it has applied everything (local only).
	RestoreMS float64 `json:"restore_ms"`
	// RestoredAnonRSS: that follower's anon RSS once restored.
	RestoredAnonRSS int64 `json:"restored_anon_rss_bytes"`
	// RestoredBytesPerInstance: its anon RSS over the instances.
	RestoredBytesPerInstance float64 `json:"restored_bytes_per_instance"`
}

func (a *app) benchMemory(ctx context.Context, o benchOptions) error {
	if !o.local && len(o.pids) == 0 {
		return usagef("bench memory reads process memory: give --local, or --pids of the --addr nodes on this machine")
	}
	// A local cluster snapshots soon after loading, so the snapshot time is
	// measured too.
	// Group commit packs many registrations into one entry: a low threshold
	// makes sure a snapshot follows the load.
	threshold := 16
	// --enable-pprof on a local cluster's --http-addr: the live heap is
	// read after a collection forced through /debug/pprof/heap?gc=1.
	target, err := a.benchTarget(ctx, o, []string{"--snapshot-interval", "1s", "--snapshot-threshold", strconv.Itoa(threshold), "--enable-pprof"})
	if err != nil {
		return err
	}
	defer target.close()
	leader, _ := findLeader(ctx, target.nodes)
	if leader == nil {
		return fmt.Errorf("no node says it leads")
	}
	res := memoryResult{Op: "memory", Addrs: target.addrs(), Instances: o.instances}
	for _, n := range target.nodes {
		m, err := readProcMemory(n.pid)
		if err != nil {
			return fmt.Errorf("read memory of pid %d: %w", n.pid, err)
		}
		res.Nodes = append(res.Nodes, nodeMemory{Addr: n.addr, PID: n.pid, Leader: n == leader, Before: m})
	}
	// After the RSS: the forced collection would shrink it.
	if err := target.liveHeaps(ctx, func(i int, h int64) { res.Nodes[i].HeapBefore = h }); err != nil {
		return err
	}
	stubs := []rosterv1.RegistryClient{}
	for _, c := range leader.conns {
		stubs = append(stubs, rosterv1.NewRegistryClient(c))
	}
	start := time.Now()
	if err := a.registerMany(ctx, stubs, o.instances, o.clients, func(k int) *rosterv1.Instance {
		return realisticInstance(o.service, k, 0)
	}); err != nil {
		return err
	}
	elapsed := time.Since(start)
	res.DurationS = elapsed.Seconds()
	res.OpsPerS = float64(o.instances) / elapsed.Seconds()
	// Followers apply what the leader committed; then the memory settles.
	_, lst := findLeader(ctx, target.nodes)
	if target.local != nil && lst != nil {
		for _, nd := range target.local.nodes {
			if _, err := target.local.waitApplied(ctx, nd, lst.GetCommitIndex(), time.Minute); err != nil {
				return err
			}
		}
	}
	time.Sleep(2 * time.Second)
	for i, n := range target.nodes {
		m, err := readProcMemory(n.pid)
		if err != nil {
			return fmt.Errorf("read memory of pid %d: %w", n.pid, err)
		}
		res.Nodes[i].After = m
		res.Nodes[i].BytesPerInstance = float64(m.RSSAnon-res.Nodes[i].Before.RSSAnon) / float64(o.instances)
		res.BytesPerInstance = max(res.BytesPerInstance, res.Nodes[i].BytesPerInstance)
	}
	if err := target.liveHeaps(ctx, func(i int, h int64) {
		n := &res.Nodes[i]
		n.HeapAfter = h
		n.HeapBytesPerInstance = float64(h-n.HeapBefore) / float64(o.instances)
		res.HeapBytesPerInstance = max(res.HeapBytesPerInstance, n.HeapBytesPerInstance)
	}); err != nil {
		return err
	}
	if lc := target.local; lc != nil {
		if err := a.measureRestore(ctx, lc, leader, o, &res); err != nil {
			return err
		}
	}
	if a.json() {
		return writeJSON(a.stdout, res)
	}
	cols := []string{"NODE", "PID", "ROLE", "ANON RSS BEFORE", "AFTER", "BYTES/INSTANCE"}
	if target.local != nil {
		cols = append(cols, "LIVE HEAP BEFORE", "AFTER", "BYTES/INSTANCE")
	}
	t := newTable(a.stdout, cols...)
	for _, n := range res.Nodes {
		role := "follower"
		if n.Leader {
			role = "leader"
		}
		row := []string{n.Addr, fmt.Sprint(n.PID), role, mib(n.Before.RSSAnon), mib(n.After.RSSAnon), fmt.Sprintf("%.0f", n.BytesPerInstance)}
		if target.local != nil {
			row = append(row, mib(n.HeapBefore), mib(n.HeapAfter), fmt.Sprintf("%.0f", n.HeapBytesPerInstance))
		}
		t.row(row...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "instances %d, loaded at %.0f/s; snapshot %.0fms; restore after kill -9 %.0fms, restored anon RSS %s (%.0f B/instance)\n",
		o.instances, res.OpsPerS, res.SnapshotMS, res.RestoreMS, mib(res.RestoredAnonRSS), res.RestoredBytesPerInstance)
	return nil
}

// liveHeaps reads each node's live heap after a forced collection
// (liveheap.Measure) and hands it to set with the node's index. Only a
// local cluster, which the bench started with --http-addr and
// --enable-pprof, is measured; for others it does nothing.
func (t *benchTarget) liveHeaps(ctx context.Context, set func(i int, heap int64)) error {
	if t.local == nil {
		return nil
	}
	for i, nd := range t.local.nodes {
		h, err := liveheap.Measure(ctx, "http://"+nd.http)
		if err != nil {
			return fmt.Errorf("live heap of %s: %w", nd.id, err)
		}
		set(i, h)
	}
	return nil
}

// measureRestore reads the leader's last snapshot time from its log, then
// kills a follower and times its restart until it has applied everything.
func (a *app) measureRestore(ctx context.Context, lc *localCluster, leader *benchNode, o benchOptions, res *memoryResult) error {
	var lnode, follower *localNode
	for _, nd := range lc.nodes {
		if nd.grpc == leader.addr {
			lnode = nd
		} else if follower == nil {
			follower = nd
		}
	}
	if lnode != nil {
		// The snapshot after loading may still be running: wait for it a
		// little.
		for i := 0; i < 50; i++ {
			if s := snapshotTimes(lnode.logPath); len(s) > 0 {
				res.SnapshotMS = float64(s[len(s)-1]) / float64(time.Millisecond)
				if i > 10 {
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	lst, err := lnode.status(ctx)
	if err != nil {
		return err
	}
	follower.kill()
	t0 := time.Now()
	if err := follower.start(lc.rosterd); err != nil {
		return err
	}
	if _, err := lc.waitApplied(ctx, follower, lst.GetCommitIndex(), 5*time.Minute); err != nil {
		return err
	}
	res.RestoreMS = float64(time.Since(t0)) / float64(time.Millisecond)
	time.Sleep(2 * time.Second)
	if m, err := readProcMemory(follower.pid()); err == nil {
		res.RestoredAnonRSS = m.RSSAnon
		res.RestoredBytesPerInstance = float64(m.RSSAnon) / float64(o.instances)
	}
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

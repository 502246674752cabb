package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// failoverResult is what roster bench failover reports.
type failoverResult struct {
	Op           string   `json:"op"`
	Rosterd      string   `json:"rosterd"`
	RosterdFlags []string `json:"rosterd_flags"`
	Rounds       int      `json:"rounds"`
	// RoundsMS: kill -9 of the leader → the next successful write, each round.
	RoundsMS []float64 `json:"rounds_ms"`
	// LatencyMS: p50 (the median) and max of RoundsMS.
	LatencyMS map[string]float64 `json:"latency_ms"`
	// Errors: writes that failed while there was no leader.
	Errors     int64   `json:"errors"`
	DurationS  float64 `json:"duration_s"`
	FirstError string  `json:"first_error,omitempty"`
}

func (a *app) benchFailover(ctx context.Context, o benchOptions) error {
	rosterd, err := findRosterd(o.rosterd)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "bench: starting a local 3-node cluster of %s\n", rosterd)
	c, err := startLocalCluster(ctx, rosterd, 3, o.rosterdFlags)
	if err != nil {
		return err
	}
	defer c.stop()

	res := failoverResult{Op: "failover", Rosterd: rosterd, RosterdFlags: o.rosterdFlags, Rounds: o.rounds}
	if res.RosterdFlags == nil {
		res.RosterdFlags = []string{}
	}
	start := time.Now()
	var failed atomic.Int64
	seq := 0
	write := func(nd *localNode, timeout time.Duration) error {
		seq++
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := rosterv1.NewRegistryClient(nd.conn).Register(cctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
			Service: o.service, Id: "failover", Address: "10.0.0.1", Port: uint32(seq%65535 + 1)}})
		return err
	}
	var times []time.Duration
	for round := 1; round <= o.rounds; round++ {
		leader, err := c.waitLeader(ctx, 60*time.Second, nil)
		if err != nil {
			return err
		}
		// The cluster takes writes before the kill.
		if err := write(leader, a.timeout); err != nil {
			return fmt.Errorf("round %d: write before the kill: %w", round, err)
		}
		var survivors []*localNode
		for _, nd := range c.nodes {
			if nd != leader {
				survivors = append(survivors, nd)
			}
		}
		leader.kill()
		t0 := time.Now()
		var took time.Duration
		for i := 0; ; i++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Since(t0) > 2*time.Minute {
				return fmt.Errorf("round %d: no write succeeded within 2m of killing %s", round, leader.id)
			}
			// Each try goes to the next survivor: the client does not
			// know who leads now.
			err := write(survivors[i%len(survivors)], time.Second)
			if err == nil {
				took = time.Since(t0)
				break
			}
			failed.Add(1)
			if res.FirstError == "" {
				res.FirstError = status.Convert(err).Message()
			}
			time.Sleep(5 * time.Millisecond)
		}
		times = append(times, took)
		res.RoundsMS = append(res.RoundsMS, float64(took)/float64(time.Millisecond))
		fmt.Fprintf(a.stderr, "bench: round %d/%d  killed %s  next write ok after %s  %d errors\n",
			round, o.rounds, leader.id, took.Round(time.Millisecond), failed.Load())
		if err := leader.start(rosterd); err != nil {
			return err
		}
		if err := c.waitCaughtUp(ctx, leader); err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
	}
	slices.Sort(times)
	res.LatencyMS = map[string]float64{"p50": percentile(times, 0.5), "max": percentile(times, 1), "min": percentile(times, 0)}
	res.Errors = failed.Load()
	res.DurationS = time.Since(start).Seconds()
	if a.json() {
		return writeJSON(a.stdout, res)
	}
	t := newTable(a.stdout, "OP", "ROUNDS", "MEDIAN", "MIN", "MAX", "FAILED WRITES", "EACH")
	var each []string
	for _, v := range res.RoundsMS {
		each = append(each, fmt.Sprintf("%.0f", v))
	}
	t.row("failover", fmt.Sprint(o.rounds), ms(res.LatencyMS["p50"]), ms(res.LatencyMS["min"]), ms(res.LatencyMS["max"]),
		fmt.Sprint(res.Errors), strings.Join(each, ","))
	return t.flush()
}

// waitCaughtUp waits until nd answers, the cluster agrees on a leader and
// nd has applied what the leader had committed.
func (c *localCluster) waitCaughtUp(ctx context.Context, nd *localNode) error {
	leader, err := c.waitLeader(ctx, 60*time.Second, nil)
	if err != nil {
		return err
	}
	lst, err := leader.status(ctx)
	if err != nil {
		return err
	}
	_, err = c.waitApplied(ctx, nd, lst.GetCommitIndex(), 60*time.Second)
	return err
}

// waitApplied polls nd until its applied index reaches index and returns
// how long that took.
func (c *localCluster) waitApplied(ctx context.Context, nd *localNode, index uint64, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	for {
		st, err := nd.status(ctx)
		if err == nil && st.GetAppliedIndex() >= index {
			return time.Since(t0), nil
		}
		if time.Since(t0) > timeout {
			return 0, fmt.Errorf("%s did not apply index %d within %s", nd.id, index, timeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// snapshotTimes reads raft's "starting snapshot" / "snapshot complete"
// lines from a node's log and returns how long each snapshot took.
func snapshotTimes(logPath string) []time.Duration {
	f, err := os.Open(logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []time.Duration
	var started time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ts, _, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		at, err := time.Parse("2006-01-02T15:04:05.000Z0700", ts)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, "starting snapshot up to"):
			started = at
		case strings.Contains(line, "snapshot complete up to") && !started.IsZero():
			out = append(out, at.Sub(started))
			started = time.Time{}
		}
	}
	return out
}

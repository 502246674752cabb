package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// client is a gRPC connection to one process.
type client struct {
	p  *Proc
	cc *grpc.ClientConn
}

func dialProc(t *testing.T, p *Proc) *client {
	t.Helper()
	cc, err := grpc.NewClient(p.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &client{p: p, cc: cc}
}

func (c *client) status(hash bool) (*rosterv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	return rosterv1.NewClusterClient(c.cc).Status(ctx, &rosterv1.StatusRequest{IncludeHash: hash})
}

func (c *client) register(id string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := rosterv1.NewRegistryClient(c.cc).Register(ctx, &rosterv1.RegisterRequest{Instance: &rosterv1.Instance{
		Service: "web", Id: id, Address: "10.0.0.1", Port: 80,
	}})
	if err != nil {
		return 0, err
	}
	return resp.Revision, nil
}

func (c *client) staleIDs() (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := rosterv1.NewRegistryClient(c.cc).GetService(ctx, &rosterv1.GetServiceRequest{
		Service: "web", Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE},
	})
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, i := range resp.Instances {
		out[i.Id] = true
	}
	return out, nil
}

// acked records the writes a node acknowledged.
type acked struct {
	mu  sync.Mutex
	ids map[string]uint64
}

func (a *acked) add(id string, rev uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ids == nil {
		a.ids = map[string]uint64{}
	}
	a.ids[id] = rev
}

func (a *acked) snapshot() map[string]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]uint64, len(a.ids))
	for k, v := range a.ids {
		out[k] = v
	}
	return out
}

// mustWrite registers ids through c, retrying each until it is acknowledged.
func mustWrite(t *testing.T, c *client, a *acked, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%03d", prefix, i)
		deadline := time.Now().Add(30 * time.Second)
		for {
			rev, err := c.register(id)
			if err == nil {
				a.add(id, rev)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("register %s via %s: %v", id, c.p.ID, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// writer registers new ids through the given clients in turn until stopped,
// recording every acknowledged one; failures are expected while there is no
// leader and are not retried under the same id.
type writer struct {
	stop chan struct{}
	done chan struct{}
}

func startWriter(clients []*client, a *acked, prefix string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			id := fmt.Sprintf("%s-%05d", prefix, i)
			if rev, err := clients[i%len(clients)].register(id); err == nil {
				a.add(id, rev)
			} else {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	return w
}

func (w *writer) halt() {
	close(w.stop)
	<-w.done
}

// leaderLog polls every node's Status and remembers who called itself
// leader in which term.
type leaderLog struct {
	mu      sync.Mutex
	leaders map[uint64]map[string]bool
	// lowest is the lowest applied index each node reported while leader.
	lowest map[string]uint64
	stop   chan struct{}
	done   chan struct{}
}

func watchLeaders(clients []*client) *leaderLog {
	l := &leaderLog{leaders: map[uint64]map[string]bool{}, lowest: map[string]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			for _, c := range clients {
				st, err := c.status(false)
				if err != nil || st.State != "leader" {
					continue
				}
				l.mu.Lock()
				if l.leaders[st.Term] == nil {
					l.leaders[st.Term] = map[string]bool{}
				}
				l.leaders[st.Term][st.NodeId] = true
				if low, ok := l.lowest[st.NodeId]; !ok || st.AppliedIndex < low {
					l.lowest[st.NodeId] = st.AppliedIndex
				}
				l.mu.Unlock()
			}
			select {
			case <-l.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return l
}

// check stops polling and fails the test if two nodes led the same term.
func (l *leaderLog) check(t *testing.T) {
	t.Helper()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	var terms []uint64
	for term := range l.leaders {
		terms = append(terms, term)
	}
	sort.Slice(terms, func(i, j int) bool { return terms[i] < terms[j] })
	var seen []string
	for _, term := range terms {
		var ids []string
		for id := range l.leaders[term] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		seen = append(seen, fmt.Sprintf("%d:%s", term, strings.Join(ids, "+")))
		if len(ids) > 1 {
			t.Errorf("term %d had %d leaders: %v", term, len(ids), ids)
		}
	}
	t.Logf("leaders by term: %v", seen)
}

// led reports whether id called itself leader in any term.
func (l *leaderLog) led(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ids := range l.leaders {
		if ids[id] {
			return true
		}
	}
	return false
}

// ledBelow reports whether id called itself leader while it had applied
// less than index: a leader that lacks what the cluster had committed.
func (l *leaderLog) ledBelow(id string, index uint64) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	low, ok := l.lowest[id]
	return low, ok && low < index
}

// converged waits until every node reports the same state hash at the same
// applied index, at or past every acknowledged revision, and then checks
// that every acknowledged id is on every node.
func converged(t *testing.T, c *Cluster, clients []*client, a *acked) {
	t.Helper()
	want := a.snapshot()
	var maxRev uint64
	for _, rev := range want {
		maxRev = max(maxRev, rev)
	}
	var last string
	c.Eventually("every node at the same index with the same state hash", 60*time.Second, func() bool {
		var index uint64
		hash := ""
		var views []string
		ok := true
		for _, cl := range clients {
			st, err := cl.status(true)
			if err != nil {
				views = append(views, fmt.Sprintf("%s: %v", cl.p.ID, err))
				ok = false
				continue
			}
			views = append(views, fmt.Sprintf("%s: %s term %d index %d hash %.8s", st.NodeId, st.State, st.Term, st.HashIndex, st.StateHash))
			if st.HashIndex < maxRev || (hash != "" && (st.HashIndex != index || st.StateHash != hash)) {
				ok = false
			}
			index, hash = st.HashIndex, st.StateHash
		}
		last = strings.Join(views, "; ")
		return ok
	})
	t.Logf("converged: %s", last)
	for _, cl := range clients {
		got, err := cl.staleIDs()
		if err != nil {
			t.Fatalf("read %s: %v", cl.p.ID, err)
		}
		var lost []string
		for id := range want {
			if !got[id] {
				lost = append(lost, id)
			}
		}
		sort.Strings(lost)
		if len(lost) > 0 {
			t.Errorf("%s lost %d of %d acknowledged writes: %v", cl.p.ID, len(lost), len(want), lost)
		}
	}
}

// wipe deletes a stopped node's data dir.
func wipe(t *testing.T, p *Proc) {
	t.Helper()
	if err := os.RemoveAll(p.DataDir); err != nil {
		t.Fatal(err)
	}
}

// logSince returns what p logged after offset.
func logSince(p *Proc, offset int64) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

func logSize(p *Proc) int64 {
	fi, err := os.Stat(p.LogPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// TestWipedFollowerRestartedWithInitialClusterLosesNothing wipes a follower
// that, with the leader, holds writes a lagging follower never saw, and
// restarts it with its original --initial-cluster flags while the leader is
// down. A wiped node that votes (as a fresh bootstrap, or as an empty node
// waiting to be caught up) lets the lagging follower win an election and
// discard those acknowledged writes.
func TestWipedFollowerRestartedWithInitialClusterLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := StartCluster(t, 3)
	leader := c.Leader()
	var lagging, wiped *Proc
	for _, p := range c.Procs {
		switch {
		case p == leader:
		case lagging == nil:
			lagging = p
		default:
			wiped = p
		}
	}
	var clients []*client
	byProc := map[*Proc]*client{}
	for _, p := range c.Procs {
		cl := dialProc(t, p)
		clients = append(clients, cl)
		byProc[p] = cl
	}
	leaders := watchLeaders(clients)
	var a acked

	mustWrite(t, byProc[leader], &a, "before", 10)
	// The lagging follower misses what follows: only the leader and the
	// follower about to be wiped hold it.
	lagging.Kill()
	mustWrite(t, byProc[leader], &a, "lagging-down", 10)
	wiped.Kill()
	wipe(t, wiped)
	leader.Kill()

	from := logSize(lagging)
	lagging.Start()
	wiped.Start()
	during := startWriter([]*client{byProc[lagging], byProc[wiped]}, &a, "wipe-phase")
	// Give the lagging follower every chance to win an election with the
	// wiped node's vote: wait until it has won one or tried three times.
	c.Eventually("the lagging follower to win or retry an election", 60*time.Second, func() bool {
		s := logSince(lagging, from)
		return strings.Contains(s, "election won") || strings.Count(s, "restarting election") >= 3
	})
	wipedLed := leaders.led(wiped.ID)
	leader.Start()
	c.Leader()
	during.halt()
	after := startWriter(clients, &a, "after")
	c.Eventually("the wiped node to follow a leader", 60*time.Second, func() bool {
		st, err := byProc[wiped].status(false)
		return err == nil && st.LeaderId != "" && st.AppliedIndex > 1
	})
	after.halt()
	leaders.check(t)
	converged(t, c, clients, &a)
	if wipedLed {
		t.Errorf("the wiped node %s led a term before it was caught up", wiped.ID)
	}
}

// grownCluster starts n1 with --bootstrap and n2, n3 with --join, the way
// the README grows a cluster, and waits for three healthy members.
func grownCluster(t *testing.T) *Cluster {
	rosterd, roster := Binaries(t)
	ports := FreePorts(t, 6)
	base := t.TempDir()
	c := &Cluster{T: t, Roster: roster}
	for i := 0; i < 3; i++ {
		p := newProc(t, rosterd, base, ports, i)
		p.args = []string{"--node-id", p.ID, "--data-dir", p.DataDir, "--grpc-addr", p.GRPC, "--raft-addr", p.Raft, "--log-level", "debug"}
		switch i {
		case 0:
			p.args = append(p.args, "--bootstrap")
		case 1:
			p.args = append(p.args, "--join", c.Procs[0].GRPC)
		case 2:
			p.args = append(p.args, "--join", c.Procs[0].GRPC+","+c.Procs[1].GRPC)
		}
		c.Procs = append(c.Procs, p)
	}
	c.killOnCleanup(60)
	for _, p := range c.Procs {
		p.Start()
	}
	c.Eventually("three healthy voters", 60*time.Second, func() bool {
		ms, ok := c.members(c.Procs[0].GRPC)
		if !ok || len(ms.Members) != 3 {
			return false
		}
		for _, m := range ms.Members {
			if m.APIAddr == "" || !m.Healthy || !m.Voter {
				return false
			}
		}
		return true
	})
	return c
}

// TestWipedFirstNodeOfGrownCluster wipes the data dir of the node that
// bootstrapped a grown cluster and starts it again, with the command the
// README gives (--join the others) and with its original --bootstrap
// command, at once and after the other two elected a new leader. Writes
// sent to it while the other two are up must never be lost: it must not
// lead a cluster of its own.
func TestWipedFirstNodeOfGrownCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	readme := func(c *Cluster) []string { return []string{"--join", c.Procs[1].GRPC + "," + c.Procs[2].GRPC} }
	original := func(*Cluster) []string { return []string{"--bootstrap"} }
	for _, tc := range []struct {
		name string
		args func(c *Cluster) []string
		// atOnce restarts the node right after the kill, before the other
		// two have elected a leader: a process supervisor's restart.
		atOnce bool
	}{
		{"readme join at once", readme, true},
		{"readme join after a new leader", readme, false},
		{"original bootstrap at once", original, true},
		{"original bootstrap after a new leader", original, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := grownCluster(t)
			first := c.Procs[0]
			var clients []*client
			for _, p := range c.Procs {
				clients = append(clients, dialProc(t, p))
			}
			leaders := watchLeaders(clients)
			var a acked
			mustWrite(t, clients[1], &a, "before", 10)
			st, err := clients[1].status(false)
			if err != nil {
				t.Fatal(err)
			}
			committed := st.CommitIndex

			first.Kill()
			wipe(t, first)
			if !tc.atOnce {
				c.Leader(c.Procs[1], c.Procs[2])
			}
			first.args = append([]string{"--node-id", first.ID, "--data-dir", first.DataDir, "--grpc-addr", first.GRPC,
				"--raft-addr", first.Raft, "--log-level", "debug"}, tc.args(c)...)
			restarted := watchLeaders(clients[:1])
			first.Start()
			// Writes go to the restarted node from the moment it listens.
			w := startWriter([]*client{clients[0]}, &a, "to-first")
			others := startWriter(clients[1:], &a, "to-others")
			c.Eventually("the restarted node to follow the cluster and acknowledge writes", 60*time.Second, func() bool {
				st, err := clients[0].status(false)
				if err != nil || st.LeaderId == "" || st.LeaderId == first.ID {
					return false
				}
				for id := range a.snapshot() {
					if strings.HasPrefix(id, "to-first-") {
						return true
					}
				}
				return false
			})
			// A few more acknowledged writes through it once it follows.
			if low, bad := restarted.ledBelow(first.ID, committed); bad {
				t.Errorf("the wiped %s led at applied index %d, below the %d the cluster had committed: a cluster of its own", first.ID, low, committed)
			}
			mustWrite(t, clients[0], &a, "after", 5)
			w.halt()
			others.halt()
			leaders.check(t)
			restarted.check(t)
			if low, bad := restarted.ledBelow(first.ID, committed); bad {
				t.Errorf("the wiped %s led at applied index %d, below the %d the cluster had committed: a cluster of its own", first.ID, low, committed)
			}
			converged(t, c, clients, &a)
		})
	}
}

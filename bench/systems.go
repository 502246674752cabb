package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/internal/liveheap"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// system is a 3-process cluster of one registry under test, driven the
// same way for both: writes of registry-shaped records, prefix/service
// watches, linearizable reads, and kill -9 of a member.
type system interface {
	name() string
	members() []*member
	// write stores record k (its n-th version) through node; lease: with a
	// TTL lease. It returns the revision the write made.
	write(ctx context.Context, node, conn, k, n int, lease bool) (uint64, error)
	// watch streams the revisions of changed records from node until ctx
	// ends, calling got for each message.
	watch(ctx context.Context, node, conn int, ready func(), got func(revs []uint64)) error
	// read is a linearizable read of record k on node.
	read(ctx context.Context, node, k int) error
	// leader returns the index of the node that leads, or an error.
	leader(ctx context.Context) (int, error)
	// applied returns node's applied index (to wait for a restart).
	applied(ctx context.Context, node int) (uint64, error)
	// grantLeases prepares keys leases for writes with lease.
	grantLeases(ctx context.Context, keys int) error
	// liveHeap has node collect its garbage and returns the bytes its Go
	// heap still holds.
	liveHeap(ctx context.Context, node int) (int64, error)
	close()
}

// record is the registry-shaped payload both systems store.
type record struct {
	Service  string            `json:"service"`
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Port     uint32            `json:"port"`
	Tags     []string          `json:"tags"`
	Metadata map[string]string `json:"metadata"`
	Weight   uint32            `json:"weight"`
	Zone     string            `json:"zone"`
}

const service = "bench"

func newRecord(k, n int) record {
	return record{
		Service: service,
		ID:      fmt.Sprintf("%s-%08d", service, k),
		Address: fmt.Sprintf("10.%d.%d.%d", (k>>16)&255, (k>>8)&255, k&255),
		Port:    uint32(n%60000 + 1024),
		Tags:    []string{"v2", "http", "canary=false"},
		Metadata: map[string]string{
			"version": "2.14.3", "commit": "4f9c2e1d7a", "region": "eu-west-1", "team": "payments",
		},
		Weight: 100,
		Zone:   fmt.Sprintf("eu-west-1%c", 'a'+k%3),
	}
}

// ---- etcd ----

type etcdSystem struct {
	ms      []*member
	httpURL []string             // each member's client URL, for /debug and /metrics
	clients [][]*clientv3.Client // [node][conn]
	leases  []clientv3.LeaseID
	value   []byte
}

func startEtcd(ctx context.Context, base string, conns int) (*etcdSystem, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i+1, ports[2*i+1]))
	}
	s := &etcdSystem{}
	for i := range 3 {
		dir := filepath.Join(base, fmt.Sprintf("etcd-e%d", i+1))
		m := &member{name: fmt.Sprintf("e%d", i+1), bin: self, logPath: dir + ".log", args: []string{"etcd-member",
			"--name", fmt.Sprintf("e%d", i+1), "--data-dir", dir,
			"--client-url", fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			"--peer-url", fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			"--initial-cluster", strings.Join(initial, ",")}}
		if err := m.start(); err != nil {
			s.close()
			return nil, err
		}
		s.ms = append(s.ms, m)
		s.httpURL = append(s.httpURL, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
		var cs []*clientv3.Client
		for range conns {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{fmt.Sprintf("127.0.0.1:%d", ports[2*i])}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				s.close()
				return nil, err
			}
			cs = append(cs, c)
		}
		s.clients = append(s.clients, cs)
	}
	if err := waitLeader(ctx, s); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *etcdSystem) name() string       { return "etcd" }
func (s *etcdSystem) members() []*member { return s.ms }

func (s *etcdSystem) key(k int) string {
	return fmt.Sprintf("/registry/%s/%s-%08d", service, service, k)
}

func (s *etcdSystem) write(ctx context.Context, node, conn, k, n int, lease bool) (uint64, error) {
	v, _ := json.Marshal(newRecord(k, n))
	var opts []clientv3.OpOption
	if lease {
		opts = append(opts, clientv3.WithLease(s.leases[k%len(s.leases)]))
	}
	resp, err := s.clients[node][conn%len(s.clients[node])].Put(ctx, s.key(k), string(v), opts...)
	if err != nil {
		return 0, err
	}
	return uint64(resp.Header.Revision), nil
}

func (s *etcdSystem) watch(ctx context.Context, node, conn int, ready func(), got func([]uint64)) error {
	wc := s.clients[node][conn%len(s.clients[node])].Watch(ctx, fmt.Sprintf("/registry/%s/", service), clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	for resp := range wc {
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.Created {
			ready()
			continue
		}
		revs := make([]uint64, 0, len(resp.Events))
		for _, ev := range resp.Events {
			revs = append(revs, uint64(ev.Kv.ModRevision))
		}
		got(revs)
	}
	return ctx.Err()
}

func (s *etcdSystem) read(ctx context.Context, node, k int) error {
	_, err := s.clients[node][0].Get(ctx, s.key(k))
	return err
}

func (s *etcdSystem) status(ctx context.Context, node int) (*clientv3.StatusResponse, error) {
	c := s.clients[node][0]
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.Status(cctx, c.Endpoints()[0])
}

// leader returns the member every live member names as the leader.
func (s *etcdSystem) leader(ctx context.Context) (int, error) {
	var id uint64
	at := -1
	for i, m := range s.ms {
		if !m.alive() {
			continue
		}
		st, err := s.status(ctx, i)
		if err != nil || st.Leader == 0 || (id != 0 && st.Leader != id) {
			return -1, errors.New("etcd members do not agree on a leader")
		}
		id = st.Leader
		if st.Leader == st.Header.MemberId {
			at = i
		}
	}
	if at < 0 {
		return -1, errors.New("no live etcd member leads")
	}
	return at, nil
}

func (s *etcdSystem) applied(ctx context.Context, node int) (uint64, error) {
	st, err := s.status(ctx, node)
	if err != nil {
		return 0, err
	}
	return st.RaftAppliedIndex, nil
}

func (s *etcdSystem) grantLeases(ctx context.Context, keys int) error {
	if len(s.leases) >= keys {
		return nil
	}
	l, err := s.leader(ctx)
	if err != nil {
		return err
	}
	for len(s.leases) < keys {
		g, err := s.clients[l][0].Grant(ctx, 30)
		if err != nil {
			return err
		}
		s.leases = append(s.leases, g.ID)
		// Kept alive for the whole run, like a registered instance.
		if _, err := s.clients[l][0].KeepAlive(context.Background(), g.ID); err != nil {
			return err
		}
	}
	return nil
}

func (s *etcdSystem) close() {
	for _, cs := range s.clients {
		for _, c := range cs {
			c.Close()
		}
	}
	for _, m := range s.ms {
		m.kill()
	}
}

func parseURLs(s string) ([]url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	return []url.URL{*u}, nil
}

// ---- Roster ----

type rosterSystem struct {
	ms      []*member
	httpURL []string // each node's --http-addr, for /debug and /metrics
	conns   [][]*grpc.ClientConn
	ttl     time.Duration
	// prevInstance: watchers ask for prev_instance too.
	prevInstance bool
	// ownStreams: each watcher opens a Watch stream of its own, instead
	// of sharing its client's WatchMany stream.
	ownStreams bool

	// watchers are the Go SDK clients the watchers use, one per
	// connection, made when the watch phase first asks.
	wmu      sync.Mutex
	watchers map[[2]int]*client.Client
	addrs    []string
}

func startRoster(ctx context.Context, base, rosterd string, conns int, extra []string) (*rosterSystem, error) {
	ports, err := freePorts(9)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("n%d=127.0.0.1:%d", i+1, ports[2*i+1]))
	}
	s := &rosterSystem{ttl: 30 * time.Second}
	for i := range 3 {
		dir := filepath.Join(base, fmt.Sprintf("roster-n%d", i+1))
		grpcAddr := fmt.Sprintf("127.0.0.1:%d", ports[2*i])
		m := &member{name: fmt.Sprintf("n%d", i+1), bin: rosterd, logPath: dir + ".log", args: append([]string{
			"--node-id", fmt.Sprintf("n%d", i+1), "--data-dir", dir, "--grpc-addr", grpcAddr,
			"--raft-addr", fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]), "--initial-cluster", strings.Join(initial, ","),
			"--log-level", "warn",
			// The HTTP API with Go's profiles, for the memory phase's
			// forced collection (etcd serves both on its client URL).
			"--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[6+i]), "--enable-pprof",
			// Every bench client comes from 127.0.0.1, one client to
			// rosterd's per-client limits (1,000 writes/s by default), and
			// etcd has none: off, unless --rosterd-flags sets them again.
			"--rate-limit=0", "--read-rate-limit=0", "--max-instances-per-service=0",
			"--max-instances-per-namespace=0", "--max-watchers-per-connection=0"}, extra...)}
		if err := m.start(); err != nil {
			s.close()
			return nil, err
		}
		s.ms = append(s.ms, m)
		s.addrs = append(s.addrs, grpcAddr)
		s.httpURL = append(s.httpURL, fmt.Sprintf("http://127.0.0.1:%d", ports[6+i]))
		var cs []*grpc.ClientConn
		for range conns {
			cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				s.close()
				return nil, err
			}
			cs = append(cs, cc)
		}
		s.conns = append(s.conns, cs)
	}
	if err := waitLeader(ctx, s); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *rosterSystem) name() string       { return "roster" }
func (s *rosterSystem) members() []*member { return s.ms }

func (s *rosterSystem) instance(k, n int, lease bool) *rosterv1.Instance {
	r := newRecord(k, n)
	in := &rosterv1.Instance{Service: r.Service, Id: r.ID, Address: r.Address, Port: r.Port, Tags: r.Tags,
		Metadata: r.Metadata, Weight: r.Weight, Zone: r.Zone}
	if lease {
		in.Ttl = durationpb.New(s.ttl)
	}
	return in
}

func (s *rosterSystem) registry(node, conn int) rosterv1.RegistryClient {
	return rosterv1.NewRegistryClient(s.conns[node][conn%len(s.conns[node])])
}

func (s *rosterSystem) write(ctx context.Context, node, conn, k, n int, lease bool) (uint64, error) {
	resp, err := s.registry(node, conn).Register(ctx, &rosterv1.RegisterRequest{Instance: s.instance(k, n, lease)})
	if err != nil {
		return 0, err
	}
	return resp.GetRevision(), nil
}

// watchClient returns the SDK client of the watchers on node's conn-th
// connection: like etcd's, which share their client's watch stream.
func (s *rosterSystem) watchClient(ctx context.Context, node, conn int) (*client.Client, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	k := [2]int{node, conn % len(s.conns[node])}
	if c := s.watchers[k]; c != nil {
		return c, nil
	}
	var opts []client.Option
	if s.ownStreams {
		opts = append(opts, client.WithoutWatchMany())
	}
	c, err := client.New(ctx, []string{s.addrs[node]}, opts...)
	if err != nil {
		return nil, err
	}
	if s.watchers == nil {
		s.watchers = map[[2]int]*client.Client{}
	}
	s.watchers[k] = c
	return c, nil
}

func (s *rosterSystem) watch(ctx context.Context, node, conn int, ready func(), got func([]uint64)) error {
	c, err := s.watchClient(ctx, node, conn)
	if err != nil {
		return err
	}
	// Like etcd's watchers here, which do not ask for prev_kv: the new
	// state of each change only.
	first := true
	for resp, err := range c.Watch(ctx, &rosterv1.WatchRequest{Service: service, OmitPrevInstance: !s.prevInstance}) {
		if err != nil {
			return err
		}
		if first {
			// The first message (a reset, or a bookmark on an empty
			// service) says the stream is live.
			first = false
			ready()
		}
		revs := make([]uint64, 0, len(resp.GetEvents()))
		for _, ev := range resp.GetEvents() {
			revs = append(revs, ev.GetRevision())
		}
		if len(revs) > 0 {
			got(revs)
		}
	}
	return ctx.Err()
}

func (s *rosterSystem) read(ctx context.Context, node, k int) error {
	_, err := s.registry(node, 0).GetService(ctx, &rosterv1.GetServiceRequest{Service: service,
		Read: &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE}})
	return err
}

func (s *rosterSystem) status(ctx context.Context, node int) (*rosterv1.StatusResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return rosterv1.NewClusterClient(s.conns[node][0]).Status(cctx, &rosterv1.StatusRequest{})
}

// leader returns the node every live node names as the leader.
func (s *rosterSystem) leader(ctx context.Context) (int, error) {
	id := ""
	at := -1
	for i, m := range s.ms {
		if !m.alive() {
			continue
		}
		st, err := s.status(ctx, i)
		if err != nil || st.GetLeaderId() == "" || (id != "" && st.GetLeaderId() != id) {
			return -1, errors.New("roster nodes do not agree on a leader")
		}
		id = st.GetLeaderId()
		if st.GetState() == "leader" && st.GetNodeId() == id {
			at = i
		}
	}
	if at < 0 {
		return -1, errors.New("no live roster node leads")
	}
	return at, nil
}

func (s *rosterSystem) applied(ctx context.Context, node int) (uint64, error) {
	st, err := s.status(ctx, node)
	if err != nil {
		return 0, err
	}
	return st.GetAppliedIndex(), nil
}

func (s *rosterSystem) grantLeases(context.Context, int) error { return nil }

func (s *rosterSystem) liveHeap(ctx context.Context, node int) (int64, error) {
	return liveheap.Measure(ctx, s.httpURL[node])
}

func (s *etcdSystem) liveHeap(ctx context.Context, node int) (int64, error) {
	return liveheap.Measure(ctx, s.httpURL[node])
}

func (s *rosterSystem) close() {
	s.wmu.Lock()
	for _, c := range s.watchers {
		c.Close()
	}
	s.wmu.Unlock()
	for _, cs := range s.conns {
		for _, c := range cs {
			c.Close()
		}
	}
	for _, m := range s.ms {
		m.kill()
	}
}

// waitLeader waits until a live member leads and every live member
// answers.
func waitLeader(ctx context.Context, s system) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := s.leader(ctx); err == nil {
			all := true
			for i, m := range s.members() {
				if m.alive() {
					if _, err := s.applied(ctx, i); err != nil {
						all = false
					}
				}
			}
			if all {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no leader within 2m", s.name())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

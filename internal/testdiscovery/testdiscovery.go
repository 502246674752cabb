// Package testdiscovery holds the parts the discovery tests share: a TCP
// proxy that can cut a registry node off from a client, and real gRPC echo
// servers to balance over.
package testdiscovery

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/examples/echo/echo"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// Proxy forwards TCP connections to a target until it is cut.
type Proxy struct {
	Addr   string
	target string
	lis    net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

// NewProxy starts a proxy to target on a loopback port; it stops when the
// test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &Proxy{Addr: lis.Addr().String(), target: target, lis: lis, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		_ = lis.Close()
		p.Cut()
	})
	return p
}

func (p *Proxy) serve() {
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		p.conns[in] = struct{}{}
		p.mu.Unlock()
		go p.pipe(in)
	}
}

func (p *Proxy) pipe(in net.Conn) {
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = in.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		_ = in.Close()
		_ = out.Close()
		return
	}
	p.conns[out] = struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
	_, _ = io.Copy(in, out)
	_ = in.Close()
}

// Cut closes every connection through the proxy and refuses new ones, as
// a network partition between the client and the node would.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Echo is a running echo server.
type Echo struct {
	Addr string
	Host string
	Port uint32
	srv  *grpc.Server
}

// StartEcho starts a gRPC echo server on a loopback port that answers with
// its address; it stops when the test ends.
func StartEcho(t testing.TB) *Echo {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	host, port, _ := net.SplitHostPort(lis.Addr().String())
	p, _ := strconv.Atoi(port)
	e := &Echo{Addr: lis.Addr().String(), Host: host, Port: uint32(p), srv: grpc.NewServer()}
	echo.Register(e.srv, &echo.Server{Name: e.Addr})
	go func() { _ = e.srv.Serve(lis) }()
	t.Cleanup(e.srv.Stop)
	return e
}

// Instance returns the registry record of the server as instance id of
// service, with weight w and a TTL lease long enough for any test.
func (e *Echo) Instance(service, id string, w uint32) *rosterv1.Instance {
	return &rosterv1.Instance{
		Service: service, Id: id, Address: e.Host, Port: e.Port, Weight: w,
		Ttl: durationpb.New(time.Minute),
	}
}

// Eventually polls cond every few milliseconds until it holds, failing the
// test with what when timeout passes first.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Ctx returns a context ending with the test.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// Retry runs call until it succeeds or fails with something other than
// codes.Unavailable (a leader change on a busy machine), for at most 15s.
// It returns the last error. A call retried after Unavailable may have
// taken effect already: the caller accepts that (an upsert) or checks.
func Retry(t testing.TB, call func(ctx context.Context) error) error {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := call(ctx)
		cancel()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

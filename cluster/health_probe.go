package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/roster-registry/roster/store"
)

// prober runs one kind of check against one target. The context carries
// the check's timeout.
type prober interface {
	probe(ctx context.Context) (store.Health, string)
	close()
}

func newProber(c *store.Check) prober {
	switch {
	case c.HTTP != "":
		return httpProber{url: c.HTTP}
	case c.TCP != "":
		return tcpProber{addr: c.TCP}
	default:
		return &grpcProber{addr: c.GRPC, service: c.GRPCService}
	}
}

// checkHTTP is shared by every HTTP check: no cookies, no proxy from the
// environment (a check must reach the instance itself), a few idle
// connections per target.
var checkHTTP = &http.Client{
	Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 {
			return http.ErrUseLastResponse
		}
		return nil
	},
}

type httpProber struct{ url string }

// probe: 2xx passing, 429 warning, anything else (or no answer in time)
// critical.
func (p httpProber) probe(ctx context.Context) (store.Health, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return store.HealthCritical, fmt.Sprintf("http GET %s: %v", p.url, err)
	}
	req.Header.Set("User-Agent", "roster-health-check")
	resp, err := checkHTTP.Do(req)
	if err != nil {
		return store.HealthCritical, fmt.Sprintf("http GET %s: %v", p.url, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	reason := fmt.Sprintf("http GET %s: %s", p.url, resp.Status)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return store.HealthPassing, reason
	case resp.StatusCode == http.StatusTooManyRequests:
		return store.HealthWarning, reason
	default:
		return store.HealthCritical, reason
	}
}

func (httpProber) close() {}

type tcpProber struct{ addr string }

// probe: a completed connect is passing; refusal or timeout critical.
func (p tcpProber) probe(ctx context.Context) (store.Health, string) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return store.HealthCritical, fmt.Sprintf("tcp connect %s: %v", p.addr, err)
	}
	_ = conn.Close()
	return store.HealthPassing, fmt.Sprintf("tcp connect %s: ok", p.addr)
}

func (tcpProber) close() {}

// grpcProber asks grpc.health.v1.Health/Check over a connection it keeps
// for the life of the check.
type grpcProber struct {
	addr    string
	service string

	mu   sync.Mutex
	conn *grpc.ClientConn
}

// probe: SERVING is passing; any other answer, an error or a timeout critical.
func (p *grpcProber) probe(ctx context.Context) (store.Health, string) {
	p.mu.Lock()
	if p.conn == nil {
		cc, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			p.mu.Unlock()
			return store.HealthCritical, fmt.Sprintf("grpc health %s: %v", p.addr, err)
		}
		p.conn = cc
	}
	cc := p.conn
	p.mu.Unlock()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: p.service})
	if err != nil {
		return store.HealthCritical, fmt.Sprintf("grpc health %s: %v", p.addr, err)
	}
	st := resp.GetStatus()
	reason := fmt.Sprintf("grpc health %s: %s", p.addr, st)
	if st == healthpb.HealthCheckResponse_SERVING {
		return store.HealthPassing, reason
	}
	return store.HealthCritical, reason
}

func (p *grpcProber) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn = nil
	}
}

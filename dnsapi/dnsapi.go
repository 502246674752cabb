// Package dnsapi answers DNS queries for Roster's services: A/AAAA records of
// an instance set, SRV records with ports and weights, in Consul's naming
// style under a configurable domain. Every answer comes from the node's
// Registry.GetService over an in-process gRPC connection, healthy instances
// only, so names and namespaces are validated exactly as the gRPC API
// validates them; nothing here reads or writes the state another way.
//
// Reads are STALE: answered from the serving node's own state, never
// waiting for the leader. A DNS answer is cached for its TTL anyway, and a
// resolver needs an answer, so a follower answering what it has applied is
// the right trade; the lag is bounded by replication, and the TTL is short.
package dnsapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
	"google.golang.org/grpc"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// Defaults.
const (
	DefaultDomain  = "roster."
	DefaultTTL     = 5 * time.Second
	DefaultTimeout = 2 * time.Second
)

// Config is what the DNS server needs.
type Config struct {
	// Conn reaches this node's gRPC services (rpc.InProcess).
	Conn grpc.ClientConnInterface
	// Domain the server answers for (default "roster."); names outside it
	// are REFUSED.
	Domain string
	// TTL of every record, and the negative-caching TTL of the SOA
	// (default 5s).
	TTL time.Duration
	// Timeout bounds the registry call of one query (default 2s).
	Timeout time.Duration
	// Logger; a null logger when nil.
	Logger hclog.Logger
	// Token is the ACL token secret every lookup is made with. With ACLs
	// on, a name is answered only if this token may read its service; no
	// token reads nothing, and every lookup is REFUSED.
	Token string
	// NSAddr is ns.DOMAIN's address when the server listens on a wildcard
	// address (0.0.0.0, ::), which cannot say by which address a resolver
	// reaches it: rosterd gives its advertised gRPC address's IP, as a
	// Consul agent answers with its advertise address. Unused when the
	// server listens on one IP, and when it is a loopback or link-local
	// address (--dev advertises 127.0.0.1), which would send remote
	// resolvers elsewhere; then ns.DOMAIN has no address.
	NSAddr netip.Addr
}

// Server serves DNS over UDP and TCP on one address.
type Server struct {
	h   *handler
	udp *dns.Server
	tcp *dns.Server
	pc  net.PacketConn
	lis net.Listener

	stopOnce sync.Once
}

// Listen binds UDP and TCP on addr (HOST:PORT; port 0 picks a free port
// for both) and returns a server ready to Start. When HOST is one IP
// address, the name server the zone's NS and SOA records name,
// ns.DOMAIN, has it as its A or AAAA record; on a wildcard address it
// has cfg.NSAddr, or none (the server cannot tell which address a
// resolver reaches it by), and a resolver must be pointed at the server's
// address.
func Listen(addr string, cfg Config) (*Server, error) {
	h, err := newHandler(cfg)
	if err != nil {
		return nil, err
	}
	pc, lis, err := bindBoth(addr)
	if err != nil {
		return nil, err
	}
	if ap, err := netip.ParseAddrPort(lis.Addr().String()); err == nil && !ap.Addr().IsUnspecified() {
		h.nsAddr = ap.Addr().Unmap().WithZone("")
	} else if a := cfg.NSAddr; a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsLinkLocalUnicast() {
		// A loopback address would send remote resolvers to themselves.
		h.nsAddr = cfg.NSAddr.Unmap().WithZone("")
	}
	return &Server{h: h, pc: pc, lis: lis}, nil
}

// bindBoth binds UDP and TCP on the same port.
func bindBoth(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns address %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen for DNS over UDP on %s: %w", addr, err)
		}
		tcpAddr := addr
		if port == "0" {
			_, p, _ := net.SplitHostPort(pc.LocalAddr().String())
			tcpAddr = net.JoinHostPort(host, p)
		}
		lis, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, lis, nil
		}
		_ = pc.Close()
		// A picked UDP port may be taken for TCP; pick another.
		if port != "0" || attempt >= 10 {
			return nil, nil, fmt.Errorf("listen for DNS over TCP on %s: %w", tcpAddr, err)
		}
	}
}

// Addr is the address the server listens on (UDP and TCP).
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Start serves until Shutdown; a listener that fails on its own reports on
// errc (which must have room or a reader).
func (s *Server) Start(errc chan<- error) {
	var started sync.WaitGroup
	start := func(srv **dns.Server, mk func(notify func()) *dns.Server) {
		var once sync.Once
		done := func() { once.Do(started.Done) }
		*srv = mk(done)
		go func() {
			if err := (*srv).ActivateAndServe(); err != nil {
				select {
				case errc <- fmt.Errorf("dns: %w", err):
				default:
				}
			}
			done() // failed before it started: Start must not wait for it
		}()
	}
	started.Add(2)
	start(&s.udp, func(notify func()) *dns.Server {
		return &dns.Server{PacketConn: s.pc, Handler: s.h, NotifyStartedFunc: notify}
	})
	start(&s.tcp, func(notify func()) *dns.Server {
		return &dns.Server{Listener: s.lis, Handler: s.h, NotifyStartedFunc: notify,
			ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	})
	started.Wait()
}

// Shutdown stops both listeners; queries being answered finish within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	s.stopOnce.Do(func() {
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			if srv == nil {
				continue
			}
			if err := srv.ShutdownContext(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if s.udp == nil {
			_ = s.pc.Close()
			_ = s.lis.Close()
		}
	})
	return errors.Join(errs...)
}

// Handler returns the query handler, for serving it on listeners of one's
// own (ns.DOMAIN then has the address of the listener Listen bound).
func (s *Server) Handler() dns.Handler { return s.h }

func newHandler(cfg Config) (*handler, error) {
	if cfg.Conn == nil {
		return nil, errors.New("dns: a gRPC connection is required")
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	domain := dns.CanonicalName(cfg.Domain)
	if _, ok := dns.IsDomainName(domain); !ok || domain == "." {
		return nil, fmt.Errorf("dns domain %q is not a domain name", cfg.Domain)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &handler{
		cfg:      cfg,
		domain:   domain,
		ttl:      uint32(max(1, cfg.TTL/time.Second)),
		registry: rosterv1.NewRegistryClient(cfg.Conn),
		logger:   cfg.Logger,
	}, nil
}

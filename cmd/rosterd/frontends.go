package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/roster-registry/roster/dnsapi"
	"github.com/roster-registry/roster/httpapi"
	"github.com/roster-registry/roster/rpc"
)

// frontEnds are the listeners beside gRPC: they reach the node through an
// in-process gRPC connection, never around it.
type frontEnds struct {
	conn *grpc.ClientConn
	http *http.Server
	lis  net.Listener
	dns  *dnsapi.Server
}

// startFrontEnds starts the HTTP front end when --http-addr is set, and
// the DNS server when --dns-addr is. A server that stops on its own
// reports on serveErr.
func startFrontEnds(f *flags, logger hclog.Logger, g *grpc.Server, apiAddr string, draining <-chan struct{}, metrics prometheus.Gatherer, serveErr chan<- error) (*frontEnds, error) {
	fe := &frontEnds{}
	if f.httpAddr == "" && f.dnsAddr == "" {
		return fe, nil
	}
	conn, err := rpc.InProcess(g)
	if err != nil {
		return nil, fmt.Errorf("in-process gRPC connection: %w", err)
	}
	fe.conn = conn
	if err := fe.startDNS(f, logger, apiAddr, serveErr); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if f.httpAddr == "" {
		return fe, nil
	}
	h, err := httpapi.New(httpapi.Config{Conn: conn, Logger: logger.Named("http"), Metrics: metrics, Pprof: f.enablePprof, Draining: draining})
	if err != nil {
		fe.stopAtOnce(logger)
		_ = conn.Close()
		return nil, err
	}
	lis, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		fe.stopAtOnce(logger)
		_ = conn.Close()
		return nil, fmt.Errorf("listen for HTTP on %s: %w", f.httpAddr, err)
	}
	fe.lis = lis
	fe.http = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// A keep-alive connection with no request for this long is closed,
		// as Go's HTTP client closes its own idle ones at 90 s. Without it
		// (and no ReadTimeout) an idle connection was kept indefinitely:
		// ReadHeaderTimeout starts only with a request's first byte.
		IdleTimeout: 90 * time.Second,
		ErrorLog:    logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	serve := fe.http.Serve
	if f.tls.on() {
		// ServeTLS, not a TLS listener, so HTTP/2 is offered as well.
		fe.http.TLSConfig = f.tls.api("h2", "http/1.1")
		serve = func(l net.Listener) error { return fe.http.ServeTLS(l, "", "") }
	}
	go func() {
		if err := serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("http: %w", err)
		}
	}()
	return fe, nil
}

func (fe *frontEnds) httpAddr() string {
	if fe == nil || fe.lis == nil {
		return ""
	}
	return fe.lis.Addr().String()
}

// stop lets HTTP calls finish (streams end when the gRPC server drains,
// and so do blocking reads) until ctx's deadline, the one the whole
// shutdown shares, then closes what is left.
//
// http.Server.Shutdown closes idle connections at once, but counts a
// connection that has not sent a complete request header yet (StateNew) as
// active until it is 5 s old; a client that opened a connection and sent
// half a request therefore holds this for up to about 5.5 s, never past
// the deadline. Closing such connections earlier could cut a request whose
// header is completing just then, so they are left to Go's rule.
func (fe *frontEnds) stop(ctx context.Context, logger hclog.Logger) {
	if fe == nil {
		return
	}
	if fe.http != nil {
		if err := fe.http.Shutdown(ctx); err != nil {
			logger.Warn("HTTP calls still running after the shutdown timeout; closing them")
			_ = fe.http.Close()
		}
	}
	fe.stopDNS(ctx, logger)
	if fe.conn != nil {
		_ = fe.conn.Close()
	}
}

// stopAtOnce stops the DNS server of a start that failed.
func (fe *frontEnds) stopAtOnce(logger hclog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	fe.stopDNS(ctx, logger)
}

// startDNS starts the DNS server when --dns-addr is set. On a wildcard
// address its name server, ns.DOMAIN, has the IP of apiAddr (the
// advertised gRPC address) when that is an IP.
func (fe *frontEnds) startDNS(f *flags, logger hclog.Logger, apiAddr string, serveErr chan<- error) error {
	if f.dnsAddr == "" {
		return nil
	}
	var nsAddr netip.Addr
	if ap, err := netip.ParseAddrPort(apiAddr); err == nil {
		nsAddr = ap.Addr()
	}
	s, err := dnsapi.Listen(f.dnsAddr, dnsapi.Config{
		Conn: fe.conn, Domain: f.dnsDomain, TTL: f.dnsTTL, Logger: logger.Named("dns"), Token: f.acl.dnsToken,
		NSAddr: nsAddr,
	})
	if err != nil {
		return err
	}
	s.Start(serveErr)
	fe.dns = s
	return nil
}

func (fe *frontEnds) stopDNS(ctx context.Context, logger hclog.Logger) {
	if fe.dns == nil {
		return
	}
	if err := fe.dns.Shutdown(ctx); err != nil {
		logger.Warn("stopping the DNS server", "error", err)
	}
}

func (fe *frontEnds) dnsAddr() string {
	if fe == nil || fe.dns == nil {
		return ""
	}
	return fe.dns.Addr()
}

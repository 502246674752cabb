package dnsapi_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/roster-registry/roster/dnsapi"
	"github.com/roster-registry/roster/internal/testcluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// serve starts nd's DNS server on a loopback port and returns its address.
func serve(t *testing.T, nd *testcluster.Node, domain string) string {
	t.Helper()
	s, err := dnsapi.Listen("127.0.0.1:0", dnsapi.Config{Conn: nd.Conn, Domain: domain})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 2)
	s.Start(errc)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("dns shutdown: %v", err)
		}
		select {
		case err := <-errc:
			t.Errorf("dns server: %v", err)
		default:
		}
	})
	return s.Addr()
}

// ask sends one query over net ("udp" or "tcp"), with EDNS0 when bufsize > 0.
func ask(t *testing.T, addr, network, name string, qtype uint16, bufsize uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

func register(t *testing.T, nd *testcluster.Node, inst *rosterv1.Instance) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := nd.Registry().Register(ctx, &rosterv1.RegisterRequest{Instance: inst})
	if err != nil {
		t.Fatalf("register %s/%s: %v", inst.Service, inst.Id, err)
	}
	return resp.Header.Revision
}

func waitApplied(c *testcluster.Cluster, nd *testcluster.Node, rev uint64) {
	c.Eventually(nd.ID+" applies revision", 10*time.Second, func() bool { return nd.Node.Store().Revision() >= rev })
}

func answers[T dns.RR](rrs []dns.RR) []T {
	var out []T
	for _, rr := range rrs {
		if v, ok := rr.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func sortedA(rrs []dns.RR) []string {
	var out []string
	for _, a := range answers[*dns.A](rrs) {
		out = append(out, a.A.String())
	}
	slices.Sort(out)
	return out
}

// TestAnswers registers instances through the leader and asks a follower's
// DNS server for them, in every name form.
func TestAnswers(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	leader, f := c.Leader(), c.Followers()[0]
	addr := serve(t, f, "")

	register(t, leader, &rosterv1.Instance{Service: "web", Id: "a", Address: "10.0.0.1", Port: 8080, Tags: []string{"primary"}, Weight: 10})
	register(t, leader, &rosterv1.Instance{Service: "web", Id: "b", Address: "10.0.0.2", Port: 8081})
	register(t, leader, &rosterv1.Instance{Service: "web", Id: "b2", Address: "10.0.0.2", Port: 8082})
	register(t, leader, &rosterv1.Instance{Service: "web", Id: "v6", Address: "fd00::1", Port: 8083})
	register(t, leader, &rosterv1.Instance{Service: "web", Id: "host", Address: "web-3.example.com", Port: 8084})
	register(t, leader, &rosterv1.Instance{Service: "web", Id: "drained", Address: "10.0.0.9", Port: 8085})
	register(t, leader, &rosterv1.Instance{Namespace: "prod", Service: "web", Id: "p", Address: "10.1.0.1", Port: 9000})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := leader.Registry().SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{Service: "web", Id: "drained", Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(c, f, resp.Header.Revision)

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			r := ask(t, addr, network, "web.service.roster.", dns.TypeA, 0)
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
				t.Fatalf("A: rcode %s aa %v", dns.RcodeToString[r.Rcode], r.Authoritative)
			}
			// Healthy IPv4 instances, each address once; not the drained one.
			if got := sortedA(r.Answer); !slices.Equal(got, []string{"10.0.0.1", "10.0.0.2"}) {
				t.Fatalf("A answers %v", got)
			}
			for _, rr := range r.Answer {
				if ttl := rr.Header().Ttl; ttl != 5 {
					t.Fatalf("TTL %d, want 5", ttl)
				}
			}

			r = ask(t, addr, network, "web.service.roster.", dns.TypeAAAA, 0)
			if a := answers[*dns.AAAA](r.Answer); len(a) != 1 || a[0].AAAA.String() != "fd00::1" {
				t.Fatalf("AAAA answers %v", r.Answer)
			}

			r = ask(t, addr, network, "_web._tcp.service.roster.", dns.TypeSRV, 0)
			srvs := answers[*dns.SRV](r.Answer)
			byPort := map[uint16]*dns.SRV{}
			for _, s := range srvs {
				byPort[s.Port] = s
			}
			if len(srvs) != 5 || len(byPort) != 5 {
				t.Fatalf("SRV answers %v", r.Answer)
			}
			if s := byPort[8080]; s.Weight != 10 || s.Target != "0a000001.addr.roster." {
				t.Fatalf("SRV of a: %v", s)
			}
			if s := byPort[8081]; s.Weight != 100 {
				t.Fatalf("SRV of b (no weight): %v", s)
			}
			if s := byPort[8084]; s.Target != "web-3.example.com." {
				t.Fatalf("SRV of a hostname instance: %v", s)
			}
			extra := map[string]string{}
			for _, rr := range r.Extra {
				switch v := rr.(type) {
				case *dns.A:
					extra[v.Hdr.Name] = v.A.String()
				case *dns.AAAA:
					extra[v.Hdr.Name] = v.AAAA.String()
				}
			}
			if extra["0a000001.addr.roster."] != "10.0.0.1" || extra["0a000002.addr.roster."] != "10.0.0.2" ||
				extra["fd000000000000000000000000000001.addr.roster."] != "fd00::1" || len(extra) != 3 {
				t.Fatalf("SRV additional section %v", r.Extra)
			}
			// The target names resolve on their own too.
			if got := sortedA(ask(t, addr, network, "0a000002.addr.roster.", dns.TypeA, 0).Answer); !slices.Equal(got, []string{"10.0.0.2"}) {
				t.Fatalf("addr name: %v", got)
			}

			// Tag forms.
			if got := sortedA(ask(t, addr, network, "primary.web.service.roster.", dns.TypeA, 0).Answer); !slices.Equal(got, []string{"10.0.0.1"}) {
				t.Fatalf("tag form A: %v", got)
			}
			if srvs := answers[*dns.SRV](ask(t, addr, network, "_web._primary.service.roster.", dns.TypeSRV, 0).Answer); len(srvs) != 1 || srvs[0].Port != 8080 {
				t.Fatalf("tag form SRV: %v", srvs)
			}
			// Namespace form.
			if got := sortedA(ask(t, addr, network, "web.service.prod.ns.roster.", dns.TypeA, 0).Answer); !slices.Equal(got, []string{"10.1.0.1"}) {
				t.Fatalf("namespace form: %v", got)
			}
			// Names are case-insensitive.
			if got := sortedA(ask(t, addr, network, "WEB.Service.ROSTER.", dns.TypeA, 0).Answer); len(got) != 2 {
				t.Fatalf("upper-case name: %v", got)
			}
		})
	}
}

// TestNegativeAnswers: unknown and invalid names are NXDOMAIN with the SOA;
// a known name without records of the type is NODATA; names outside the
// domain are REFUSED.
func TestNegativeAnswers(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	leader := c.Leader()
	addr := serve(t, leader, "example.internal")
	register(t, leader, &rosterv1.Instance{Service: "db", Id: "a", Address: "10.0.0.5", Port: 5432})

	soa := func(r *dns.Msg) bool {
		s := answers[*dns.SOA](r.Ns)
		return len(s) == 1 && s[0].Hdr.Name == "example.internal." && s[0].Minttl == 5
	}
	for _, name := range []string{
		"nope.service.example.internal.",        // unknown service
		"_nope._tcp.service.example.internal.",  // unknown service, SRV form
		"db.service.other.ns.example.internal.", // unknown namespace
		"missing-tag.db.service.example.internal.",
		"bad_name.service.example.internal.", // the registry rejects the name
		"db.example.internal.",               // not a form we know
		"a.b.c.db.service.example.internal.",
		"zz.addr.example.internal.",
	} {
		r := ask(t, addr, "udp", name, dns.TypeA, 0)
		if r.Rcode != dns.RcodeNameError || !soa(r) {
			t.Errorf("%s: rcode %s, authority %v; want NXDOMAIN with the SOA", name, dns.RcodeToString[r.Rcode], r.Ns)
		}
	}
	if got := sortedA(ask(t, addr, "udp", "db.service.example.internal.", dns.TypeA, 0).Answer); !slices.Equal(got, []string{"10.0.0.5"}) {
		t.Fatalf("db: %v", got)
	}
	r := ask(t, addr, "udp", "db.service.example.internal.", dns.TypeAAAA, 0)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || !soa(r) {
		t.Fatalf("AAAA of an IPv4-only service: %s %v %v; want NODATA", dns.RcodeToString[r.Rcode], r.Answer, r.Ns)
	}
	for _, name := range []string{"db.service.roster.", "example.com.", "internal."} {
		// Not an authority for a name outside its domain: no AA bit
		// (RFC 1035 4.1.1).
		if r := ask(t, addr, "udp", name, dns.TypeA, 0); r.Rcode != dns.RcodeRefused || r.Authoritative {
			t.Errorf("%s: rcode %s aa %v, want REFUSED without aa", name, dns.RcodeToString[r.Rcode], r.Authoritative)
		}
	}
	r = ask(t, addr, "udp", "example.internal.", dns.TypeSOA, 0)
	if r.Rcode != dns.RcodeSuccess || len(answers[*dns.SOA](r.Answer)) != 1 {
		t.Fatalf("apex SOA: %v", r)
	}
}

// TestTruncationAndShuffle: a big answer over UDP is truncated with TC set
// and complete over TCP; answers come in varying order.
func TestTruncationAndShuffle(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	leader := c.Leader()
	addr := serve(t, leader, "")
	const n = 60
	for i := range n {
		register(t, leader, &rosterv1.Instance{Service: "big", Id: fmt.Sprintf("i%d", i), Address: fmt.Sprintf("10.2.0.%d", i+1), Port: 80})
	}
	r := ask(t, addr, "udp", "big.service.roster.", dns.TypeA, 0)
	if !r.Truncated || len(r.Answer) == 0 || len(r.Answer) >= n {
		t.Fatalf("UDP without EDNS0: tc %v, %d answers; want truncated", r.Truncated, len(r.Answer))
	}
	r.Compress = true // as it was sent
	if size := r.Len(); size > dns.MinMsgSize {
		t.Fatalf("UDP answer of %d bytes, more than %d", size, dns.MinMsgSize)
	}
	r = ask(t, addr, "udp", "big.service.roster.", dns.TypeA, 4096)
	if r.Truncated || len(r.Answer) != n {
		t.Fatalf("UDP with a 4096-byte EDNS0 buffer: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	r = ask(t, addr, "tcp", "big.service.roster.", dns.TypeA, 0)
	if r.Truncated || len(r.Answer) != n {
		t.Fatalf("TCP: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	first := fmt.Sprint(r.Answer)
	shuffled := false
	for range 20 {
		if fmt.Sprint(ask(t, addr, "tcp", "big.service.roster.", dns.TypeA, 0).Answer) != first {
			shuffled = true
			break
		}
	}
	if !shuffled {
		t.Fatal("21 answers of 60 records came in the same order")
	}
}

// TestDig asks with dig, when it is installed.
func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig is not installed (apt-get install dnsutils); skipping the dig check")
	}
	c := testcluster.New(t, 3, testcluster.Options{})
	leader := c.Leader()
	addr := serve(t, leader, "")
	register(t, leader, &rosterv1.Instance{Service: "api", Id: "a", Address: "10.3.0.1", Port: 7000})
	register(t, leader, &rosterv1.Instance{Service: "api", Id: "b", Address: "10.3.0.2", Port: 7001})
	host, port, _ := strings.Cut(addr, ":")
	run := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command(dig, append([]string{"@" + host, "-p", port, "+short", "+time=5", "+tries=1"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		lines := strings.Fields(strings.TrimSpace(string(out)))
		return lines
	}
	a := run("api.service.roster", "A")
	slices.Sort(a)
	if !slices.Equal(a, []string{"10.3.0.1", "10.3.0.2"}) {
		t.Fatalf("dig A: %v", a)
	}
	srv := strings.Join(run("_api._tcp.service.roster", "SRV"), " ")
	if !strings.Contains(srv, "1 100 7000 0a030001.addr.roster.") || !strings.Contains(srv, "1 100 7001 0a030002.addr.roster.") {
		t.Fatalf("dig SRV: %s", srv)
	}
	tcp := run("+tcp", "api.service.roster", "A")
	if len(tcp) != 2 {
		t.Fatalf("dig +tcp A: %v", tcp)
	}
}

// TestTagsIgnoreCase: a query name arrives lowercased, so a tag matches
// whatever its case, as in Consul: V2 is found as v2 and as _V2.
func TestTagsIgnoreCase(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.Nodes[0]
	addr := serve(t, nd, "")
	register(t, nd, &rosterv1.Instance{Service: "web", Id: "a", Address: "10.0.0.1", Port: 8080, Tags: []string{"V2"}})
	register(t, nd, &rosterv1.Instance{Service: "web", Id: "b", Address: "10.0.0.2", Port: 8080, Tags: []string{"v1"}})
	if got := sortedA(ask(t, addr, "udp", "V2.web.service.roster.", dns.TypeA, 0).Answer); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("V2.web A: %v; want 10.0.0.1", got)
	}
	if srvs := answers[*dns.SRV](ask(t, addr, "udp", "_web._v2.service.roster.", dns.TypeSRV, 0).Answer); len(srvs) != 1 {
		t.Errorf("_web._v2 SRV: %v; want one", srvs)
	}
	if r := ask(t, addr, "udp", "v3.web.service.roster.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("a tag nobody has: %s; want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}

// TestSRVDeduplicated: instances sharing an address and a port are one SRV
// record whose weight is the sum of theirs (capped at 65,535), as an RRset
// has no duplicates (RFC 2181 §5); an address written as IPv4-mapped IPv6
// is the same address, in SRV and in A answers alike.
func TestSRVDeduplicated(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.Nodes[0]
	addr := serve(t, nd, "")
	register(t, nd, &rosterv1.Instance{Service: "web", Id: "a", Address: "127.0.0.1", Port: 1})
	register(t, nd, &rosterv1.Instance{Service: "web", Id: "b", Address: "127.0.0.1", Port: 1, Weight: 300})
	register(t, nd, &rosterv1.Instance{Service: "web", Id: "c", Address: "::ffff:127.0.0.1", Port: 1, Weight: 5})
	register(t, nd, &rosterv1.Instance{Service: "web", Id: "d", Address: "127.0.0.1", Port: 2})
	register(t, nd, &rosterv1.Instance{Service: "web", Id: "h1", Address: "web-1.example.com", Port: 80, Weight: 1})
	register(t, nd, &rosterv1.Instance{Service: "web", Id: "h2", Address: "WEB-1.example.com", Port: 80, Weight: 2})
	for i := range 7 {
		register(t, nd, &rosterv1.Instance{Service: "web", Id: fmt.Sprintf("big%d", i), Address: "10.9.9.9", Port: 9, Weight: 10000})
	}
	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, addr, network, "_web._tcp.service.roster.", dns.TypeSRV, 4096)
		got := map[string]uint16{}
		for _, s := range answers[*dns.SRV](r.Answer) {
			key := fmt.Sprintf("%s:%d", strings.ToLower(s.Target), s.Port)
			if _, dup := got[key]; dup {
				t.Errorf("%s: duplicate SRV record for %s", network, key)
			}
			got[key] = s.Weight
		}
		want := map[string]uint16{
			"7f000001.addr.roster.:1": 405,
			"7f000001.addr.roster.:2": 100,
			"web-1.example.com.:80":   3,
			"0a090909.addr.roster.:9": 65535,
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: SRV weights %v, want %v", network, got, want)
		}
		if extra := answers[*dns.A](r.Extra); len(extra) != 2 {
			t.Errorf("%s: additional A records %v, want one per address", network, extra)
		}
		if got := sortedA(ask(t, addr, network, "web.service.roster.", dns.TypeA, 0).Answer); !slices.Equal(got, []string{"10.9.9.9", "127.0.0.1"}) {
			t.Errorf("%s: A answers %v, want each address once", network, got)
		}
	}
}

// TestEDNSVersion: a query with an EDNS version above 0 gets BADVERS and no
// answers, with an OPT record of version 0 (RFC 6891 §6.1.3); version 0 is
// answered.
func TestEDNSVersion(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.Nodes[0]
	addr := serve(t, nd, "")
	register(t, nd, &rosterv1.Instance{Service: "web", Id: "a", Address: "10.0.0.1", Port: 80})
	for _, network := range []string{"udp", "tcp"} {
		for _, version := range []uint8{0, 1, 255} {
			m := new(dns.Msg)
			m.SetQuestion("web.service.roster.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(version)
			c := &dns.Client{Net: network, Timeout: 5 * time.Second}
			r, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Fatalf("%s version %d: %v", network, version, err)
			}
			opt := r.IsEdns0()
			if opt == nil || opt.Version() != 0 {
				t.Errorf("%s version %d: OPT %v, want one of version 0", network, version, opt)
			}
			want, answers := dns.RcodeSuccess, 1
			if version > 0 {
				want, answers = dns.RcodeBadVers, 0
			}
			if r.Rcode != want || len(r.Answer) != answers {
				t.Errorf("%s version %d: rcode %d with %d answers, want %d (%s) with %d",
					network, version, r.Rcode, len(r.Answer), want, map[int]string{0: "NOERROR", 16: "BADVERS"}[want], answers)
			}
		}
	}
}

// TestEmptyNonTerminalsAndNameServer: names that exist only because names
// below them do are NOERROR without answers, not NXDOMAIN (RFC 8020), and
// the name server the NS record names has the address the server listens
// on, so it is not lame.
func TestEmptyNonTerminalsAndNameServer(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.Nodes[0]
	addr := serve(t, nd, "")
	register(t, nd, &rosterv1.Instance{Service: "web", Id: "a", Address: "10.0.0.1", Port: 80, Tags: []string{"V2"}})
	register(t, nd, &rosterv1.Instance{Namespace: "prod", Service: "api", Id: "a", Address: "10.0.0.2", Port: 80})

	soa := func(r *dns.Msg) bool { return len(answers[*dns.SOA](r.Ns)) == 1 }
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"service.roster.", dns.TypeA},
		{"addr.roster.", dns.TypeA},
		{"ns.roster.", dns.TypeAAAA}, // it listens on 127.0.0.1
		{"ns.roster.", dns.TypeTXT},
		{"prod.ns.roster.", dns.TypeA},
		{"service.prod.ns.roster.", dns.TypeSRV},
		{"_tcp.service.roster.", dns.TypeA},
		{"_udp.service.prod.ns.roster.", dns.TypeA},
		{"_v2.service.roster.", dns.TypeA},
		{"_tcp.service.default.ns.roster.", dns.TypeA},
	} {
		r := ask(t, addr, "udp", q.name, q.qtype, 0)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || !soa(r) {
			t.Errorf("%s %s: rcode %s, %d answers, authority %v; want NODATA with the SOA",
				q.name, dns.TypeToString[q.qtype], dns.RcodeToString[r.Rcode], len(r.Answer), r.Ns)
		}
	}
	// Names nothing is below stay NXDOMAIN.
	for _, name := range []string{"nope.ns.roster.", "service.nope.ns.roster.", "_nope.service.roster.",
		"_tcp.service.nope.ns.roster.", "_v2.service.prod.ns.roster.", "x.service.prod.ns.roster.", "bad_ns.ns.roster."} {
		if r := ask(t, addr, "udp", name, dns.TypeA, 0); r.Rcode != dns.RcodeNameError || !soa(r) {
			t.Errorf("%s: rcode %s; want NXDOMAIN with the SOA", name, dns.RcodeToString[r.Rcode])
		}
	}
	// The names below still answer.
	if srvs := answers[*dns.SRV](ask(t, addr, "udp", "_api._tcp.service.prod.ns.roster.", dns.TypeSRV, 0).Answer); len(srvs) != 1 {
		t.Errorf("_api._tcp.service.prod.ns: %v", srvs)
	}

	r := ask(t, addr, "udp", "roster.", dns.TypeNS, 0)
	ns := answers[*dns.NS](r.Answer)
	if len(ns) != 1 || ns[0].Ns != "ns.roster." {
		t.Fatalf("apex NS: %v", r.Answer)
	}
	if glue := sortedA(r.Extra); !slices.Equal(glue, []string{"127.0.0.1"}) {
		t.Errorf("apex NS additional: %v; want ns.roster. A 127.0.0.1", r.Extra)
	}
	for _, qtype := range []uint16{dns.TypeA, dns.TypeANY} {
		r = ask(t, addr, "udp", "ns.roster.", qtype, 0)
		if got := sortedA(r.Answer); r.Rcode != dns.RcodeSuccess || !slices.Equal(got, []string{"127.0.0.1"}) {
			t.Errorf("ns.roster. %s: rcode %s, %v; want 127.0.0.1, the address the server listens on",
				dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], got)
		}
	}
}

// TestNameServerOnAWildcardAddress: a server listening on every address
// cannot tell by which one a resolver reaches it, so ns.DOMAIN has the
// address it is given (rosterd's advertised gRPC IP), or none.
func TestNameServerOnAWildcardAddress(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{})
	nd := c.Nodes[0]
	for _, tc := range []struct {
		nsAddr netip.Addr
		want   []string
	}{
		{netip.MustParseAddr("192.0.2.7"), []string{"192.0.2.7"}},
		{netip.MustParseAddr("127.0.0.1"), nil}, // remote resolvers would ask themselves
		{netip.Addr{}, nil},
	} {
		s, err := dnsapi.Listen("0.0.0.0:0", dnsapi.Config{Conn: nd.Conn, NSAddr: tc.nsAddr})
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 2)
		s.Start(errc)
		_, port, _ := net.SplitHostPort(s.Addr())
		addr := net.JoinHostPort("127.0.0.1", port)
		r := ask(t, addr, "udp", "ns.roster.", dns.TypeA, 0)
		if got := sortedA(r.Answer); r.Rcode != dns.RcodeSuccess || !slices.Equal(got, tc.want) {
			t.Errorf("NSAddr %v: ns.roster. A: rcode %s, %v; want %v", tc.nsAddr, dns.RcodeToString[r.Rcode], got, tc.want)
		}
		r = ask(t, addr, "udp", "roster.", dns.TypeNS, 0)
		if got := sortedA(r.Extra); !slices.Equal(got, tc.want) {
			t.Errorf("NSAddr %v: apex NS additional %v; want %v", tc.nsAddr, got, tc.want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("dns shutdown: %v", err)
		}
		cancel()
	}
}

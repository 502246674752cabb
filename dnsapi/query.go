package dnsapi

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// handler answers queries; see the README's DNS section for the names.
type handler struct {
	cfg      Config
	domain   string // canonical, with the trailing dot
	ttl      uint32
	registry rosterv1.RegistryClient
	logger   hclog.Logger
	// nsAddr is the address of ns.DOMAIN: the IP the server listens on,
	// invalid when it listens on a wildcard address or is served on
	// listeners of the caller's own.
	nsAddr netip.Addr
}

// lookup is a parsed service name.
type lookup struct {
	namespace string
	service   string
	tag       string
	srvForm   bool // _SERVICE._tcp: the RFC 2782 form
}

// ServeDNS implements dns.Handler.
func (h *handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = false
	m.Compress = true
	switch {
	case r.Opcode != dns.OpcodeQuery:
		m.SetRcode(r, dns.RcodeNotImplemented)
	case len(r.Question) != 1:
		m.SetRcode(r, dns.RcodeFormatError)
	case r.IsEdns0() != nil && r.IsEdns0().Version() > 0:
		// Only EDNS version 0 is spoken: BADVERS, with an OPT record of
		// version 0 (send adds it), and the query is not answered (RFC
		// 6891 §6.1.3).
		m.Rcode = dns.RcodeBadVers
	default:
		h.answer(m, r.Question[0])
	}
	h.send(w, r, m)
}

// send fits m in what the client can take: over UDP 512 bytes, or the
// EDNS0 buffer size it advertised; over TCP a whole message. Records that
// do not fit are left out, and the TC bit tells the client to ask over TCP
// when answers were.
func (h *handler) send(w dns.ResponseWriter, r *dns.Msg, m *dns.Msg) {
	size := dns.MaxMsgSize
	if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
		size = dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
	}
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(uint16(min(size, dns.MaxMsgSize)), false)
	}
	m.Truncate(size)
	if err := w.WriteMsg(m); err != nil {
		h.logger.Debug("writing a DNS answer failed", "error", err)
	}
}

func (h *handler) answer(m *dns.Msg, q dns.Question) {
	name := dns.CanonicalName(q.Name)
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY || !dns.IsSubDomain(h.domain, name) {
		// Not a name this server is an authority for: refused, without
		// the AA bit, which would claim it is (RFC 1035 4.1.1).
		m.Rcode = dns.RcodeRefused
		m.Authoritative = false
		return
	}
	labels := dns.SplitDomainName(strings.TrimSuffix(strings.TrimSuffix(name, h.domain), "."))
	if name == h.domain {
		labels = nil
	}
	switch {
	case len(labels) == 0:
		h.apex(m, q)
		return
	case len(labels) == 1 && labels[0] == "ns":
		h.nameserver(m, q, name)
		return
	case len(labels) == 1 && (labels[0] == "service" || labels[0] == "addr"):
		m.Ns = []dns.RR{h.soa()} // empty non-terminals: NODATA, never NXDOMAIN
		return
	case len(labels) == 2 && labels[1] == "addr":
		h.addr(m, q, name, labels[0])
		return
	}
	if ent, ok := parseEmptyNonTerminal(labels); ok {
		if rcode := h.exists(ent); rcode != dns.RcodeSuccess {
			m.Rcode = rcode
			if rcode == dns.RcodeNameError {
				m.Ns = []dns.RR{h.soa()}
			}
			return
		}
		m.Ns = []dns.RR{h.soa()} // NODATA: names exist below it
		return
	}
	lk, ok := parseService(labels)
	if !ok {
		h.nxdomain(m)
		return
	}
	insts, rcode := h.instances(lk)
	if rcode != dns.RcodeSuccess {
		m.Rcode = rcode
		if rcode == dns.RcodeNameError {
			m.Ns = []dns.RR{h.soa()}
		}
		return
	}
	rand.Shuffle(len(insts), func(i, j int) { insts[i], insts[j] = insts[j], insts[i] })
	switch q.Qtype {
	case dns.TypeSRV:
		h.srv(m, name, insts)
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		if lk.srvForm && q.Qtype != dns.TypeANY {
			break // the RFC 2782 name only has SRV records
		}
		seen := map[netip.Addr]bool{}
		for _, inst := range insts {
			ip, err := netip.ParseAddr(inst.Address)
			if err != nil {
				continue // a hostname: only in SRV answers
			}
			// One record per address: ::ffff:10.0.0.1 is 10.0.0.1, as the
			// SRV targets spell it.
			if ip = ip.Unmap(); seen[ip] {
				continue
			}
			if rr := h.ipRR(name, ip, q.Qtype); rr != nil {
				seen[ip] = true
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{h.soa()} // NODATA: the name exists, not this type
	}
}

// emptyNonTerminal is a name with no records of its own that exists
// because names below it do (RFC 8020: it must not be NXDOMAIN):
//
//	NAMESPACE.ns, service.NAMESPACE.ns  a service of the namespace
//	_tcp.service[.NAMESPACE.ns]         (_udp alike) a service
//	_TAG.service[.NAMESPACE.ns]         a service with the tag
//
// service, addr and ns under the domain are empty non-terminals whatever
// the registry holds.
type emptyNonTerminal struct {
	namespace string // empty: the default namespace
	tag       string // empty: any service
}

// parseEmptyNonTerminal tells whether labels name an empty non-terminal
// whose existence depends on the registry's services.
func parseEmptyNonTerminal(labels []string) (emptyNonTerminal, bool) {
	var ent emptyNonTerminal
	n := len(labels)
	if n >= 2 && labels[n-1] == "ns" {
		ent.namespace = labels[n-2]
		labels = labels[:n-2]
		if len(labels) == 0 || len(labels) == 1 && labels[0] == "service" {
			return ent, true
		}
	}
	if len(labels) != 2 || labels[1] != "service" || len(labels[0]) < 2 || !strings.HasPrefix(labels[0], "_") {
		return ent, false
	}
	if p := labels[0][1:]; p != "tcp" && p != "udp" {
		ent.tag = p
	}
	return ent, true
}

// exists answers whether the names below ent exist: RcodeSuccess when a
// service of its namespace (with its tag, if it has one) has a healthy
// instance, NXDOMAIN when none has or the namespace is invalid, REFUSED or
// SERVFAIL as for a service name. A tag counts if any instance of such a
// service has it, healthy or not: the service summaries carry no more,
// and an empty answer where there is no name is harmless, while NXDOMAIN
// where there is one would deny the names below it to a resolver.
func (h *handler) exists(ent emptyNonTerminal) int {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Timeout)
	defer cancel()
	if h.cfg.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.cfg.Token)
	}
	namespace := ent.namespace
	if namespace == "" {
		namespace = defaultNamespace
	}
	resp, err := h.registry.ListServices(ctx, &rosterv1.ListServicesRequest{
		Namespace: namespace,
		WithTags:  ent.tag != "",
		Read:      &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE},
	})
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound, codes.InvalidArgument:
		return dns.RcodeNameError
	case codes.PermissionDenied:
		return dns.RcodeRefused
	default:
		h.logger.Warn("dns lookup failed", "namespace", namespace, "error", err)
		return dns.RcodeServerFailure
	}
	for _, svc := range resp.Services {
		if svc.Passing == 0 {
			continue
		}
		if ent.tag == "" || slices.ContainsFunc(svc.Tags, func(t string) bool { return strings.EqualFold(t, ent.tag) }) {
			return dns.RcodeSuccess
		}
	}
	return dns.RcodeNameError
}

// defaultNamespace is the namespace of a name without .NAMESPACE.ns, as
// the registry names it.
const defaultNamespace = "default"

// parseService reads the labels before the domain:
//
//	SERVICE.service[.NAMESPACE.ns]
//	TAG.SERVICE.service[.NAMESPACE.ns]
//	_SERVICE._tcp.service[.NAMESPACE.ns]  (RFC 2782; _udp alike)
//	_SERVICE._TAG.service[.NAMESPACE.ns]
func parseService(labels []string) (lookup, bool) {
	var lk lookup
	if n := len(labels); n >= 2 && labels[n-1] == "ns" {
		lk.namespace = labels[n-2]
		labels = labels[:n-2]
	}
	if n := len(labels); n < 2 || labels[n-1] != "service" {
		return lk, false
	}
	labels = labels[:len(labels)-1]
	switch {
	case len(labels) == 1:
		lk.service = labels[0]
	case len(labels) == 2 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_"):
		lk.service = labels[0][1:]
		if p := labels[1][1:]; p != "tcp" && p != "udp" {
			lk.tag = p
		}
		lk.srvForm = true
	case len(labels) == 2:
		lk.tag, lk.service = labels[0], labels[1]
	default:
		return lk, false
	}
	return lk, lk.service != ""
}

// instances returns the healthy instances of lk from this node's state,
// or the rcode to answer with: NXDOMAIN for an unknown or invalid name
// (the registry's validation decides) or a service with no healthy
// instance, SERVFAIL when the node cannot answer.
func (h *handler) instances(lk lookup) ([]*rosterv1.Instance, int) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Timeout)
	defer cancel()
	if h.cfg.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.cfg.Token)
	}
	req := &rosterv1.GetServiceRequest{
		Namespace:   lk.namespace,
		Service:     lk.service,
		HealthyOnly: true,
		Read:        &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_STALE},
	}
	resp, err := h.registry.GetService(ctx, req)
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound, codes.InvalidArgument:
		return nil, dns.RcodeNameError
	case codes.PermissionDenied:
		// ACLs are on and the DNS token may not read this service.
		return nil, dns.RcodeRefused
	default:
		h.logger.Warn("dns lookup failed", "namespace", lk.namespace, "service", lk.service, "error", err)
		return nil, dns.RcodeServerFailure
	}
	insts := resp.Instances
	if lk.tag != "" {
		// The query name arrives lowercased (and resolvers may change its
		// case), so tags match ignoring case, as Consul's DNS does; the
		// Registry's own tag filter is exact.
		insts = slices.DeleteFunc(insts, func(in *rosterv1.Instance) bool {
			return !slices.ContainsFunc(in.Tags, func(t string) bool { return strings.EqualFold(t, lk.tag) })
		})
	}
	if len(insts) == 0 {
		return nil, dns.RcodeNameError
	}
	return insts, dns.RcodeSuccess
}

// srv answers SRV records: an IP address becomes a target name under
// addr.DOMAIN, with its A/AAAA record in the additional section; a hostname
// is the target as it is.
//
// Instances that share a target and a port (several registrations of one
// address and port, e.g. Consul registrations without an address, which
// take the caller's) are one SRV record, as an RRset holds no duplicates
// (RFC 2181 §5): its weight is the sum of theirs, capped at 65,535, so the
// endpoint keeps the share of traffic its instances add up to.
func (h *handler) srv(m *dns.Msg, name string, insts []*rosterv1.Instance) {
	type endpoint struct {
		target string // canonical (lowercase) target name
		port   uint16
	}
	extra := map[string]bool{}
	records := map[endpoint]*dns.SRV{}
	for _, inst := range insts {
		weight := inst.Weight
		if weight == 0 {
			weight = 100
		}
		rr := &dns.SRV{
			Hdr:      dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: h.ttl},
			Priority: 1,
			Weight:   uint16(min(weight, 65535)),
			Port:     uint16(inst.Port),
		}
		if ip, err := netip.ParseAddr(inst.Address); err == nil {
			ip = ip.Unmap()
			rr.Target = h.addrName(ip)
			if !extra[rr.Target] {
				extra[rr.Target] = true
				qt := dns.TypeA
				if ip.Is6() {
					qt = dns.TypeAAAA
				}
				m.Extra = append(m.Extra, h.ipRR(rr.Target, ip, qt))
			}
		} else if _, ok := dns.IsDomainName(inst.Address); ok && inst.Address != "" {
			rr.Target = dns.Fqdn(inst.Address)
		} else {
			continue
		}
		key := endpoint{dns.CanonicalName(rr.Target), rr.Port}
		if prev := records[key]; prev != nil {
			prev.Weight = uint16(min(uint32(prev.Weight)+uint32(rr.Weight), 65535))
			continue
		}
		records[key] = rr
		m.Answer = append(m.Answer, rr)
	}
}

// addrName is the name of an IP address: its bytes in hex under
// addr.DOMAIN, as Consul spells it.
func (h *handler) addrName(ip netip.Addr) string {
	b := ip.AsSlice()
	return hex.EncodeToString(b) + ".addr." + h.domain
}

// addr answers HEX.addr.DOMAIN with the address it spells.
func (h *handler) addr(m *dns.Msg, q dns.Question, name, label string) {
	b, err := hex.DecodeString(label)
	ip, ok := netip.AddrFromSlice(b)
	if err != nil || !ok {
		h.nxdomain(m)
		return
	}
	qt := q.Qtype
	if qt == dns.TypeANY {
		qt = dns.TypeA
		if ip.Is6() {
			qt = dns.TypeAAAA
		}
	}
	if rr := h.ipRR(name, ip, qt); rr != nil {
		m.Answer = append(m.Answer, rr)
		return
	}
	m.Ns = []dns.RR{h.soa()}
}

// ipRR is the A (qtype A) or AAAA (qtype AAAA) record of ip, or nil when ip
// is of the other family.
func (h *handler) ipRR(name string, ip netip.Addr, qtype uint16) dns.RR {
	ip = ip.Unmap()
	switch {
	case ip.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: h.ttl}, A: ip.AsSlice()}
	case ip.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
		return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: h.ttl}, AAAA: ip.AsSlice()}
	}
	return nil
}

// apex answers the domain itself: its SOA and NS (with the name server's
// address in the additional section when it has one).
func (h *handler) apex(m *dns.Msg, q dns.Question) {
	switch q.Qtype {
	case dns.TypeSOA, dns.TypeANY:
		m.Answer = append(m.Answer, h.soa())
	case dns.TypeNS:
		m.Answer = append(m.Answer, &dns.NS{
			Hdr: dns.RR_Header{Name: h.domain, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: h.ttl},
			Ns:  h.nsName(),
		})
		if h.nsAddr.IsValid() {
			m.Extra = append(m.Extra, h.ipRR(h.nsName(), h.nsAddr, dns.TypeANY))
		}
	default:
		m.Ns = []dns.RR{h.soa()}
	}
}

// nsName is the name server the NS and SOA records name.
func (h *handler) nsName() string { return "ns." + h.domain }

// nameserver answers ns.DOMAIN: the address the server listens on when it
// listens on one IP address. On a wildcard address (0.0.0.0, ::) it cannot
// tell which of the host's addresses a resolver reaches it by, so the name
// exists without address records (NODATA). It is also the parent of
// NAMESPACE.ns names, so it exists either way.
func (h *handler) nameserver(m *dns.Msg, q dns.Question, name string) {
	if h.nsAddr.IsValid() {
		if rr := h.ipRR(name, h.nsAddr, q.Qtype); rr != nil {
			m.Answer = append(m.Answer, rr)
			return
		}
	}
	m.Ns = []dns.RR{h.soa()}
}

func (h *handler) nxdomain(m *dns.Msg) {
	m.Rcode = dns.RcodeNameError
	m.Ns = []dns.RR{h.soa()}
}

// soa is the domain's SOA record; its minimum (the negative-caching TTL)
// is the record TTL, so a new service is found as soon as a record would
// have expired.
func (h *handler) soa() dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: h.domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: h.ttl},
		Ns:      h.nsName(),
		Mbox:    "hostmaster." + h.domain,
		Serial:  uint32(time.Now().Unix()),
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  h.ttl,
	}
}

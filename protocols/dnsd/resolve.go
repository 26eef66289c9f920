package dnsd

import (
	"github.com/miekg/dns"
)

// maxChase bounds the CNAME chain followed inside one zone.
const maxChase = 8

// resolve fills m's rcode and its answer, authority and additional sections for
// (qname, qtype), qname in lower case. It is the reference semantics of the server;
// the pre-packed answers of the fast path are produced by it.
//
// fullANY answers ANY with every RRset (used over TCP); otherwise ANY gets the
// synthesized HINFO of RFC 8482 §4.2.
func (t *table) resolve(m *dns.Msg, qname string, qtype uint16, fullANY bool) {
	zd := t.findZone(qname)
	if zd == nil {
		// Not ours: never recurse, never forward (RFC 5358 §4).
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	name := qname
	for hops := 0; ; hops++ {
		n := zd.lookup(name)
		if n == nil {
			// RFC 2308 §2.1 and RFC 6604 §3: after a CNAME the rcode is the target's.
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, zd.negSOA)
			return
		}
		if qtype == dns.TypeANY && len(n.types) > 0 {
			if fullANY {
				for _, t := range n.types {
					m.Answer = append(m.Answer, owned(n.rrsets[t], name)...)
				}
				return
			}
			m.Answer = append(m.Answer, rfc8482HINFO(name, n))
			return
		}
		if rrs := n.rrsets[qtype]; rrs != nil {
			m.Answer = append(m.Answer, owned(rrs, name)...)
			zd.additional(m, rrs)
			return
		}
		c := n.rrsets[dns.TypeCNAME]
		if c == nil || qtype == dns.TypeCNAME {
			// NODATA: NOERROR with the SOA in authority (RFC 2308 §2.2).
			m.Ns = append(m.Ns, zd.negSOA)
			return
		}
		m.Answer = append(m.Answer, owned(c, name)...)
		target := dns.CanonicalName(c[0].(*dns.CNAME).Target)
		if hops+1 >= maxChase || t.findZone(target) != zd || cnameOwnerIn(m.Answer, target) {
			// RFC 1034 §4.3.2 step 3a: the resolver follows what we cannot.
			return
		}
		name = target
	}
}

// rfc8482HINFO is the minimal ANY answer (RFC 8482 §4.2), with the smallest TTL of
// the RRsets it stands for.
func rfc8482HINFO(name string, n *node) dns.RR {
	ttl := uint32(DefaultTTL)
	for _, rrs := range n.rrsets {
		ttl = min(ttl, rrs[0].Header().Ttl)
	}
	return &dns.HINFO{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: ttl},
		Cpu: "RFC8482"}
}

// owned returns rrs with owner name; wildcard answers are copied and renamed
// (RFC 4592 §3.3.1), exact ones are shared with the table and must not be changed.
func owned(rrs []dns.RR, name string) []dns.RR {
	if rrs[0].Header().Name == name {
		return rrs
	}
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
		out[i].Header().Name = name
	}
	return out
}

func cnameOwnerIn(answer []dns.RR, name string) bool {
	for _, rr := range answer {
		if rr.Header().Rrtype == dns.TypeCNAME && rr.Header().Name == name {
			return true
		}
	}
	return false
}

// additional adds the in-zone addresses of MX, SRV and NS targets so resolvers save
// a round trip (RFC 1035 §3.3.9, RFC 2782). Only exact in-zone names: anything else
// would be out of bailiwick and ignored.
func (zd *zoneData) additional(m *dns.Msg, rrs []dns.RR) {
	for _, rr := range rrs {
		var target string
		switch rr := rr.(type) {
		case *dns.MX:
			target = rr.Mx
		case *dns.SRV:
			target = rr.Target
		case *dns.NS:
			target = rr.Ns
		default:
			return
		}
		target = dns.CanonicalName(target)
		n := zd.names[target]
		if n == nil || addrIn(m.Extra, target) {
			continue
		}
		m.Extra = append(m.Extra, n.rrsets[dns.TypeA]...)
		m.Extra = append(m.Extra, n.rrsets[dns.TypeAAAA]...)
	}
}

func addrIn(extra []dns.RR, name string) bool {
	for _, rr := range extra {
		if rr.Header().Name == name {
			return true
		}
	}
	return false
}

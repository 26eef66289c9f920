package dnsd

import (
	"net"
	"time"

	"github.com/miekg/dns"
)

// DefaultZone returns the records a new mail domain needs (SPEC D1): SOA and NS (the
// name server is ns1.<domain>), A/AAAA for the name server and for the mail host when
// it is inside the domain, MX 10 to the mail host, SPF, DMARC and, when dkimSelector
// is not empty, the DKIM key at <selector>._domainkey. v4 and v6 are the addresses
// clients must reach (the virtual IP in a cluster). An empty mailHost means
// mail.<domain>. The SOA serial comes from the caller through Zone.Serial (initially
// 1); dkimTXT is the full key record ("v=DKIM1; k=rsa; p=...") and is split into
// 255-byte strings.
func DefaultZone(domain, mailHost string, v4, v6 []net.IP, dkimSelector, dkimTXT string) Zone {
	origin := dns.CanonicalName(domain)
	ns := "ns1." + origin
	if mailHost == "" {
		mailHost = "mail." + origin
	}
	mailHost = dns.CanonicalName(mailHost)
	const ttl = DefaultTTL
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	z := Zone{Origin: origin, Serial: 1}
	add := func(rr dns.RR) { z.Records = append(z.Records, fromRR(rr)) }

	// RFC 1912 §2.2 values: refresh 1 h, retry 15 min, expire 14 days; RFC 2308 §5
	// negative caching 5 min so a newly added name is visible soon.
	add(&dns.SOA{Hdr: hdr(origin, dns.TypeSOA), Ns: ns, Mbox: "hostmaster." + origin,
		Serial: z.Serial, Refresh: 3600, Retry: 900, Expire: 1209600, Minttl: 300})
	add(&dns.NS{Hdr: hdr(origin, dns.TypeNS), Ns: ns})
	addrs := func(name string) {
		for _, ip := range v4 {
			if ip4 := ip.To4(); ip4 != nil {
				add(&dns.A{Hdr: hdr(name, dns.TypeA), A: ip4})
			}
		}
		for _, ip := range v6 {
			if ip.To4() == nil && ip.To16() != nil {
				add(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: ip.To16()})
			}
		}
	}
	addrs(ns)
	if mailHost != ns && dns.IsSubDomain(origin, mailHost) {
		addrs(mailHost)
	}
	add(&dns.MX{Hdr: hdr(origin, dns.TypeMX), Preference: 10, Mx: mailHost})
	// RFC 7208: only the domain's MX hosts may send for it.
	add(&dns.TXT{Hdr: hdr(origin, dns.TypeTXT), Txt: splitTXT("v=spf1 mx -all")})
	// RFC 7489 §6.1: the policy record lives at _dmarc.<domain>.
	add(&dns.TXT{Hdr: hdr("_dmarc."+origin, dns.TypeTXT),
		Txt: splitTXT("v=DMARC1; p=quarantine; rua=mailto:postmaster@" + origin[:len(origin)-1])})
	if dkimSelector != "" && dkimTXT != "" {
		// RFC 6376 §3.6.2.1: <selector>._domainkey.<domain>.
		add(&dns.TXT{Hdr: hdr(dns.CanonicalName(dkimSelector)+"_domainkey."+origin, dns.TypeTXT),
			Txt: splitTXT(dkimTXT)})
	}
	return z
}

// splitTXT cuts s into character-strings of at most 255 bytes (RFC 1035 §3.3).
func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// NextSerial returns the SOA serial to use after old: the date form YYYYMMDDnn
// (RFC 1912 §2.2) when it is ahead of old, else old+1. Either way the result is
// greater than old in RFC 1982 serial arithmetic, so secondaries see every change.
func NextSerial(old uint32, now time.Time) uint32 {
	y, m, d := now.UTC().Date()
	date := uint32(y*1000000 + int(m)*10000 + d*100)
	if int32(date-old) > 0 {
		return date
	}
	return old + 1
}

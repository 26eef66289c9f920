package dnsd

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// table is the compiled, immutable form of every hosted zone at one ZoneSource
// version. The server swaps whole tables atomically, so readers never lock.
type table struct {
	version uint64
	zones   map[string]*zoneData // origin → zone
	// fast maps the lower-case wire form of a name to its pre-packed answers.
	fast map[string]*fastName
}

// zoneData is one compiled zone.
type zoneData struct {
	origin string
	soa    *dns.SOA // serial = Zone.Serial
	negSOA *dns.SOA // SOA for negative answers: TTL = min(TTL, MINIMUM), RFC 2308 §3
	names  map[string]*node
	// all holds every record except the SOA, in canonical order, for AXFR.
	all []dns.RR
}

// node is an owner name. A node without RRsets is an empty non-terminal: it exists
// because names below it exist, so queries for it get NODATA, not NXDOMAIN
// (RFC 8020), and it blocks wildcard synthesis (RFC 4592 §2.2.2).
type node struct {
	rrsets map[uint16][]dns.RR
	types  []uint16 // keys of rrsets, sorted
}

// buildTable compiles zones. Records that fail validation are left out and reported
// in the returned problems, so one bad record cannot take a whole zone down.
func buildTable(version uint64, zones []*Zone) (*table, []error) {
	t := &table{version: version, zones: map[string]*zoneData{}, fast: map[string]*fastName{}}
	var problems []error
	sorted := slices.Clone(zones)
	slices.SortFunc(sorted, func(a, b *Zone) int { return cmp.Compare(a.Origin, b.Origin) })
	for _, z := range sorted {
		if z == nil {
			continue
		}
		zd, errs := compileZone(z)
		problems = append(problems, errs...)
		if zd == nil {
			continue
		}
		if t.zones[zd.origin] != nil {
			problems = append(problems, fmt.Errorf("zone %s listed twice; first kept", zd.origin))
			continue
		}
		t.zones[zd.origin] = zd
	}
	for _, zd := range t.zones {
		t.compileFast(zd)
	}
	return t, problems
}

// compileZone indexes one zone.
func compileZone(z *Zone) (*zoneData, []error) {
	origin, err := normalizeOrigin(z.Origin)
	if err != nil {
		return nil, []error{fmt.Errorf("zone %q: %w", z.Origin, err)}
	}
	var problems []error
	zd := &zoneData{origin: origin, names: map[string]*node{}}
	for _, r := range z.Records {
		rr, err := parseRR(origin, r)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if s, ok := rr.(*dns.SOA); ok {
			if zd.soa == nil {
				zd.soa = s
			}
			continue
		}
		zd.add(rr)
	}
	if zd.soa == nil {
		zd.soa = &dns.SOA{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: DefaultTTL},
			Ns: "ns1." + origin, Mbox: "hostmaster." + origin, Refresh: 3600, Retry: 900, Expire: 1209600, Minttl: 300}
	}
	zd.soa.Serial = z.Serial
	zd.negSOA = dns.Copy(zd.soa).(*dns.SOA)
	zd.negSOA.Hdr.Ttl = min(zd.soa.Hdr.Ttl, zd.soa.Minttl)
	zd.node(origin).rrsets[dns.TypeSOA] = []dns.RR{zd.soa}
	for name, n := range zd.names {
		// RFC 1034 §3.6.2: a CNAME owner has no other data. Validation refuses it;
		// if it still arrives, the other data wins and the CNAME is dropped.
		if c := n.rrsets[dns.TypeCNAME]; c != nil && (len(n.rrsets) > 1 || len(c) > 1) {
			problems = append(problems, fmt.Errorf("zone %s: %s has a CNAME beside other data; CNAME ignored", origin, name))
			delete(n.rrsets, dns.TypeCNAME)
			if len(n.rrsets) == 0 {
				n.rrsets[dns.TypeCNAME] = c[:1]
			}
		}
		n.types = n.types[:0]
		for t, rrs := range n.rrsets {
			n.types = append(n.types, t)
			// RFC 2181 §5.2: one TTL per RRset; use the smallest.
			ttl := rrs[0].Header().Ttl
			for _, rr := range rrs {
				ttl = min(ttl, rr.Header().Ttl)
			}
			for _, rr := range rrs {
				rr.Header().Ttl = ttl
			}
		}
		slices.Sort(n.types)
	}
	// Canonical order (RFC 4034 §6.1 is close enough: by name, then type) keeps
	// AXFR output and tests stable.
	for _, name := range zd.sortedNames() {
		n := zd.names[name]
		for _, t := range n.types {
			if t == dns.TypeSOA {
				continue
			}
			zd.all = append(zd.all, n.rrsets[t]...)
		}
	}
	return zd, problems
}

// node returns the node for name, creating it and its empty non-terminal ancestors
// up to the apex.
func (zd *zoneData) node(name string) *node {
	n := zd.names[name]
	if n != nil {
		return n
	}
	n = &node{rrsets: map[uint16][]dns.RR{}}
	zd.names[name] = n
	for p := name; p != zd.origin; {
		off, end := dns.NextLabel(p, 0)
		if end {
			break
		}
		p = p[off:]
		if zd.names[p] != nil {
			break
		}
		zd.names[p] = &node{rrsets: map[uint16][]dns.RR{}}
	}
	return n
}

// add puts rr into its RRset, dropping exact duplicates (RFC 2181 §5).
func (zd *zoneData) add(rr dns.RR) {
	h := rr.Header()
	h.Name = dns.CanonicalName(h.Name)
	n := zd.node(h.Name)
	for _, old := range n.rrsets[h.Rrtype] {
		if dns.IsDuplicate(old, rr) {
			return
		}
	}
	n.rrsets[h.Rrtype] = append(n.rrsets[h.Rrtype], rr)
}

// sortedNames returns the owner names in canonical order (RFC 4034 §6.1): by label
// from the right.
func (zd *zoneData) sortedNames() []string {
	names := make([]string, 0, len(zd.names))
	for name := range zd.names {
		names = append(names, name)
	}
	slices.SortFunc(names, compareNames)
	return names
}

func compareNames(a, b string) int {
	la, lb := dns.SplitDomainName(a), dns.SplitDomainName(b)
	for i, j := len(la)-1, len(lb)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		if c := strings.Compare(la[i], lb[j]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(la), len(lb))
}

// findZone returns the most specific hosted zone containing name (lower case), or nil.
func (t *table) findZone(name string) *zoneData {
	for off := 0; ; {
		if zd := t.zones[name[off:]]; zd != nil {
			return zd
		}
		var end bool
		off, end = dns.NextLabel(name, off)
		if end {
			return nil
		}
	}
}

// lookup finds the node answering for name in zd: the exact owner, or the wildcard
// at the closest encloser (RFC 4592 §3.3.1). nil means the name does not exist.
func (zd *zoneData) lookup(name string) *node {
	if n := zd.names[name]; n != nil {
		return n
	}
	for off := 0; ; {
		var end bool
		off, end = dns.NextLabel(name, off)
		if end || !dns.IsSubDomain(zd.origin, name[off:]) {
			return nil
		}
		if zd.names[name[off:]] != nil {
			// name[off:] is the closest encloser; only its wildcard may answer.
			return zd.names["*."+name[off:]]
		}
	}
}

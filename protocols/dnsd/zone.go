package dnsd

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/miekg/dns"
)

// DefaultTTL is used for records whose TTL is 0 when they are parsed.
const DefaultTTL = 3600

// Record is one resource record of a hosted zone, as stored and as shown to the admin.
type Record struct {
	Name  string `json:"name"`  // owner, fully qualified, lower case: "www.example.com."
	Type  string `json:"type"`  // "A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "PTR", "NS" or "SOA"
	TTL   uint32 `json:"ttl"`   // seconds; 0 means DefaultTTL when parsed
	Value string `json:"value"` // presentation-format RDATA: "10 mail.example.com."
}

// Zone is one hosted zone. Serial is the authoritative SOA serial: the server puts it
// into the SOA record whatever serial the SOA Value carries, so the store only has to
// advance Zone.Serial (see NextSerial) on every change.
type Zone struct {
	Origin  string // fully qualified, lower case: "example.com."
	Serial  uint32
	Records []Record
}

// ZoneSource is the replicated zone store as the DNS server sees it.
//
// The server polls Version and, when it changed, calls Zones and compiles a new
// answer table. A change landing between the two calls is picked up by the next
// poll, so Version must be read before the zones it describes.
type ZoneSource interface {
	// Version changes whenever any zone is added, changed or removed.
	Version() uint64
	// Zones returns every hosted zone. The server does not modify the result.
	Zones() []*Zone
}

// recordTypes are the types an admin may add; the server serves exactly these.
var recordTypes = map[string]uint16{
	"A": dns.TypeA, "AAAA": dns.TypeAAAA, "CNAME": dns.TypeCNAME, "MX": dns.TypeMX,
	"TXT": dns.TypeTXT, "SRV": dns.TypeSRV, "CAA": dns.TypeCAA, "PTR": dns.TypePTR,
	"NS": dns.TypeNS, "SOA": dns.TypeSOA,
}

// RecordError says which record is wrong and why.
type RecordError struct {
	Record Record
	Reason string
	Err    error
}

func (e *RecordError) Error() string {
	s := fmt.Sprintf("dns record %s %s %q: %s", e.Record.Name, e.Record.Type, e.Record.Value, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *RecordError) Unwrap() error { return e.Err }

// ParseRecord validates r as a record of the zone origin and returns it normalized:
// the name fully qualified and lower case ("@" and relative names are completed with
// origin, as are relative names inside Value), the type upper case, TTL 0 replaced by
// DefaultTTL, and Value in canonical presentation format. A TXT value not starting
// with a quote is taken as one string, quoted, and split into 255-byte strings.
func ParseRecord(origin string, r Record) (Record, error) {
	// Zones are stored as JSON, which cannot carry invalid UTF-8 unchanged:
	// such a record would not be the one the admin entered.
	if !utf8.ValidString(r.Name) || !utf8.ValidString(r.Value) || !utf8.ValidString(r.Type) {
		return Record{}, &RecordError{Record: r, Reason: "not valid UTF-8 text"}
	}
	rr, err := parseRR(origin, r)
	if err != nil {
		return Record{}, err
	}
	out := fromRR(rr)
	// miekg/dns accepts some values (e.g. a CAA tag that is empty once
	// parsed) whose presentation form it cannot read back; a record that
	// would not survive a zone export and re-import is refused now.
	again, err := parseRR(origin, out)
	if err != nil {
		return Record{}, &RecordError{Record: r, Reason: "value does not survive normalisation", Err: err}
	}
	if fromRR(again) != out {
		return Record{}, &RecordError{Record: r, Reason: "value has no stable written form (e.g. an empty CAA tag)"}
	}
	return out, nil
}

// parseRR is ParseRecord returning the miekg/dns form.
func parseRR(origin string, r Record) (dns.RR, error) {
	bad := func(reason string, err error) (dns.RR, error) {
		return nil, &RecordError{Record: r, Reason: reason, Err: err}
	}
	origin, err := normalizeOrigin(origin)
	if err != nil {
		return bad("bad zone origin", err)
	}
	typ := strings.ToUpper(strings.TrimSpace(r.Type))
	rrtype, ok := recordTypes[typ]
	if !ok {
		return bad("unsupported type (want A, AAAA, CNAME, MX, TXT, SRV, CAA, PTR, NS or SOA)", nil)
	}
	name, err := ownerName(origin, r.Name)
	if err != nil {
		return bad("bad owner name", err)
	}
	value := strings.TrimSpace(r.Value)
	if value == "" {
		return bad("empty value", nil)
	}
	if i := strings.IndexFunc(value, func(c rune) bool { return c < 0x20 || c == 0x7f }); i >= 0 {
		return bad("control character in value (use \\DDD escapes)", nil)
	}
	if rrtype == dns.TypeTXT && value[0] != '"' {
		value = QuoteTXT(value)
	}
	if err := checkUnquoted(value); err != nil {
		return bad("bad value", err)
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	// The zone-file parser with an $ORIGIN completes relative names in the value;
	// $INCLUDE is off by default and the owner is always written first, so the line
	// cannot be a directive.
	line := name + " " + strconv.FormatUint(uint64(ttl), 10) + " IN " + typ + " " + value + "\n"
	zp := dns.NewZoneParser(strings.NewReader(line), origin, "")
	rr, ok := zp.Next()
	if err := zp.Err(); err != nil {
		return bad("cannot parse value", err)
	}
	if !ok || rr == nil {
		return bad("cannot parse value", nil)
	}
	if _, more := zp.Next(); more {
		return bad("value holds more than one record", nil)
	}
	if rr.Header().Rrtype != rrtype {
		return bad("value parsed as another type", nil)
	}
	if !dns.IsSubDomain(origin, rr.Header().Name) {
		return bad("owner is outside zone "+origin, nil)
	}
	if err := checkRR(origin, rr); err != nil {
		return bad("invalid record", err)
	}
	return rr, nil
}

// checkRR applies the rules the server relies on beyond syntax.
func checkRR(origin string, rr dns.RR) error {
	h := rr.Header()
	apex := h.Name == origin
	switch rr := rr.(type) {
	case *dns.SOA:
		if !apex {
			return errors.New("SOA only at the zone apex")
		}
	case *dns.NS:
		// Delegation is not supported: NS below the apex would make the server
		// answer authoritatively for a child zone it does not serve.
		if !apex {
			return errors.New("NS only at the zone apex (delegation is not supported)")
		}
	case *dns.CNAME:
		if apex {
			return errors.New("CNAME not allowed at the zone apex (RFC 1034 §3.6.2)")
		}
		if dns.CanonicalName(rr.Target) == h.Name {
			return errors.New("CNAME points to itself")
		}
	case *dns.TXT:
		if len(rr.Txt) == 0 {
			return errors.New("TXT without strings")
		}
	}
	if _, err := dns.PackRR(rr, make([]byte, dns.MaxMsgSize), 0, nil, false); err != nil {
		return fmt.Errorf("does not fit a DNS message: %w", err)
	}
	return nil
}

// fromRR turns a parsed record back into the stored form.
func fromRR(rr dns.RR) Record {
	h := rr.Header()
	return Record{
		Name:  dns.CanonicalName(h.Name),
		Type:  dns.TypeToString[h.Rrtype],
		TTL:   h.Ttl,
		Value: strings.TrimPrefix(rr.String(), h.String()),
	}
}

// normalizeOrigin returns origin fully qualified and lower case.
func normalizeOrigin(origin string) (string, error) {
	origin = strings.TrimSpace(origin)
	if origin == "" || origin == "." {
		return "", errors.New("empty or root origin")
	}
	if _, ok := dns.IsDomainName(origin); !ok || strings.ContainsAny(origin, " \\\"();@$") {
		return "", fmt.Errorf("%q is not a domain name", origin)
	}
	return dns.CanonicalName(origin), nil
}

// ownerName completes name against origin: "@" or "" is the apex, a name without a
// final dot is relative.
func ownerName(origin, name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "" || name == "@":
		return origin, nil
	case strings.ContainsAny(name, " \t\\\"();@$"):
		return "", fmt.Errorf("%q has characters not allowed in a host name", name)
	case !dns.IsFqdn(name):
		name += "." + origin
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return "", fmt.Errorf("%q is not a domain name", name)
	}
	name = dns.CanonicalName(name)
	if !dns.IsSubDomain(origin, name) {
		return "", fmt.Errorf("%q is outside zone %s", name, origin)
	}
	return name, nil
}

// checkUnquoted rejects a ';' outside quotes: the zone-file parser would take the
// rest of the line as a comment and silently store less than the admin typed.
func checkUnquoted(v string) error {
	in, esc := false, false
	for _, c := range v {
		switch {
		case esc:
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			in = !in
		case c == ';' && !in:
			return errors.New("';' outside quotes")
		}
	}
	if in {
		return errors.New("unterminated quote")
	}
	return nil
}

// QuoteTXT returns s as TXT presentation data: one logical string, escaped, split
// into quoted character-strings of at most 255 bytes (RFC 1035 §3.3.14; RFC 7208
// §3.3 and RFC 6376 §3.6.2.2 join them again without spaces).
func QuoteTXT(s string) string {
	var b strings.Builder
	for len(s) > 0 || b.Len() == 0 {
		n := min(len(s), 255)
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('"')
		for _, c := range []byte(s[:n]) {
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c >= 0x7f:
				fmt.Fprintf(&b, "\\%03d", c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		s = s[n:]
	}
	return b.String()
}

// Validate checks every record of z and the rules between them: one SOA at the apex,
// and no other data beside a CNAME (RFC 1034 §3.6.2; RFC 2181 §10.1). It returns all
// problems joined.
func (z *Zone) Validate() error {
	origin, err := normalizeOrigin(z.Origin)
	if err != nil {
		return fmt.Errorf("zone %q: %w", z.Origin, err)
	}
	var errs []error
	soa := 0
	types := map[string]map[uint16]int{}
	for _, r := range z.Records {
		rr, err := parseRR(origin, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h := rr.Header()
		if h.Rrtype == dns.TypeSOA {
			soa++
		}
		if types[h.Name] == nil {
			types[h.Name] = map[uint16]int{}
		}
		types[h.Name][h.Rrtype]++
	}
	if soa > 1 {
		errs = append(errs, fmt.Errorf("zone %s: %d SOA records, want one", origin, soa))
	}
	for name, ts := range types {
		if n := ts[dns.TypeCNAME]; n > 1 || n == 1 && len(ts) > 1 {
			errs = append(errs, fmt.Errorf("zone %s: %s has a CNAME and other records (RFC 1034 §3.6.2)", origin, name))
		}
	}
	return errors.Join(errs...)
}

// ZoneFile renders z in RFC 1035 §5 master-file format, for export, for display to
// the admin and for other servers (NSD, BIND) to load. The SOA carries Zone.Serial.
func (z *Zone) ZoneFile() string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n", z.Origin)
	for _, r := range z.Records {
		value := r.Value
		if strings.EqualFold(r.Type, "SOA") {
			if rr, err := parseRR(z.Origin, r); err == nil {
				soa := rr.(*dns.SOA)
				soa.Serial = z.Serial
				value = fromRR(soa).Value
			}
		}
		fmt.Fprintf(&b, "%s\t%d\tIN\t%s\t%s\n", r.Name, r.TTL, r.Type, value)
	}
	return b.String()
}

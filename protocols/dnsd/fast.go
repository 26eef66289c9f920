package dnsd

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// The fast path answers the common query — one uncompressed question of class IN,
// maybe an EDNS(0) OPT record, nothing else — from responses packed when the table
// was compiled: it copies the template, patches the ID, the RD bit and the question
// (keeping the client's letter case, which 0x20-randomizing resolvers check), and
// appends an OPT record. Anything the fast parser does not accept goes through
// miekg/dns in the slow path, which is the reference; the fuzz tests check the two
// agree.

// Header bits, RFC 1035 §4.1.1.
const (
	bitQR = 0x8000
	bitAA = 0x0400
	bitTC = 0x0200
	bitRD = 0x0100
	bitCD = 0x0010

	headerLen = 12
	optLen    = 11 // root name, type, class, TTL, RDLENGTH 0
	// ednsDO is the DNSSEC OK bit in the OPT TTL (RFC 3225 §3).
	ednsDO = 0x8000
)

// query is what the fast path reads from a request.
type query struct {
	id      uint16
	flags   uint16
	qend    int // offset just after the question
	qtype   uint16
	qclass  uint16
	edns    bool
	udpSize uint16
	do      bool
}

// parseQuery reads req as a fast-path query, writing the lower-case wire form of the
// question name into key (which must have room for 255 bytes). ok is false when req
// is anything else; the slow path then decides.
func parseQuery(req []byte, key []byte) (q query, name []byte, ok bool) {
	if len(req) < headerLen {
		return q, nil, false
	}
	q.id = binary.BigEndian.Uint16(req)
	q.flags = binary.BigEndian.Uint16(req[2:])
	// A query (QR=0) with OPCODE QUERY, no RCODE, one question, no answer or
	// authority records and at most one additional record (the OPT).
	if q.flags&(bitQR|0x7800|0x000f) != 0 ||
		binary.BigEndian.Uint16(req[4:]) != 1 ||
		binary.BigEndian.Uint16(req[6:]) != 0 ||
		binary.BigEndian.Uint16(req[8:]) != 0 {
		return q, nil, false
	}
	arcount := binary.BigEndian.Uint16(req[10:])
	if arcount > 1 {
		return q, nil, false
	}
	// QNAME: length-prefixed labels up to the root label; a compression pointer or
	// an extended label type sends the packet to the slow path (RFC 1035 §4.1.2).
	off := headerLen
	name = key[:0]
	for {
		if off >= len(req) {
			return q, nil, false
		}
		l := int(req[off])
		if l == 0 {
			name = append(name, 0)
			off++
			break
		}
		if l > 63 || off+1+l > len(req) || len(name)+1+l+1 > 255 {
			return q, nil, false
		}
		name = append(name, byte(l))
		for _, c := range req[off+1 : off+1+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			name = append(name, c)
		}
		off += 1 + l
	}
	if off+4 > len(req) {
		return q, nil, false
	}
	q.qtype = binary.BigEndian.Uint16(req[off:])
	q.qclass = binary.BigEndian.Uint16(req[off+2:])
	off += 4
	q.qend = off
	if q.qclass != dns.ClassINET {
		return q, nil, false
	}
	if arcount == 0 {
		return q, name, off == len(req)
	}
	// OPT pseudo-RR, RFC 6891 §6.1.2: root owner, TYPE 41, CLASS = UDP payload size,
	// TTL = extended RCODE, VERSION, flags. Only version 0 without extended RCODE.
	if off+optLen > len(req) || req[off] != 0 || binary.BigEndian.Uint16(req[off+1:]) != dns.TypeOPT {
		return q, nil, false
	}
	q.edns = true
	q.udpSize = binary.BigEndian.Uint16(req[off+3:])
	if req[off+5] != 0 || req[off+6] != 0 {
		return q, nil, false
	}
	q.do = binary.BigEndian.Uint16(req[off+7:])&ednsDO != 0
	rdlen := int(binary.BigEndian.Uint16(req[off+9:]))
	off += optLen
	if off+rdlen != len(req) {
		return q, nil, false
	}
	// Options are {code, length, data}; their contents are ignored (RFC 6891 §6.1.2:
	// unknown options are ignored), but their framing must be sound.
	for opts := req[off:]; len(opts) > 0; {
		if len(opts) < 4 {
			return q, nil, false
		}
		l := int(binary.BigEndian.Uint16(opts[2:]))
		if 4+l > len(opts) {
			return q, nil, false
		}
		opts = opts[4+l:]
	}
	return q, name, true
}

// fastName holds the pre-packed answers for one owner name.
type fastName struct {
	types []typedTemplate // qtypes with their own answer (few: linear scan)
	other *template       // every other data type: NODATA, or the CNAME chain's end
}

type typedTemplate struct {
	qtype uint16
	tpl   *template
}

// template is a packed response with ID 0 and RD clear, for the question as it was
// compiled (lower case); noExtra is the same without the additional section, used
// when the full one does not fit (RFC 2181 §9: dropping additional data needs no TC).
type template struct {
	full    []byte
	noExtra []byte
}

// isDataType reports whether t asks for data the "other" template may answer: not
// a meta or question-only type (RFC 6895 §3.1: 128–255, and OPT 41), not 0.
func isDataType(t uint16) bool {
	return t != 0 && t != dns.TypeOPT && (t < 128 || t > 255)
}

// compileFast packs the answers for every name of zd. Types that exist in the zone
// get their own template at names that hold them or that hold a CNAME (whose answer
// depends on the type at the chain's end); all other types share "other".
func (t *table) compileFast(zd *zoneData) {
	zoneTypes := map[uint16]bool{dns.TypeCNAME: true}
	for _, n := range zd.names {
		for _, ty := range n.types {
			zoneTypes[ty] = true
		}
	}
	wire := make([]byte, 256)
	for name, n := range zd.names {
		if t.findZone(name) != zd {
			continue // below a more specific hosted zone, which answers for it
		}
		l, err := dns.PackDomainName(name, wire, 0, nil, false)
		if err != nil {
			continue
		}
		fn := &fastName{other: t.template(name, dns.TypeNULL)}
		if fn.other == nil {
			continue
		}
		add := func(ty uint16) {
			if tpl := t.template(name, ty); tpl != nil {
				fn.types = append(fn.types, typedTemplate{ty, tpl})
			}
		}
		add(dns.TypeANY)
		if n.rrsets[dns.TypeCNAME] != nil {
			for ty := range zoneTypes {
				add(ty)
			}
		} else {
			for _, ty := range n.types {
				add(ty)
			}
		}
		t.fast[string(lowerWire(wire[:l]))] = fn
	}
}

// template resolves (name, qtype) and packs the response; nil if it does not pack.
func (t *table) template(name string, qtype uint16) *template {
	m := new(dns.Msg)
	m.Response = true
	m.Compress = true
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	t.resolve(m, name, qtype, false)
	full, err := m.Pack()
	if err != nil {
		return nil
	}
	tpl := &template{full: full}
	if len(m.Extra) > 0 {
		m.Extra = nil
		if tpl.noExtra, err = m.Pack(); err != nil {
			return nil
		}
	}
	return tpl
}

func lowerWire(b []byte) []byte {
	// Label length bytes are at most 63, below 'A', so they are never changed.
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}

// answerFast writes the answer to q into out, or returns nil when the name has no
// templates or the type needs the slow path. limit is the largest response the
// client accepts.
func (t *table) answerFast(q *query, req, name []byte, limit int, tcp bool, maxUDP uint16, out []byte) []byte {
	fn := t.fast[string(name)]
	if fn == nil || (tcp && q.qtype == dns.TypeANY) {
		return nil
	}
	var tpl *template
	for i := range fn.types {
		if fn.types[i].qtype == q.qtype {
			tpl = fn.types[i].tpl
			break
		}
	}
	if tpl == nil {
		if !isDataType(q.qtype) {
			return nil
		}
		tpl = fn.other
	}
	extra := 0
	if q.edns {
		extra = optLen
	}
	body := tpl.full
	if len(body)+extra > limit {
		body = tpl.noExtra
	}
	if body == nil || len(body)+extra > limit {
		return truncated(q, req, true, maxUDP, out)
	}
	out = append(out[:0], body...)
	binary.BigEndian.PutUint16(out, q.id)
	out[2] |= byte((q.flags & bitRD) >> 8)
	out[3] |= byte(q.flags & bitCD) // RFC 6840 §5.9: CD is copied
	copy(out[headerLen:q.qend], req[headerLen:q.qend])
	if q.edns {
		out = appendOPT(out, maxUDP, q.do)
	}
	return out
}

// truncated writes the empty TC=1 answer that sends the client to TCP (RFC 1035
// §4.2.1, RFC 7766 §5): header, the question, and the OPT record when EDNS was used.
func truncated(q *query, req []byte, aa bool, maxUDP uint16, out []byte) []byte {
	out = append(out[:0], req[:q.qend]...)
	flags := bitQR | bitTC | q.flags&(bitRD|bitCD)
	if aa {
		flags |= bitAA
	}
	binary.BigEndian.PutUint16(out[2:], flags)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], 0)
	binary.BigEndian.PutUint16(out[8:], 0)
	binary.BigEndian.PutUint16(out[10:], 0)
	if q.edns {
		out = appendOPT(out, maxUDP, q.do)
	}
	return out
}

// appendOPT adds our OPT record (RFC 6891 §6.1.2) and counts it in ARCOUNT.
func appendOPT(out []byte, udpSize uint16, do bool) []byte {
	var flags uint16
	if do {
		flags = ednsDO // RFC 3225 §3: the DO bit is copied into the response
	}
	out = append(out, 0, byte(dns.TypeOPT>>8), byte(dns.TypeOPT), byte(udpSize>>8), byte(udpSize),
		0, 0, byte(flags>>8), byte(flags), 0, 0)
	binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1)
	return out
}

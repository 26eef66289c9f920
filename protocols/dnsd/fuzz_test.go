package dnsd

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

type packet struct {
	name string
	data []byte
}

func hdr(id, flags, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	for i, v := range []uint16{id, flags, qd, an, ns, ar} {
		binary.BigEndian.PutUint16(b[2*i:], v)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// malformedPackets are RELIABILITY #34's hostile packets (RFC 9267 §2; miekg/dns
// #848; sofia-sip #338) and their relatives.
func malformedPackets() []packet {
	typeA := []byte{0, 1, 0, 1}
	mail := []byte("\x04mail\x07example\x03com\x00")
	label64 := cat([]byte{64}, bytes.Repeat([]byte("a"), 64), []byte{0})
	var long []byte
	for range 5 {
		long = append(long, 59)
		long = append(long, bytes.Repeat([]byte("b"), 59)...)
	}
	long = append(long, 0) // 301 bytes
	opt := func(rdata []byte) []byte {
		b := []byte{0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(b[9:], uint16(len(rdata)))
		return cat(b, rdata)
	}
	return []packet{
		{"truncated header", []byte{0, 1, 0, 0, 0}},
		{"qdcount 65535 in a 12-byte packet", hdr(1, 0, 65535, 0, 0, 0)},
		{"all counts 65535", hdr(1, 0, 65535, 65535, 65535, 65535)},
		{"self pointer", cat(hdr(2, 0, 1, 0, 0, 0), []byte{0xc0, 0x0c}, typeA)},
		{"forward pointer beyond the end", cat(hdr(3, 0, 1, 0, 0, 0), []byte{0xc0, 0xff}, typeA)},
		{"pointer loop", cat(hdr(4, 0, 1, 0, 0, 0), []byte{0xc0, 0x0e, 0xc0, 0x0c}, typeA)},
		{"label length 64", cat(hdr(5, 0, 1, 0, 0, 0), label64, typeA)},
		{"reserved label type", cat(hdr(6, 0, 1, 0, 0, 0), []byte{0x41, 'a', 0}, typeA)},
		{"name of 300 bytes", cat(hdr(7, 0, 1, 0, 0, 0), long, typeA)},
		{"question cut short", cat(hdr(8, 0, 1, 0, 0, 0), mail[:6])},
		{"no type and class", cat(hdr(9, 0, 1, 0, 0, 0), mail)},
		{"bogus EDNS option length", cat(hdr(10, 0, 1, 0, 0, 1), mail, typeA, opt([]byte{0, 10, 0, 100, 1, 2}))},
		{"EDNS rdlength past the end", cat(hdr(11, 0, 1, 0, 0, 1), mail, typeA, []byte{0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0xff, 0xff})},
		{"OPT with a name", cat(hdr(12, 0, 1, 0, 0, 1), mail, typeA, mail, []byte{0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0})},
		{"bad client subnet option", cat(hdr(13, 0, 1, 0, 0, 1), mail, typeA, opt([]byte{0, 8, 0, 4, 0, 9, 99, 0}))},
		{"answer count lies", cat(hdr(14, 0, 1, 3, 0, 0), mail, typeA)},
		{"response bit set", cat(hdr(15, 0x8000, 1, 0, 0, 0), mail, typeA)},
		{"opcode 15", cat(hdr(16, 0x7800, 1, 0, 0, 0), mail, typeA)},
		{"trailing garbage", cat(hdr(17, 0, 1, 0, 0, 0), mail, typeA, []byte("garbage"))},
		{"AXFR from a non-peer", cat(hdr(18, 0, 1, 0, 0, 0), []byte("\x07example\x03com\x00"), []byte{0, 252, 0, 1})},
	}
}

func seedQueries() [][]byte {
	var out [][]byte
	for _, q := range []struct {
		name string
		t    uint16
		edns uint16
	}{
		{"mail.example.com.", dns.TypeA, 0}, {"example.com.", dns.TypeMX, 1232}, {"big.example.com.", dns.TypeTXT, 4096},
		{"example.com.", dns.TypeANY, 0}, {"x.wild.example.com.", dns.TypeA, 512}, {"alias.example.com.", dns.TypeAAAA, 0},
		{"www.example.org.", dns.TypeA, 0}, {"example.com.", dns.TypeAXFR, 0}, {"nope.example.com.", dns.TypeSOA, 1232},
	} {
		m := question(q.name, q.t)
		if q.edns > 0 {
			m.SetEdns0(q.edns, true)
		}
		b, _ := m.Pack()
		out = append(out, b)
	}
	return out
}

// FuzzServeMsg feeds raw packets to the handler: it must not panic, every reply must
// decode and fit the client's limit, and whatever the fast parser accepts, miekg/dns
// must read the same way.
func FuzzServeMsg(f *testing.F) {
	for _, b := range seedQueries() {
		f.Add(b, false)
		f.Add(b, true)
	}
	for _, p := range malformedPackets() {
		f.Add(p.data, false)
	}
	s, _ := testServer(f, Config{})
	tbl := s.tbl.Load()
	f.Fuzz(func(t *testing.T, data []byte, tcp bool) {
		sc := newScratch()
		q, key, ok := parseQuery(data, sc.key[:])
		if ok {
			checkParseAgrees(t, data, &q, key)
		}
		resp, _ := s.handle(tbl, data, testClient, tcp, sc)
		if resp == nil {
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(resp); err != nil {
			t.Fatalf("reply does not decode: %v\nreq  % x\nresp % x", err, data, resp)
		}
		if !r.Response || r.Id != binary.BigEndian.Uint16(data) {
			t.Fatalf("reply header %v", r.MsgHdr)
		}
		if !tcp {
			limit := 1232
			if ok && !q.edns {
				limit = 512
			}
			if len(resp) > limit {
				t.Fatalf("UDP reply of %d bytes over %d", len(resp), limit)
			}
		}
	})
}

// checkParseAgrees compares the fast parser with miekg/dns.
func checkParseAgrees(t *testing.T, data []byte, q *query, key []byte) {
	m := new(dns.Msg)
	if err := m.Unpack(data); err != nil {
		// miekg/dns reads EDNS option contents we ignore (RFC 6891 §6.1.2); without
		// the OPT record the message must read.
		stripped := append([]byte(nil), data[:q.qend]...)
		binary.BigEndian.PutUint16(stripped[10:], 0)
		if !q.edns || m.Unpack(stripped) != nil {
			t.Fatalf("fast parser accepted what miekg/dns rejects: %v\n% x", err, data)
		}
	}
	if len(m.Question) != 1 {
		t.Fatalf("questions %v", m.Question)
	}
	wire := make([]byte, 256)
	n, err := dns.PackDomainName(m.Question[0].Name, wire, 0, nil, false)
	if err != nil || !bytes.Equal(lowerWire(wire[:n]), key) {
		t.Fatalf("name %q (% x) vs fast key % x (%v)", m.Question[0].Name, wire[:n], key, err)
	}
	if m.Question[0].Qtype != q.qtype || m.Question[0].Qclass != q.qclass || m.Id != q.id {
		t.Fatalf("question %v vs %+v", m.Question[0], q)
	}
	if opt := m.IsEdns0(); opt != nil && (!q.edns || opt.UDPSize() != q.udpSize || opt.Do() != q.do) {
		t.Fatalf("OPT %v vs %+v", opt, q)
	}
}

// FuzzParseRecord checks that admin input never panics, and that what is accepted
// is stable, packs, and is served.
func FuzzParseRecord(f *testing.F) {
	for _, r := range []Record{
		{"www", "A", 60, "192.0.2.1"}, {"@", "MX", 0, "10 mail"}, {"@", "TXT", 60, `v=spf1 mx -all`},
		{"_sip._tcp", "SRV", 60, "0 5 5060 sip"}, {"@", "CAA", 60, `0 issue "ca.example"`},
		{"x", "CNAME", 60, "y.example.net."}, {"1", "PTR", 60, "h.example.com."}, {"@", "NS", 60, "ns1"},
		{"@", "SOA", 60, "ns1 hostmaster 1 2 3 4 5"}, {"@", "AAAA", 60, "2001:db8::1"},
		{"@", "TXT", 60, `"a" ( "b" )`}, {"@", "TXT", 60, `\# 3 026869`},
	} {
		f.Add("example.com.", r.Name, r.Type, r.TTL, r.Value)
	}
	f.Fuzz(func(t *testing.T, origin, name, typ string, ttl uint32, value string) {
		r, err := ParseRecord(origin, Record{name, typ, ttl, value})
		if err != nil {
			return
		}
		again, err := ParseRecord(origin, r)
		if err != nil || again != r {
			t.Fatalf("normalized %#v does not parse to itself: %#v %v", r, again, err)
		}
		o, _ := normalizeOrigin(origin)
		tbl, _ := buildTable(1, []*Zone{{Origin: o, Records: []Record{r}}})
		s := &Server{maxUDP: 1232, log: discardLogger()}
		qt := dns.StringToType[r.Type]
		m := question(r.Name, qt)
		b, err := m.Pack()
		if err != nil {
			return
		}
		resp, _ := s.handle(tbl, b, testClient, true, newScratch())
		rm := new(dns.Msg)
		if err := rm.Unpack(resp); err != nil {
			t.Fatalf("reply for %v: %v", r, err)
		}
		if qt != dns.TypeSOA && len(rm.Answer) == 0 && !strings.HasPrefix(r.Name, "*") {
			t.Fatalf("record %#v not served: %v", r, rm)
		}
	})
}

package dnsd

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// dkimKey is a 2048-bit-sized DKIM record, longer than one TXT string.
var dkimKey = "v=DKIM1; k=rsa; p=" + strings.Repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 9)

// testZones returns the zones most tests serve: a default mail domain with one of
// every record type and the awkward cases, and a reverse zone.
func testZones(t testing.TB) []Zone {
	z := DefaultZone("Example.COM", "mail.example.com",
		[]net.IP{net.ParseIP("192.0.2.10")}, []net.IP{net.ParseIP("2001:db8::10")}, "sel", dkimKey)
	z.Serial = 2026010101
	extra := []Record{
		{"www", "CNAME", 300, "mail"},
		{"alias", "CNAME", 300, "www.example.com."},
		{"dangling", "CNAME", 300, "nothere"},
		{"out", "CNAME", 300, "www.example.net."},
		{"loop1", "CNAME", 300, "loop2"},
		{"loop2", "CNAME", 300, "loop1"},
		{"_imaps._tcp", "SRV", 300, "0 1 993 mail"},
		{"@", "CAA", 300, `0 issue "letsencrypt.org"`},
		{"*.wild", "A", 300, "192.0.2.50"},
		{"*.wild", "TXT", 300, "wildcard text"},
		{"ptr", "PTR", 300, "mail.example.com."},
		{"a.b.c", "A", 300, "192.0.2.60"},
		{"v6only", "AAAA", 300, "2001:db8::60"},
	}
	for i := range 8 {
		extra = append(extra, Record{"big", "TXT", 300, fmt.Sprintf("%d%s", i, strings.Repeat("x", 200))})
	}
	for _, r := range extra {
		n, err := ParseRecord(z.Origin, r)
		if err != nil {
			t.Fatalf("test record %v: %v", r, err)
		}
		z.Records = append(z.Records, n)
	}
	if err := z.Validate(); err != nil {
		t.Fatalf("test zone invalid: %v", err)
	}
	rev := Zone{Origin: "2.0.192.in-addr.arpa.", Serial: 7, Records: []Record{
		{"2.0.192.in-addr.arpa.", "NS", 3600, "ns1.example.com."},
		{"10.2.0.192.in-addr.arpa.", "PTR", 3600, "mail.example.com."},
	}}
	return []Zone{z, rev}
}

func testServer(t testing.TB, cfg Config) (*Server, *MemorySource) {
	src := NewMemorySource(testZones(t)...)
	if cfg.Zones == nil {
		cfg.Zones = src
	}
	if cfg.Addrs == nil {
		cfg.Addrs = []string{"127.0.0.1:0"}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Refresh()
	return s, src
}

var testClient = netip.MustParseAddr("192.0.2.1")

// ask runs q through the handler as the network would, and decodes the reply.
func ask(t testing.TB, s *Server, q *dns.Msg, tcp bool) *dns.Msg {
	t.Helper()
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	resp, xfr := s.handle(s.tbl.Load(), b, testClient, tcp, newScratch())
	if xfr != nil {
		t.Fatalf("unexpected transfer")
	}
	if resp == nil {
		return nil
	}
	r := new(dns.Msg)
	if err := r.Unpack(resp); err != nil {
		t.Fatalf("reply does not decode: %v (% x)", err, resp)
	}
	if r.Id != q.Id || !r.Response {
		t.Fatalf("reply id %d response %v, want id %d", r.Id, r.Response, q.Id)
	}
	return r
}

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// rrStrings renders a section compactly for comparisons.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

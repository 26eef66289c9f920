package dnsd

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestAnswers(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, Config{})
	soa := "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2026010101 3600 900 1209600 300"
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		rcode   int
		answer  []string
		ns      []string
		extra   []string
		notAuth bool
	}{
		{name: "A", qname: "mail.example.com.", qtype: dns.TypeA,
			answer: []string{"mail.example.com. 3600 IN A 192.0.2.10"}},
		{name: "AAAA", qname: "mail.example.com.", qtype: dns.TypeAAAA,
			answer: []string{"mail.example.com. 3600 IN AAAA 2001:db8::10"}},
		{name: "MX with additional addresses", qname: "example.com.", qtype: dns.TypeMX,
			answer: []string{"example.com. 3600 IN MX 10 mail.example.com."},
			extra:  []string{"mail.example.com. 3600 IN A 192.0.2.10", "mail.example.com. 3600 IN AAAA 2001:db8::10"}},
		{name: "NS", qname: "example.com.", qtype: dns.TypeNS,
			answer: []string{"example.com. 3600 IN NS ns1.example.com."},
			extra:  []string{"ns1.example.com. 3600 IN A 192.0.2.10", "ns1.example.com. 3600 IN AAAA 2001:db8::10"}},
		{name: "SOA carries Zone.Serial", qname: "example.com.", qtype: dns.TypeSOA,
			answer: []string{"example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 2026010101 3600 900 1209600 300"}},
		{name: "SPF", qname: "example.com.", qtype: dns.TypeTXT,
			answer: []string{`example.com. 3600 IN TXT "v=spf1 mx -all"`}},
		{name: "DMARC", qname: "_dmarc.example.com.", qtype: dns.TypeTXT,
			answer: []string{`_dmarc.example.com. 3600 IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com"`}},
		{name: "CAA", qname: "example.com.", qtype: dns.TypeCAA,
			answer: []string{`example.com. 300 IN CAA 0 issue "letsencrypt.org"`}},
		{name: "SRV", qname: "_imaps._tcp.example.com.", qtype: dns.TypeSRV,
			answer: []string{"_imaps._tcp.example.com. 300 IN SRV 0 1 993 mail.example.com."},
			extra:  []string{"mail.example.com. 3600 IN A 192.0.2.10", "mail.example.com. 3600 IN AAAA 2001:db8::10"}},
		{name: "PTR", qname: "10.2.0.192.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"10.2.0.192.in-addr.arpa. 3600 IN PTR mail.example.com."}},
		{name: "CNAME chased in zone", qname: "alias.example.com.", qtype: dns.TypeA,
			answer: []string{"alias.example.com. 300 IN CNAME www.example.com.",
				"www.example.com. 300 IN CNAME mail.example.com.", "mail.example.com. 3600 IN A 192.0.2.10"}},
		{name: "CNAME asked for itself", qname: "www.example.com.", qtype: dns.TypeCNAME,
			answer: []string{"www.example.com. 300 IN CNAME mail.example.com."}},
		{name: "CNAME to NXDOMAIN (RFC 6604)", qname: "dangling.example.com.", qtype: dns.TypeA,
			rcode:  dns.RcodeNameError,
			answer: []string{"dangling.example.com. 300 IN CNAME nothere.example.com."}, ns: []string{soa}},
		{name: "CNAME out of zone left to the resolver", qname: "out.example.com.", qtype: dns.TypeA,
			answer: []string{"out.example.com. 300 IN CNAME www.example.net."}},
		{name: "CNAME loop stops", qname: "loop1.example.com.", qtype: dns.TypeA,
			answer: []string{"loop1.example.com. 300 IN CNAME loop2.example.com.", "loop2.example.com. 300 IN CNAME loop1.example.com."}},
		{name: "NXDOMAIN with SOA", qname: "nope.example.com.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "NODATA with SOA", qname: "v6only.example.com.", qtype: dns.TypeA, ns: []string{soa}},
		{name: "empty non-terminal is NODATA (RFC 8020)", qname: "b.c.example.com.", qtype: dns.TypeA, ns: []string{soa}},
		{name: "below an existing name is NXDOMAIN", qname: "x.mail.example.com.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "wildcard", qname: "anything.wild.example.com.", qtype: dns.TypeA,
			answer: []string{"anything.wild.example.com. 300 IN A 192.0.2.50"}},
		{name: "wildcard deep", qname: "a.b.wild.example.com.", qtype: dns.TypeTXT,
			answer: []string{`a.b.wild.example.com. 300 IN TXT "wildcard text"`}},
		{name: "wildcard NODATA", qname: "x.wild.example.com.", qtype: dns.TypeMX, ns: []string{soa}},
		{name: "wildcard does not cover its parent", qname: "wild.example.com.", qtype: dns.TypeA, ns: []string{soa}},
		{name: "ANY is RFC 8482 HINFO over UDP", qname: "example.com.", qtype: dns.TypeANY,
			answer: []string{`example.com. 300 IN HINFO "RFC8482" ""`}},
		{name: "ANY at missing name", qname: "nope.example.com.", qtype: dns.TypeANY,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "foreign zone REFUSED", qname: "www.example.org.", qtype: dns.TypeA,
			rcode: dns.RcodeRefused, notAuth: true},
		{name: "parent of a zone REFUSED", qname: "com.", qtype: dns.TypeNS,
			rcode: dns.RcodeRefused, notAuth: true},
		{name: "case insensitive", qname: "MaIl.ExAmPlE.cOm.", qtype: dns.TypeA,
			answer: []string{"MaIl.ExAmPlE.cOm. 3600 IN A 192.0.2.10"}},
	}
	for _, tc := range tests {
		for _, edns := range []bool{false, true} {
			t.Run(tc.name, func(t *testing.T) {
				q := question(tc.qname, tc.qtype)
				q.RecursionDesired = true
				if edns {
					q.SetEdns0(1232, true)
				}
				r := ask(t, s, q, false)
				if r.Rcode != tc.rcode {
					t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if r.Authoritative == tc.notAuth {
					t.Errorf("AA %v", r.Authoritative)
				}
				if r.RecursionAvailable || !r.RecursionDesired {
					t.Errorf("RA %v RD %v: want RA clear, RD copied", r.RecursionAvailable, r.RecursionDesired)
				}
				if r.Question[0].Name != tc.qname {
					t.Errorf("question %q, want the client's spelling %q", r.Question[0].Name, tc.qname)
				}
				equalRRs(t, "answer", r.Answer, tc.answer)
				equalRRs(t, "authority", r.Ns, tc.ns)
				extra := r.Extra
				if opt := r.IsEdns0(); (opt != nil) != edns {
					t.Errorf("OPT %v, want %v", opt, edns)
				} else if opt != nil {
					if opt.UDPSize() != 1232 || !opt.Do() || opt.Version() != 0 {
						t.Errorf("OPT %v, want size 1232, DO copied", opt)
					}
					extra = slices.DeleteFunc(slices.Clone(extra), func(rr dns.RR) bool { return rr == opt })
				}
				equalRRs(t, "additional", extra, tc.extra)
			})
		}
	}
}

func equalRRs(t *testing.T, section string, got []dns.RR, want []string) {
	t.Helper()
	g := rrStrings(got)
	if !slices.Equal(g, want) {
		t.Errorf("%s:\n got %q\nwant %q", section, g, want)
	}
}

func TestDKIMRecordSplit(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, Config{})
	r := ask(t, s, question("sel._domainkey.example.com.", dns.TypeTXT), true)
	if len(r.Answer) != 1 {
		t.Fatalf("answer %v", r.Answer)
	}
	txt := r.Answer[0].(*dns.TXT).Txt
	if len(txt) < 2 || strings.Join(txt, "") != dkimKey {
		t.Fatalf("DKIM TXT strings %q do not join to the key", txt)
	}
	for _, s := range txt {
		if len(s) > 255 {
			t.Fatalf("string of %d bytes", len(s))
		}
	}
}

func TestANYOverTCPIsFull(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, Config{})
	r := ask(t, s, question("example.com.", dns.TypeANY), true)
	types := map[uint16]bool{}
	for _, rr := range r.Answer {
		types[rr.Header().Rrtype] = true
	}
	for _, want := range []uint16{dns.TypeSOA, dns.TypeNS, dns.TypeMX, dns.TypeTXT, dns.TypeCAA} {
		if !types[want] {
			t.Errorf("ANY over TCP lacks %s: %v", dns.TypeToString[want], r.Answer)
		}
	}
}

func TestTruncation(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, Config{})
	for _, tc := range []struct {
		name    string
		bufsize uint16 // 0: no EDNS
		tcp     bool
		tc      bool
	}{
		{"plain UDP 512", 0, false, true},
		{"EDNS 1232", 1232, false, true},
		{"EDNS 4096 capped at 1232", 4096, false, true},
		{"EDNS 100 means 512", 100, false, true},
		{"TCP", 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := question("big.example.com.", dns.TypeTXT)
			if tc.bufsize > 0 {
				q.SetEdns0(tc.bufsize, false)
			}
			b, _ := q.Pack()
			raw, _ := s.handle(s.tbl.Load(), b, testClient, tc.tcp, newScratch())
			r := new(dns.Msg)
			if err := r.Unpack(raw); err != nil {
				t.Fatal(err)
			}
			if r.Truncated != tc.tc {
				t.Fatalf("TC %v, want %v", r.Truncated, tc.tc)
			}
			limit := 512
			if tc.bufsize > 0 {
				limit = int(min(max(tc.bufsize, 512), 1232))
			}
			if !tc.tcp && len(raw) > limit {
				t.Fatalf("UDP reply of %d bytes over %d", len(raw), limit)
			}
			if tc.tc && (len(r.Answer) != 0 || len(r.Question) != 1) {
				t.Fatalf("truncated reply: answer %d question %d", len(r.Answer), len(r.Question))
			}
			if !tc.tc && len(r.Answer) != 8 {
				t.Fatalf("full reply has %d TXT records, want 8", len(r.Answer))
			}
		})
	}
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, Config{})
	notify := question("example.com.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	update := question("example.com.", dns.TypeSOA)
	update.Opcode = dns.OpcodeUpdate
	twoQ := question("example.com.", dns.TypeA)
	twoQ.Question = append(twoQ.Question, twoQ.Question[0])
	noQ := question("example.com.", dns.TypeA)
	noQ.Question = nil
	badVers := question("example.com.", dns.TypeA)
	badVers.SetEdns0(1232, false)
	badVers.IsEdns0().SetVersion(1)
	twoOPT := question("example.com.", dns.TypeA)
	twoOPT.SetEdns0(1232, false)
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])
	chaos := question("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	axfrUDP := question("example.com.", dns.TypeAXFR)
	maila := question("example.com.", dns.TypeMAILA)
	optQ := question("example.com.", dns.TypeOPT)
	for _, tc := range []struct {
		name  string
		q     *dns.Msg
		rcode int
	}{
		{"NOTIFY", notify, dns.RcodeNotImplemented},
		{"UPDATE", update, dns.RcodeNotImplemented},
		{"two questions", twoQ, dns.RcodeFormatError},
		{"no question", noQ, dns.RcodeFormatError},
		{"EDNS version 1", badVers, dns.RcodeBadVers},
		{"two OPT", twoOPT, dns.RcodeFormatError},
		{"CHAOS class", chaos, dns.RcodeRefused},
		{"AXFR not allowed", axfrUDP, dns.RcodeRefused},
		{"MAILA", maila, dns.RcodeNotImplemented},
		{"OPT as qtype", optQ, dns.RcodeFormatError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(t, s, tc.q, false)
			if r == nil || r.Rcode != tc.rcode {
				t.Fatalf("reply %v, want rcode %s", r, dns.RcodeToString[tc.rcode])
			}
			if len(r.Answer) != 0 {
				t.Fatalf("answer in an error: %v", r.Answer)
			}
		})
	}
}

// TestFastMatchesSlow checks the pre-packed answers against the reference path for
// every name, many types, letter cases and EDNS settings.
func TestFastMatchesSlow(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, Config{})
	tbl := s.tbl.Load()
	var names []string
	for _, zd := range tbl.zones {
		for name := range zd.names {
			names = append(names, name, strings.ToUpper(name), "nx."+name)
		}
	}
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypeCNAME, dns.TypeSRV,
		dns.TypeCAA, dns.TypePTR, dns.TypeNS, dns.TypeSOA, dns.TypeHINFO, dns.TypeANY, dns.TypeNULL, 999}
	fast := 0
	sc := newScratch()
	for _, name := range names {
		for _, qt := range types {
			for _, edns := range []uint16{0, 512, 1232, 4096} {
				q := question(name, qt)
				q.Id = 4242
				q.RecursionDesired = qt%2 == 0
				q.CheckingDisabled = qt%3 == 0
				if edns > 0 {
					q.SetEdns0(edns, qt%2 == 1)
				}
				b, _ := q.Pack()
				pq, key, ok := parseQuery(b, sc.key[:])
				if !ok {
					t.Fatalf("fast parser refused %s %d", name, qt)
				}
				limit := 512
				if edns > 0 {
					limit = int(min(max(edns, 512), 1232))
				}
				fb := tbl.answerFast(&pq, b, key, limit, false, 1232, nil)
				if fb == nil {
					continue
				}
				fast++
				sb, _ := s.answerSlow(tbl, b, testClient, false, nil)
				fm, sm := new(dns.Msg), new(dns.Msg)
				if err := fm.Unpack(fb); err != nil {
					t.Fatalf("fast reply for %s %d: %v", name, qt, err)
				}
				if err := sm.Unpack(sb); err != nil {
					t.Fatal(err)
				}
				if !strings.EqualFold(fm.String(), sm.String()) {
					t.Fatalf("%s %s edns %d:\nfast %v\nslow %v", name, dns.TypeToString[qt], edns, fm, sm)
				}
				if fm.Question[0].Name != name {
					t.Fatalf("fast path lost the client's case: %q", fm.Question[0].Name)
				}
			}
		}
	}
	if fast < len(names)*len(types) {
		t.Fatalf("only %d fast answers", fast)
	}
}

func TestNestedZonesAndBadRecords(t *testing.T) {
	t.Parallel()
	parent := Zone{Origin: "example.com.", Serial: 1, Records: []Record{
		{"x.sub.example.com.", "A", 60, "192.0.2.1"}, // occluded by the child zone
		{"www.example.com.", "A", 60, "192.0.2.2"},
		{"bad.example.com.", "A", 60, "not-an-address"}, // skipped, the rest still served
	}}
	child := Zone{Origin: "sub.example.com.", Serial: 9, Records: []Record{
		{"y.sub.example.com.", "A", 60, "192.0.2.3"},
	}}
	tbl, problems := buildTable(1, []*Zone{&parent, &child})
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), "bad.example.com.") {
		t.Fatalf("problems %v", problems)
	}
	s := &Server{maxUDP: 1232, log: discardLogger()}
	s.tbl.Store(tbl)
	for _, tc := range []struct {
		name   string
		qtype  uint16
		rcode  int
		answer int
		serial uint32 // of the SOA in the answer or authority
	}{
		{"www.example.com.", dns.TypeA, dns.RcodeSuccess, 1, 0},
		{"bad.example.com.", dns.TypeA, dns.RcodeNameError, 0, 1},
		{"x.sub.example.com.", dns.TypeA, dns.RcodeNameError, 0, 9},
		{"y.sub.example.com.", dns.TypeA, dns.RcodeSuccess, 1, 0},
		{"sub.example.com.", dns.TypeSOA, dns.RcodeSuccess, 1, 9},
		{"example.com.", dns.TypeSOA, dns.RcodeSuccess, 1, 1},
	} {
		r := ask(t, s, question(tc.name, tc.qtype), false)
		if r.Rcode != tc.rcode || len(r.Answer) != tc.answer {
			t.Errorf("%s: %v", tc.name, r)
			continue
		}
		if tc.serial != 0 {
			soa, _ := append(r.Answer, r.Ns...)[0].(*dns.SOA)
			if soa == nil || soa.Serial != tc.serial {
				t.Errorf("%s: SOA %v, want serial %d", tc.name, soa, tc.serial)
			}
		}
	}
	// A missing SOA is synthesized so negative answers still carry one.
	if soa := tbl.zones["sub.example.com."].soa; soa.Ns != "ns1.sub.example.com." {
		t.Errorf("synthesized SOA %v", soa)
	}
}

package dnsd

import (
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestParseRecord(t *testing.T) {
	t.Parallel()
	const origin = "example.com."
	tests := []struct {
		in      Record
		want    Record
		wantErr string
	}{
		{in: Record{"www.example.com.", "A", 60, "192.0.2.1"}, want: Record{"www.example.com.", "A", 60, "192.0.2.1"}},
		{in: Record{"WWW", "a", 0, " 192.0.2.1 "}, want: Record{"www.example.com.", "A", DefaultTTL, "192.0.2.1"}},
		{in: Record{"@", "AAAA", 60, "2001:DB8::1"}, want: Record{"example.com.", "AAAA", 60, "2001:db8::1"}},
		{in: Record{"", "MX", 60, "10 mail"}, want: Record{"example.com.", "MX", 60, "10 mail.example.com."}},
		{in: Record{"ftp", "CNAME", 60, "www.example.net."}, want: Record{"ftp.example.com.", "CNAME", 60, "www.example.net."}},
		{in: Record{"@", "TXT", 60, "v=spf1 mx -all"}, want: Record{"example.com.", "TXT", 60, `"v=spf1 mx -all"`}},
		{in: Record{"@", "TXT", 60, `"a b" "c"`}, want: Record{"example.com.", "TXT", 60, `"a b" "c"`}},
		{in: Record{"@", "TXT", 60, `say "hi"; bye`}, want: Record{"example.com.", "TXT", 60, `"say \"hi\"; bye"`}},
		{in: Record{"@", "TXT", 60, strings.Repeat("a", 300)},
			want: Record{"example.com.", "TXT", 60, `"` + strings.Repeat("a", 255) + `" "` + strings.Repeat("a", 45) + `"`}},
		{in: Record{"_sip._tcp", "SRV", 60, "10 5 5060 sip"}, want: Record{"_sip._tcp.example.com.", "SRV", 60, "10 5 5060 sip.example.com."}},
		{in: Record{"@", "CAA", 60, `0 issue "letsencrypt.org"`}, want: Record{"example.com.", "CAA", 60, `0 issue "letsencrypt.org"`}},
		{in: Record{"1", "PTR", 60, "host.example.net."}, want: Record{"1.example.com.", "PTR", 60, "host.example.net."}},
		{in: Record{"@", "NS", 60, "ns2.example.net."}, want: Record{"example.com.", "NS", 60, "ns2.example.net."}},
		{in: Record{"@", "SOA", 60, "ns1 hostmaster 1 3600 900 1209600 300"},
			want: Record{"example.com.", "SOA", 60, "ns1.example.com. hostmaster.example.com. 1 3600 900 1209600 300"}},
		{in: Record{"*.wild", "A", 60, "192.0.2.1"}, want: Record{"*.wild.example.com.", "A", 60, "192.0.2.1"}},

		{in: Record{"www", "A", 60, "192.0.2.300"}, wantErr: "cannot parse value"},
		{in: Record{"www", "A", 60, "2001:db8::1"}, wantErr: "cannot parse value"},
		{in: Record{"www", "AAAA", 60, "192.0.2.1"}, wantErr: "cannot parse value"},
		{in: Record{"www", "HINFO", 60, "a b"}, wantErr: "unsupported type"},
		{in: Record{"www", "A", 60, ""}, wantErr: "empty value"},
		{in: Record{"www.example.org.", "A", 60, "192.0.2.1"}, wantErr: "outside zone"},
		{in: Record{"www", "A", 60, "192.0.2.1\nevil 60 IN A 192.0.2.2"}, wantErr: "control character"},
		{in: Record{"www", "A", 60, "192.0.2.1 ; comment"}, wantErr: "';' outside quotes"},
		{in: Record{"www", "MX", 60, "10"}, wantErr: "cannot parse value"},
		{in: Record{"www", "MX", 60, "10 a b"}, wantErr: "cannot parse value"},
		{in: Record{"bad name", "A", 60, "192.0.2.1"}, wantErr: "bad owner name"},
		{in: Record{"www", "A", 60, "$INCLUDE /etc/passwd"}, wantErr: "cannot parse value"},
		{in: Record{"@", "CNAME", 60, "www.example.net."}, wantErr: "apex"},
		{in: Record{"sub", "NS", 60, "ns.example.net."}, wantErr: "delegation"},
		{in: Record{"sub", "SOA", 60, "ns1 hostmaster 1 3600 900 1209600 300"}, wantErr: "apex"},
		{in: Record{"self", "CNAME", 60, "self"}, wantErr: "itself"},
		{in: Record{"@", "TXT", 60, `"unterminated`}, wantErr: "unterminated quote"},
		{in: Record{"@", "CAA", 60, `0 issue letsencrypt.org"`}, wantErr: "unterminated quote"},
		{in: Record{strings.Repeat("a", 64), "A", 60, "192.0.2.1"}, wantErr: "bad owner name"},
	}
	for _, tc := range tests {
		t.Run(tc.in.Type+" "+tc.in.Value, func(t *testing.T) {
			got, err := ParseRecord(origin, tc.in)
			if tc.wantErr != "" {
				var re *RecordError
				if err == nil || !errors.As(err, &re) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want a RecordError with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got  %#v\nwant %#v", got, tc.want)
			}
			// Normalized records parse to themselves.
			again, err := ParseRecord(origin, got)
			if err != nil || again != got {
				t.Fatalf("not stable: %#v, %v", again, err)
			}
		})
	}
}

func TestZoneValidate(t *testing.T) {
	t.Parallel()
	ok := DefaultZone("example.com", "", nil, nil, "", "")
	if err := ok.Validate(); err != nil {
		t.Fatalf("default zone: %v", err)
	}
	for _, tc := range []struct {
		name    string
		records []Record
		want    string
	}{
		{"CNAME and other data", []Record{{"x", "CNAME", 60, "y"}, {"x", "A", 60, "192.0.2.1"}}, "CNAME and other"},
		{"two CNAMEs", []Record{{"x", "CNAME", 60, "y"}, {"x", "CNAME", 60, "z"}}, "CNAME and other"},
		{"two SOAs", []Record{{"@", "SOA", 60, "a b 1 2 3 4 5"}}, "2 SOA"},
		{"bad record", []Record{{"x", "A", 60, "nope"}}, "cannot parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := ok
			z.Records = append(append([]Record(nil), ok.Records...), tc.records...)
			err := z.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestQuoteTXT(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                       `""`,
		"plain":                  `"plain"`,
		`q"b\`:                   `"q\"b\\"`,
		"tab\there":              `"tab\009here"`,
		strings.Repeat("x", 256): `"` + strings.Repeat("x", 255) + `" "x"`,
	} {
		if got := QuoteTXT(in); got != want {
			t.Errorf("QuoteTXT(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDefaultZoneGolden compares the zone a new domain gets with testdata; run with
// -update after an intended change.
func TestDefaultZoneGolden(t *testing.T) {
	t.Parallel()
	z := DefaultZone("Example.com", "", []net.IP{net.ParseIP("192.0.2.10")},
		[]net.IP{net.ParseIP("2001:db8::10"), net.ParseIP("192.0.2.99")}, "tandem", dkimKey)
	z.Serial = 2026030401
	var b strings.Builder
	b.WriteString(z.ZoneFile())
	path := filepath.Join("testdata", "defaultzone.golden")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Fatalf("default zone changed:\n%s\nwant:\n%s", b.String(), want)
	}
	if err := z.Validate(); err != nil {
		t.Fatal(err)
	}
	// The rendering loads back into the same records.
	zp := dns.NewZoneParser(strings.NewReader(b.String()), "", "")
	i := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if got := fromRR(rr); i >= len(z.Records) || got.Value != z.Records[i].Value && got.Type != "SOA" {
			t.Fatalf("record %d reads back as %v", i, got)
		}
		i++
	}
	if zp.Err() != nil || i != len(z.Records) {
		t.Fatalf("read back %d records: %v", i, zp.Err())
	}
	// Mail host outside the domain: MX points there and no address is invented.
	ext := DefaultZone("example.org", "mx.provider.net", []net.IP{net.ParseIP("192.0.2.10")}, nil, "", "")
	for _, r := range ext.Records {
		if strings.HasPrefix(r.Name, "mx.") {
			t.Errorf("record for out-of-zone mail host: %v", r)
		}
		if r.Type == "MX" && r.Value != "10 mx.provider.net." {
			t.Errorf("MX %q", r.Value)
		}
	}
}

func TestNextSerial(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ old, want uint32 }{
		{0, 2026030400},
		{1, 2026030400},
		{2026030400, 2026030401},
		{2026030499, 2026030500}, // a hundred changes in one day run into tomorrow's
		{2030010100, 2030010101}, // ahead of the date form: just count
		{4294967295, 2026030400}, // RFC 1982: the date is after 2^32-1
	} {
		if got := NextSerial(tc.old, day); got != tc.want {
			t.Errorf("NextSerial(%d) = %d, want %d", tc.old, got, tc.want)
		}
	}
}

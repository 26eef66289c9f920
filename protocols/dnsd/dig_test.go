package dnsd

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// These tests talk to a live server with dig from Debian's bind9-dnsutils, the
// tool an admin would use. They skip only when dig is not installed.

func needDig(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (apt-get install bind9-dnsutils)")
	}
	return path
}

// dig runs dig against addr (host:port) and returns its output.
func dig(t *testing.T, addr string, args ...string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	all := append([]string{"@" + host, "-p", port, "+tries=1", "+time=2"}, args...)
	out, err := exec.Command(needDig(t), all...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Transfer failed") {
		t.Fatalf("dig %v: %v\n%s", all, err, out)
	}
	return string(out)
}

func TestDigRecordTypes(t *testing.T) {
	t.Parallel()
	needDig(t)
	s, _ := startServer(t, Config{Addrs: []string{"127.0.0.1:0", "[::1]:0"}})
	for _, tc := range []struct {
		name, qtype, want string
	}{
		{"mail.example.com", "A", "192.0.2.10"},
		{"mail.example.com", "AAAA", "2001:db8::10"},
		{"www.example.com", "CNAME", "mail.example.com."},
		{"example.com", "MX", "10 mail.example.com."},
		{"example.com", "TXT", `"v=spf1 mx -all"`},
		{"_dmarc.example.com", "TXT", `"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com"`},
		{"sel._domainkey.example.com", "TXT", `"v=DKIM1; k=rsa; p=MIIBIjAN`},
		{"_imaps._tcp.example.com", "SRV", "0 1 993 mail.example.com."},
		{"example.com", "CAA", `0 issue "letsencrypt.org"`},
		{"ptr.example.com", "PTR", "mail.example.com."},
		{"10.2.0.192.in-addr.arpa", "PTR", "mail.example.com."},
		{"example.com", "NS", "ns1.example.com."},
		{"example.com", "SOA", "ns1.example.com. hostmaster.example.com. 2026010101 3600 900 1209600 300"},
		{"foo.wild.example.com", "A", "192.0.2.50"},
	} {
		for _, addr := range s.Addrs() {
			out := dig(t, addr, "+short", tc.name, tc.qtype)
			if !strings.Contains(out, tc.want) {
				t.Errorf("dig @%s %s %s:\n%s\nwant %q", addr, tc.name, tc.qtype, out, tc.want)
			}
		}
	}
	out := dig(t, s.Addrs()[0], "mail.example.com", "A")
	if !strings.Contains(out, "flags: qr aa rd;") || !strings.Contains(out, "status: NOERROR") {
		t.Errorf("want an authoritative answer without RA:\n%s", out)
	}
	out = dig(t, s.Addrs()[0], "nope.example.com", "A")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "AUTHORITY: 1") {
		t.Errorf("want NXDOMAIN with the SOA:\n%s", out)
	}
}

func TestDigRefusesRecursion(t *testing.T) {
	t.Parallel()
	needDig(t)
	s, _ := startServer(t, Config{})
	for _, name := range []string{"example.org", "www.google.com", "com", "."} {
		out := dig(t, s.Addrs()[0], "+rec", name, "A")
		if !strings.Contains(out, "status: REFUSED") || strings.Contains(out, "ANSWER: 1") {
			t.Errorf("dig +rec %s:\n%s", name, out)
		}
	}
	if s.Stats().Refused < 4 {
		t.Errorf("stats %+v", s.Stats())
	}
}

var msgSize = regexp.MustCompile(`(QUERY SIZE|MSG SIZE  rcvd): (\d+)`)

// sizes returns the query and reply sizes dig +qr prints.
func sizes(t *testing.T, out string) (query, reply int) {
	t.Helper()
	for _, m := range msgSize.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		if m[1] == "QUERY SIZE" {
			query = n
		} else {
			reply = n
		}
	}
	if query == 0 || reply == 0 {
		t.Fatalf("no sizes in:\n%s", out)
	}
	return query, reply
}

func TestDigANYMinimal(t *testing.T) {
	t.Parallel()
	needDig(t)
	s, _ := startServer(t, Config{})
	out := dig(t, s.Addrs()[0], "+notcp", "+qr", "+bufsize=4096", "example.com", "ANY")
	if !strings.Contains(out, `HINFO	"RFC8482" ""`) || !strings.Contains(out, "ANSWER: 1") {
		t.Fatalf("ANY over UDP is not the RFC 8482 answer:\n%s", out)
	}
	// RELIABILITY #33: amplification ratio under ~10.
	q, r := sizes(t, out)
	if r > 10*q {
		t.Fatalf("ANY: %d-byte query, %d-byte reply", q, r)
	}
	out = dig(t, s.Addrs()[0], "+tcp", "example.com", "ANY")
	if !strings.Contains(out, "IN\tMX\t10 mail.example.com.") {
		t.Fatalf("ANY over TCP lacks the MX:\n%s", out)
	}
}

func TestDigTruncationAndTCPRetry(t *testing.T) {
	t.Parallel()
	needDig(t)
	s, _ := startServer(t, Config{})
	addr := s.Addrs()[0]
	out := dig(t, addr, "big.example.com", "TXT")
	if !strings.Contains(out, "Truncated, retrying in TCP mode") || !strings.Contains(out, "ANSWER: 8") {
		t.Fatalf("want a TC answer then the full answer over TCP:\n%s", out)
	}
	for _, buf := range []string{"+bufsize=4096", "+bufsize=1232", "+noedns"} {
		out = dig(t, addr, "+ignore", "+qr", buf, "big.example.com", "TXT")
		if !regexp.MustCompile(`flags: qr aa tc`).MatchString(out) {
			t.Fatalf("%s: no TC flag:\n%s", buf, out)
		}
		limit := 1232
		if buf == "+noedns" {
			limit = 512
		}
		if _, r := sizes(t, out); r > limit {
			t.Fatalf("%s: %d-byte UDP reply", buf, r)
		}
	}
	// A big answer that fits is not truncated.
	out = dig(t, addr, "+ignore", "sel._domainkey.example.com", "TXT")
	if strings.Contains(out, " tc") || !strings.Contains(out, "ANSWER: 1") {
		t.Fatalf("DKIM record truncated:\n%s", out)
	}
}

func TestDigIPv6Listener(t *testing.T) {
	t.Parallel()
	needDig(t)
	s, _ := startServer(t, Config{Addrs: []string{"[::1]:0"}})
	for _, proto := range []string{"+notcp", "+tcp"} {
		out := dig(t, s.Addrs()[0], proto, "+short", "mail.example.com", "AAAA")
		if strings.TrimSpace(out) != "2001:db8::10" {
			t.Fatalf("dig %s @::1: %q", proto, out)
		}
	}
}

func TestDigAXFR(t *testing.T) {
	t.Parallel()
	needDig(t)
	allowed, _ := startServer(t, Config{AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	refused, _ := startServer(t, Config{AllowTransfer: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	out := dig(t, allowed.Addrs()[0], "example.com", "AXFR")
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, ";") {
			lines = append(lines, l)
		}
	}
	if len(lines) < 20 || !strings.Contains(lines[0], "\tSOA\t") || !strings.Contains(lines[len(lines)-1], "\tSOA\t") ||
		!strings.Contains(out, "sel._domainkey.example.com.") {
		t.Fatalf("AXFR:\n%s", out)
	}
	out = dig(t, refused.Addrs()[0], "example.com", "AXFR")
	if !strings.Contains(out, "Transfer failed") || strings.Contains(out, "\tSOA\t") {
		t.Fatalf("AXFR from a non-peer:\n%s", out)
	}
	if refused.Stats().TransfersRefused != 1 {
		t.Fatalf("stats %+v", refused.Stats())
	}
}

func TestDigRateLimit(t *testing.T) {
	t.Parallel()
	needDig(t)
	// Slip 1: every limited answer is a TC=1 answer, none is dropped, so dig does
	// not wait for timeouts.
	s, _ := startServer(t, Config{RateLimit: 5, RateSlip: 1})
	batch := filepath.Join(t.TempDir(), "queries")
	var b strings.Builder
	for range 30 {
		b.WriteString("mail.example.com A\n")
	}
	if err := os.WriteFile(batch, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := dig(t, s.Addrs()[0], "+ignore", "-f", batch)
	full := strings.Count(out, "flags: qr aa rd;")
	tc := strings.Count(out, "flags: qr aa tc rd;") + strings.Count(out, "flags: qr tc rd;")
	if full < 4 || full > 12 || full+tc != 30 {
		t.Fatalf("%d full and %d truncated answers to 30 queries at 5/s:\n%s", full, tc, out)
	}
	// Without +ignore dig retries the truncated ones over TCP and gets them all.
	out = dig(t, s.Addrs()[0], "-f", batch)
	if n := strings.Count(out, "IN\tA\t192.0.2.10"); n != 30 {
		t.Fatalf("%d answers after TCP retry, want 30", n)
	}
}

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/protocols/dnsd"
)

// The built-in DNS server (SPEC D1) as a client sees it: dig against a node
// started with --dns-addr on loopback, IPv4 and IPv6.

var dnsListener = regexp.MustCompile(`(?m)^\s+(dns\d*)\s+(\S+)$`)

// dnsAddrs returns the DNS listeners the node printed at start, in order.
func dnsAddrs(t *testing.T, s *server) []string {
	t.Helper()
	var out []string
	for _, m := range dnsListener.FindAllStringSubmatch(s.output(), -1) {
		out = append(out, m[2])
	}
	if len(out) == 0 {
		t.Fatalf("no dns listener printed:\n%s", s.output())
	}
	return out
}

func needDig(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed (Debian package bind9-dnsutils; CI installs it)")
	}
}

// dig runs dig against addr (HOST:PORT) without recursion and returns its
// output.
func dig(t *testing.T, addr string, args ...string) string {
	t.Helper()
	host, port := splitHostPort(t, addr)
	full := append([]string{"@" + host, "-p", port, "+norec", "+time=3", "+tries=1"}, args...)
	out, err := exec.Command("dig", full...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Transfer failed") {
		t.Fatalf("dig %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return strings.Trim(addr[:i], "[]"), addr[i+1:]
}

// digShort returns the +short answer lines, sorted as dig prints them.
func digShort(t *testing.T, addr, name, typ string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(dig(t, addr, "+short", name, typ)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func digStatus(t *testing.T, addr, name, typ string) string {
	t.Helper()
	out := dig(t, addr, name, typ)
	m := regexp.MustCompile(`status: ([A-Z]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no status in dig output:\n%s", out)
	}
	return m[1]
}

func soaSerial(t *testing.T, addr, zone string) uint32 {
	t.Helper()
	f := strings.Fields(strings.Join(digShort(t, addr, zone, "SOA"), " "))
	if len(f) != 7 {
		t.Fatalf("SOA of %s: %q", zone, f)
	}
	n, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

// eventually retries f for up to 10 s: changes reach the server within the
// 200 ms zone poll.
func eventually(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ok, got := f()
		if ok {
			return
		}
		last = got
	}
	t.Fatalf("%s: still %s", what, last)
}

func TestDNSServer(t *testing.T) {
	needDig(t)
	s := startServer(t, t.TempDir(), "--dns-addr", "127.0.0.1:0,[::1]:0", "--dns-axfr-allow", "127.0.0.2/32",
		"--dns-host-ip", "192.0.2.25", "--dns-host-ip", "2001:db8::25",
		// Above the default 100/s: back-to-back dig runs on a fast machine must
		// not be throttled (rate limiting has its own tests in protocols/dnsd).
		"--dns-rate-limit", "2000")
	addrs := dnsAddrs(t, s)
	if len(addrs) != 2 || !strings.HasPrefix(addrs[1], "[::1]:") {
		t.Fatalf("dns listeners %v, want 127.0.0.1 and [::1]", addrs)
	}
	v4, v6 := addrs[0], addrs[1]
	const zone = "example.test."

	t.Run("derived records", func(t *testing.T) {
		for _, c := range []struct{ name, typ, want string }{
			{zone, "NS", "ns1.example.test."},
			{zone, "MX", "10 mail.example.test."},
			{"mail.example.test.", "A", "192.0.2.25"},
			{"mail.example.test.", "AAAA", "2001:db8::25"},
			{"ns1.example.test.", "A", "192.0.2.25"},
			{zone, "TXT", `"v=spf1 mx -all"`},
			{"_dmarc.example.test.", "TXT", `"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"`},
		} {
			if got := digShort(t, v4, c.name, c.typ); len(got) != 1 || got[0] != c.want {
				t.Errorf("%s %s = %q, want %q", c.name, c.typ, got, c.want)
			}
		}
		if out := dig(t, v4, zone, "SOA"); !strings.Contains(out, " aa") {
			t.Errorf("answer not authoritative:\n%s", out)
		}
	})

	t.Run("every record type", func(t *testing.T) {
		before := soaSerial(t, v4, zone)
		recs := []struct{ name, typ, value, query, want string }{
			{"www", "A", "192.0.2.80", "www.example.test.", "192.0.2.80"},
			{"www", "AAAA", "2001:db8::80", "www.example.test.", "2001:db8::80"},
			{"ftp", "CNAME", "www", "ftp.example.test.", "www.example.test."},
			{"sub", "MX", "20 mx.example.org.", "sub.example.test.", "20 mx.example.org."},
			{"info", "TXT", "hello world", "info.example.test.", `"hello world"`},
			{"_imaps._tcp", "SRV", "0 1 993 mail.example.test.", "_imaps._tcp.example.test.", "0 1 993 mail.example.test."},
			{"@", "CAA", `0 issue "letsencrypt.org"`, zone, `0 issue "letsencrypt.org"`},
			{"host", "PTR", "box.example.org.", "host.example.test.", "box.example.org."},
		}
		for _, r := range recs {
			s.mustCLI("dns", "record", "add", "example.test", r.name, r.typ, r.value, "--ttl", "300")
		}
		for _, r := range recs {
			eventually(t, r.query+" "+r.typ, func() (bool, string) {
				got := digShort(t, v4, r.query, r.typ)
				// ftp CNAME: dig +short follows it within the zone.
				return len(got) > 0 && got[0] == r.want, fmt.Sprint(got)
			})
		}
		after := soaSerial(t, v4, zone)
		if int32(after-before) <= 0 {
			t.Errorf("SOA serial %d after changes, was %d", after, before)
		}
		list := s.mustCLI("dns", "record", "list", "example.test")
		if !strings.Contains(list, "www.example.test.") || !strings.Contains(list, "admin") || !strings.Contains(list, "auto") {
			t.Errorf("record list:\n%s", list)
		}
		zf := s.mustCLI("dns", "zone", "example.test")
		if !strings.HasPrefix(zf, "$ORIGIN example.test.\n") || !strings.Contains(zf, "_imaps._tcp.example.test.\t300\tIN\tSRV") {
			t.Errorf("zone file:\n%s", zf)
		}
		// Edit an RRset: www A becomes two other addresses.
		s.mustCLI("dns", "record", "set", "example.test", "www", "A", "192.0.2.81", "192.0.2.82", "--ttl", "120")
		eventually(t, "www A replaced", func() (bool, string) {
			got := digShort(t, v4, "www.example.test.", "A")
			return strings.Join(got, ",") == "192.0.2.81,192.0.2.82", fmt.Sprint(got)
		})
		after = soaSerial(t, v4, zone)
		// Delete one value, then the rest of the name and type.
		s.mustCLI("dns", "record", "del", "example.test", "www", "AAAA", "2001:db8::80")
		eventually(t, "www AAAA deleted", func() (bool, string) {
			got := digShort(t, v4, "www.example.test.", "AAAA")
			return len(got) == 0, fmt.Sprint(got)
		})
		if s2 := soaSerial(t, v4, zone); int32(s2-after) <= 0 {
			t.Errorf("SOA serial %d after delete, was %d", s2, after)
		}
	})

	t.Run("bad records", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"dns", "record", "add", "example.test", "x", "A", "300.1.2.3"}, "cannot parse value"},
			{[]string{"dns", "record", "add", "example.test", "x", "SOA", "a. b. 1 2 3 4 5"}, "type not allowed"},
			{[]string{"dns", "record", "add", "example.test", "x", "HINFO", "a b"}, "type not allowed"},
			{[]string{"dns", "record", "add", "nothere.test", "x", "A", "192.0.2.1"}, "no such hosted domain"},
			{[]string{"dns", "record", "add", "example.test", "x.example.org.", "A", "192.0.2.1"}, "outside"},
			{[]string{"dns", "record", "add", "example.test", "www", "CNAME", "other.example.org."}, "CNAME and other"},
			{[]string{"dns", "record", "add", "example.test", "www", "A", "192.0.2.81"}, "already exists"},
			{[]string{"dns", "record", "del", "example.test", "nope", "A"}, "no such record"},
			{[]string{"dns", "record", "add", "example.test", "x", "A"}, "usage"},
		} {
			out, err := s.cli(c.args...)
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("tandem %s: err %v, output %q, want it to mention %q", strings.Join(c.args, " "), err, out, c.want)
			}
		}
	})

	t.Run("refused for foreign zones", func(t *testing.T) {
		for _, name := range []string{"example.org.", "test.", "."} {
			if st := digStatus(t, v4, name, "A"); st != "REFUSED" {
				t.Errorf("%s A: %s, want REFUSED", name, st)
			}
		}
		if st := digStatus(t, v4, "nothere.example.test.", "A"); st != "NXDOMAIN" {
			t.Errorf("nothere.example.test: %s, want NXDOMAIN", st)
		}
	})

	t.Run("ANY answered minimally", func(t *testing.T) {
		// RFC 8482 §4.2: over UDP one synthesized HINFO instead of every
		// record (dig asks ANY over TCP unless told +notcp); over TCP all.
		if out := dig(t, v4, "+notcp", "+noall", "+answer", zone, "ANY"); strings.Count(out, "\tIN\t") != 1 || !strings.Contains(out, "RFC8482") {
			t.Errorf("ANY %s over UDP:\n%s\nwant one RFC8482 HINFO", zone, out)
		}
		if out := dig(t, v4, "+tcp", "+noall", "+answer", zone, "ANY"); !strings.Contains(out, "\tMX\t") || !strings.Contains(out, "\tSOA\t") {
			t.Errorf("ANY %s over TCP lacks MX or SOA:\n%s", zone, out)
		}
	})

	t.Run("AXFR only from allowed networks", func(t *testing.T) {
		if out := dig(t, v4, "-b", "127.0.0.1", zone, "AXFR"); !strings.Contains(out, "Transfer failed") {
			t.Errorf("AXFR from 127.0.0.1 not refused:\n%s", out)
		}
		out := dig(t, v4, "-b", "127.0.0.2", zone, "AXFR")
		if strings.Contains(out, "Transfer failed") || strings.Count(out, "\tSOA\t") != 2 || !strings.Contains(out, "www.example.test.") {
			t.Errorf("AXFR from the allowed 127.0.0.2 failed:\n%s", out)
		}
	})

	t.Run("truncation and TCP retry", func(t *testing.T) {
		for i := range 20 {
			s.mustCLI("dns", "record", "add", "example.test", "big", "TXT", fmt.Sprintf("%02d-%s", i, strings.Repeat("x", 200)))
		}
		eventually(t, "20 TXT records at big", func() (bool, string) {
			out := dig(t, v4, "+tcp", "+short", "big.example.test.", "TXT")
			return strings.Count(out, "\n") == 20, out
		})
		udp := dig(t, v4, "+ignore", "+bufsize=1232", "big.example.test.", "TXT")
		if !regexp.MustCompile(`flags: qr aa tc`).MatchString(udp) {
			t.Errorf("UDP answer of 4 KB not truncated:\n%s", udp)
		}
		full := dig(t, v4, "+bufsize=1232", "big.example.test.", "TXT")
		if !strings.Contains(full, "Truncated, retrying in TCP mode") || strings.Count(full, "\tTXT\t") != 20 {
			t.Errorf("dig did not get all 20 records over TCP after TC:\n%s", full)
		}
	})

	t.Run("IPv6 listener", func(t *testing.T) {
		if got := digShort(t, v6, "mail.example.test.", "A"); len(got) != 1 || got[0] != "192.0.2.25" {
			t.Errorf("over IPv6: mail A = %q", got)
		}
		if out := dig(t, v6, "+tcp", zone, "SOA"); !strings.Contains(out, "status: NOERROR") {
			t.Errorf("TCP over IPv6:\n%s", out)
		}
	})

	t.Run("DKIM keys published", func(t *testing.T) {
		// The leader makes the domain's keys (filter/dkimsign) a few seconds
		// after start; each active or published key appears in DNS.
		var sels []string
		eventually(t, "DKIM keys made", func() (bool, string) {
			out, _ := s.cli("dkim", "list", "example.test")
			sels = nil
			sc := bufio.NewScanner(strings.NewReader(out))
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) >= 4 && f[0] == "example.test" && (f[3] == "active" || f[3] == "published") {
					sels = append(sels, f[1])
				}
			}
			return len(sels) > 0, out
		})
		for _, sel := range sels {
			eventually(t, "TXT "+sel, func() (bool, string) {
				got := strings.Join(digShort(t, v4, sel+"._domainkey.example.test.", "TXT"), "")
				joined := strings.ReplaceAll(got, `" "`, "")
				return strings.HasPrefix(joined, `"v=DKIM1;`) && strings.Contains(joined, "p="), got
			})
		}
	})

	t.Run("domain add and delete", func(t *testing.T) {
		s.mustCLI("domain", "add", "other.test")
		eventually(t, "zone of a new domain", func() (bool, string) {
			got := digShort(t, v4, "other.test.", "MX")
			return len(got) == 1 && got[0] == "10 mail.other.test.", fmt.Sprint(got)
		})
		s.mustCLI("domain", "del", "other.test")
		eventually(t, "zone of a deleted domain", func() (bool, string) {
			st := digStatus(t, v4, "other.test.", "SOA")
			return st == "REFUSED", st
		})
	})

	t.Run("domain dns check", func(t *testing.T) {
		printed := s.mustCLI("domain", "dns", "example.test")
		z := dnsd.Zone{Origin: zone, Serial: 1}
		var spfWrong, dmarcMissing bool
		for _, line := range strings.Split(printed, "\n") {
			if line == "" || strings.HasPrefix(line, ";") {
				continue
			}
			f := strings.SplitN(line, "\t", 5)
			if len(f) != 5 {
				t.Fatalf("printed line %q is not NAME TTL IN TYPE VALUE", line)
			}
			ttl, _ := strconv.Atoi(f[1])
			r := dnsd.Record{Name: f[0], Type: f[3], TTL: uint32(ttl), Value: f[4]}
			switch {
			case r.Type == "SOA" || r.Type == "NS":
				t.Errorf("printed %s record for a zone hosted elsewhere", r.Type)
			case r.Name == "_dmarc.example.test.":
				dmarcMissing = true
				continue
			case r.Type == "TXT" && strings.Contains(r.Value, "v=spf1"):
				spfWrong = true
				r.Value = `"v=spf1 a -all"`
			}
			z.Records = append(z.Records, r)
		}
		if !spfWrong || !dmarcMissing || !strings.Contains(printed, "\tMX\t10 mail.example.test.") {
			t.Fatalf("printed records lack SPF, DMARC or MX:\n%s", printed)
		}
		soa := dnsd.Record{Name: zone, Type: "SOA", TTL: 60, Value: "ns1.example.test. hostmaster.example.test. 1 3600 900 1209600 300"}
		z.Records = append([]dnsd.Record{soa}, z.Records...)
		src := dnsd.NewMemorySource(z)
		other, err := dnsd.New(dnsd.Config{Addrs: []string{"127.0.0.1:0"}, Zones: src})
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Start(); err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		resolver := other.Addrs()[0]
		out, err := s.cli("domain", "dns", "example.test", "--check", "--resolver", resolver)
		if err == nil {
			t.Fatalf("check passed with a wrong and a missing record:\n%s", out)
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("exit code %v, want 1", err)
		}
		for _, want := range []string{
			"MISSING  _dmarc.example.test.", "WRONG    example.test.", `"v=spf1 a -all"`,
			"PRESENT  example.test.", "2 of",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("check output lacks %q:\n%s", want, out)
			}
		}
		// Fixed at the other server: the check passes.
		fixed := z
		fixed.Records = nil
		for _, l := range strings.Split(printed, "\n") {
			if f := strings.SplitN(l, "\t", 5); len(f) == 5 && !strings.HasPrefix(l, ";") {
				ttl, _ := strconv.Atoi(f[1])
				fixed.Records = append(fixed.Records, dnsd.Record{Name: f[0], Type: f[3], TTL: uint32(ttl), Value: f[4]})
			}
		}
		fixed.Records = append([]dnsd.Record{soa}, fixed.Records...)
		src.Set(fixed)
		other.Refresh()
		if out, err := s.cli("domain", "dns", "example.test", "--check", "--resolver", resolver); err != nil || !strings.Contains(out, "are published") {
			t.Errorf("check of a correct zone: %v\n%s", err, out)
		}
	})
}

// TestDNSCluster: zones are replicated state, so a follower serves the same
// records and the same serial as the leader, and an edit made on a follower
// reaches both.
func TestDNSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster")
	}
	needDig(t)
	dirs := []string{t.TempDir(), t.TempDir()}
	caddrs := []string{freePort(t), freePort(t)}
	var nodes []*server
	for i := range 2 {
		a := []string{"--node-id", fmt.Sprintf("n%d", i+1), "--cluster-addr", caddrs[i], "--gossip-addr", freePort(t),
			"--dns-addr", "127.0.0.1:0", "--dns-host-ip", "192.0.2.25"}
		if i > 0 {
			secret, err := os.ReadFile(filepath.Join(dirs[0], "cluster-secret"))
			if err != nil {
				t.Fatal(err)
			}
			a = append(a, "--join", caddrs[0], "--cluster-secret", strings.TrimSpace(string(secret)))
		}
		nodes = append(nodes, startServer(t, dirs[i], a...))
	}
	leader, follower := dnsAddrs(t, nodes[0])[0], dnsAddrs(t, nodes[1])[0]
	nodes[1].mustCLI("dns", "record", "add", "example.test", "www", "A", "192.0.2.81")
	for _, addr := range []string{leader, follower} {
		eventually(t, "www A on "+addr, func() (bool, string) {
			got := digShort(t, addr, "www.example.test.", "A")
			return len(got) == 1 && got[0] == "192.0.2.81", fmt.Sprint(got)
		})
	}
	eventually(t, "same SOA serial on both nodes", func() (bool, string) {
		a, b := soaSerial(t, leader, "example.test."), soaSerial(t, follower, "example.test.")
		return a == b, fmt.Sprintf("leader %d, follower %d", a, b)
	})
}

package dnsd

import (
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startServer starts a real server on loopback and stops it with the test,
// checking no goroutine was left behind and no handler panicked.
func startServer(t *testing.T, cfg Config) (*Server, *MemorySource) {
	t.Helper()
	s, src := testServer(t, cfg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if p := s.Stats().Panics; p != 0 {
			t.Errorf("%d handler panics", p)
		}
	})
	return s, src
}

func exchange(t *testing.T, net_, addr string, q *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: net_, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("%s exchange with %s: %v", net_, addr, err)
	}
	return r
}

func TestServeUDPAndTCP(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t, Config{Addrs: []string{"127.0.0.1:0", "[::1]:0"}})
	for _, addr := range s.Addrs() {
		for _, n := range []string{"udp", "tcp"} {
			r := exchange(t, n, addr, question("mail.example.com.", dns.TypeA))
			if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.10" || !r.Authoritative {
				t.Fatalf("%s %s: %v", n, addr, r)
			}
		}
	}
}

func TestZoneChangeVisible(t *testing.T) {
	t.Parallel()
	s, src := startServer(t, Config{PollInterval: 20 * time.Millisecond})
	addr := s.Addrs()[0]
	z := testZones(t)[0]
	z.Serial++
	z.Records = append(z.Records, Record{"new.example.com.", "A", 60, "192.0.2.77"})
	src.Set(z)
	deadline := time.Now().Add(2 * time.Second)
	for {
		r := exchange(t, "udp", addr, question("new.example.com.", dns.TypeA))
		if len(r.Answer) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new record not served: %v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := exchange(t, "udp", addr, question("example.com.", dns.TypeSOA))
	if got := r.Answer[0].(*dns.SOA).Serial; got != z.Serial {
		t.Fatalf("serial %d, want %d", got, z.Serial)
	}
	src.Delete("example.com.")
	s.Refresh()
	if r := exchange(t, "udp", addr, question("mail.example.com.", dns.TypeA)); r.Rcode != dns.RcodeRefused {
		t.Fatalf("deleted zone still answered: %v", r)
	}
}

func TestTransfer(t *testing.T) {
	t.Parallel()
	allowed, _ := startServer(t, Config{AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	refused, _ := startServer(t, Config{AllowTransfer: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})

	tr := &dns.Transfer{}
	env, err := tr.In(question("example.com.", dns.TypeAXFR), allowed.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	var rrs []dns.RR
	for e := range env {
		if e.Error != nil {
			t.Fatal(e.Error)
		}
		rrs = append(rrs, e.RR...)
	}
	if len(rrs) < 20 || rrs[0].Header().Rrtype != dns.TypeSOA || rrs[len(rrs)-1].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("AXFR of %d records, not framed by SOA: %v", len(rrs), rrs)
	}
	if allowed.Stats().TransfersServed != 1 {
		t.Fatalf("stats %+v", allowed.Stats())
	}

	r := exchange(t, "tcp", refused.Addrs()[0], question("example.com.", dns.TypeAXFR))
	if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
		t.Fatalf("AXFR from a non-peer: %v", r)
	}
	// Unknown zone, even from an allowed peer.
	r = exchange(t, "tcp", allowed.Addrs()[0], question("example.org.", dns.TypeAXFR))
	if r.Rcode != dns.RcodeRefused {
		t.Fatalf("AXFR of a foreign zone: %v", r)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t, Config{RateLimit: 20, RateSlip: 2})
	c, err := net.Dial("udp", s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q, _ := question("mail.example.com.", dns.TypeA).Pack()
	const sent = 200
	for range sent {
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
	}
	full, tc := 0, 0
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if r.Truncated {
			tc++
		} else {
			full++
		}
	}
	// A burst of 20 is answered, then every second limited response slips as TC.
	if full < 15 || full > 30 || tc < 60 || tc > 100 {
		t.Fatalf("%d full and %d truncated answers to %d queries; want ~20 and ~90", full, tc, sent)
	}
	if st := s.Stats(); st.RateLimited < 150 {
		t.Fatalf("stats %+v", st)
	}
	// TCP is not limited: the slipped client gets its answer there.
	r := exchange(t, "tcp", s.Addrs()[0], question("mail.example.com.", dns.TypeA))
	if len(r.Answer) != 1 {
		t.Fatalf("TCP answer %v", r)
	}
}

func TestRateLimiterBuckets(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	rl := newRateLimiter(2, 3, func() time.Time { return now })
	a := netip.MustParseAddr("198.51.100.1")
	sameNet := netip.MustParseAddr("198.51.100.200")
	other := netip.MustParseAddr("198.51.101.1")
	v6 := netip.MustParseAddr("2001:db8:0:ff::1")
	v6same := netip.MustParseAddr("2001:db8:0:1::1") // same /56
	var got []rateAction
	for _, c := range []netip.Addr{a, sameNet, a, a, a, other, v6, v6same, v6} {
		got = append(got, rl.check(c))
	}
	want := []rateAction{rateAllow, rateAllow, rateDrop, rateDrop, rateSlip, rateAllow, rateAllow, rateAllow, rateDrop}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("actions %v, want %v", got, want)
		}
	}
	now = now.Add(500 * time.Millisecond) // one token back
	if rl.check(a) != rateAllow || rl.check(a) == rateAllow {
		t.Fatal("refill wrong")
	}
	// A flood of spoofed networks keeps memory bounded.
	for i := range 200000 {
		rl.check(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), 1}))
	}
	total := 0
	for i := range rl.shards {
		total += len(rl.shards[i].m)
	}
	if total > rateShards*rateShardLimit {
		t.Fatalf("%d buckets", total)
	}
}

// TestMalformedOnTheWire sends RELIABILITY #34's packets to a live server: each
// gets FORMERR or nothing, the server survives, and each costs well under 1 ms.
func TestMalformedOnTheWire(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t, Config{})
	c, err := net.Dial("udp", s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range malformedPackets() {
		t.Run(p.name, func(t *testing.T) {
			if _, err := c.Write(p.data); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2048)
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := c.Read(buf)
			if err == nil {
				r := new(dns.Msg)
				if err := r.Unpack(buf[:n]); err != nil {
					t.Fatalf("reply does not decode: %v", err)
				}
				// An EDNS option we do not implement is ignored (RFC 6891 §6.1.2).
				ignored := p.name == "bad client subnet option" && r.Rcode == dns.RcodeSuccess
				if !ignored && r.Rcode != dns.RcodeFormatError && r.Rcode != dns.RcodeRefused && r.Rcode != dns.RcodeNotImplemented {
					t.Fatalf("reply %v", r)
				}
			}
			// CPU per packet, measured on the handler.
			sc := newScratch()
			start := time.Now()
			const rounds = 2000
			for range rounds {
				s.serveMsg(s.tbl.Load(), p.data, testClient, false, sc)
			}
			if per := time.Since(start) / rounds; per > time.Millisecond {
				t.Fatalf("%v per packet", per)
			}
		})
	}
	// Still serving.
	if r := exchange(t, "udp", s.Addrs()[0], question("mail.example.com.", dns.TypeA)); len(r.Answer) != 1 {
		t.Fatalf("after malformed packets: %v", r)
	}
}

func TestTCPLimits(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t, Config{MaxTCPConns: 3, TCPIdleTimeout: 300 * time.Millisecond})
	addr := s.Addrs()[0]
	var idle []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	time.Sleep(50 * time.Millisecond)
	// The fourth is closed at once.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection over the cap was served")
	}
	c.Close()
	// Idle ones are closed after the timeout, and then the server accepts again.
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("idle connection not closed by the server: %v", err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if r := exchange(t, "tcp", addr, question("mail.example.com.", dns.TypeA)); len(r.Answer) != 1 {
		t.Fatalf("after idle close: %v", r)
	}
	// Pipelined queries on one connection are all answered, in order.
	conn, err := dns.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 5 {
		q := question("mail.example.com.", dns.TypeA)
		q.Id = uint16(100 + i)
		if err := conn.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		r, err := conn.ReadMsg()
		if err != nil || r.Id != uint16(100+i) {
			t.Fatalf("pipelined reply %d: %v %v", i, r, err)
		}
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, _ := testServer(t, Config{Addrs: []string{"127.0.0.1:0", "127.0.0.1:0"}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange(t, "udp", s.Addrs()[1], question("mail.example.com.", dns.TypeA))
	time.Sleep(20 * time.Millisecond)
	s.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before Close:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{Addrs: []string{"127.0.0.1:0"}}); err == nil {
		t.Fatal("nil Zones accepted")
	}
	if _, err := New(Config{Zones: NewMemorySource()}); err == nil {
		t.Fatal("no address accepted")
	}
	s, _ := testServer(t, Config{Addrs: []string{"256.0.0.1:0"}})
	if err := s.Start(); err == nil {
		s.Close()
		t.Fatal("bad address accepted")
	}
}

// TestDualStack serves "[::]:0" and answers IPv4 clients through v4-mapped
// addresses, which the batched UDP path must send back as IPv4.
func TestDualStack(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t, Config{Addrs: []string{"[::]:0"}, RateLimit: 1000,
		AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	_, port, _ := net.SplitHostPort(s.Addrs()[0])
	for _, host := range []string{"127.0.0.1", "::1"} {
		for _, n := range []string{"udp", "tcp"} {
			r := exchange(t, n, net.JoinHostPort(host, port), question("mail.example.com.", dns.TypeA))
			if len(r.Answer) != 1 {
				t.Fatalf("%s %s: %v", n, host, r)
			}
		}
	}
	// The v4-mapped client matches the IPv4 transfer prefix.
	r := exchange(t, "tcp", net.JoinHostPort("127.0.0.1", port), question("example.com.", dns.TypeIXFR))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) < 3 {
		t.Fatalf("IXFR from 127.0.0.1 over dual stack: %v", r)
	}
}

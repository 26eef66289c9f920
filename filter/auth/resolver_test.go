package auth

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startDNS serves zone (name → records in presentation format) on a real
// UDP and TCP socket of 127.0.0.1 and returns its address. Names listed in
// servfail answer SERVFAIL.
func startDNS(t *testing.T, zone map[string][]string, servfail map[string]bool) string {
	t.Helper()
	rrs := map[string][]dns.RR{}
	for name, recs := range zone {
		for _, s := range recs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatalf("bad test record %q: %v", s, err)
			}
			rrs[dns.CanonicalName(name)] = append(rrs[dns.CanonicalName(name)], rr)
		}
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		name := dns.CanonicalName(q.Name)
		all, ok := rrs[name]
		switch {
		case servfail[strings.TrimSuffix(name, ".")]:
			m.Rcode = dns.RcodeServerFailure
		case !ok:
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range all {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		// Force the TCP fallback for big answers over UDP.
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp && m.Len() > 512 {
			m.Answer, m.Truncated = nil, true
		}
		_ = w.WriteMsg(m)
	})
	// UDP and TCP on the same port: a free UDP port may be taken for TCP
	// by another test, so try a few.
	var pc net.PacketConn
	var ln net.Listener
	var addr string
	for try := 0; ; try++ {
		p, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", p.LocalAddr().String())
		if err == nil {
			pc, ln, addr = p, l, p.LocalAddr().String()
			break
		}
		p.Close()
		if try == 20 {
			t.Fatal(err)
		}
	}
	udpSrv := &dns.Server{PacketConn: pc, Handler: handler}
	tcpSrv := &dns.Server{Listener: ln, Handler: handler}
	go func() { _ = udpSrv.ActivateAndServe() }()
	go func() { _ = tcpSrv.ActivateAndServe() }()
	t.Cleanup(func() { _ = udpSrv.Shutdown(); _ = tcpSrv.Shutdown() })
	return addr
}

func TestDNSResolver(t *testing.T) {
	key, err := GenerateKey(AlgRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := key.DNSRecord()
	quoted := `"` + strings.Join(SplitTXT(rec), `" "`) + `"`
	addr := startDNS(t, map[string][]string{
		"example.org": {
			`example.org. 60 IN TXT "v=spf1 mx a:out.example.org -all"`,
			`example.org. 60 IN MX 10 mx.example.org.`,
		},
		"mx.example.org":             {`mx.example.org. 60 IN A 192.0.2.25`, `mx.example.org. 60 IN AAAA 2001:db8::25`},
		"out.example.org":            {`out.example.org. 60 IN A 192.0.2.26`},
		"_dmarc.example.org":         {`_dmarc.example.org. 60 IN TXT "v=DMARC1; p=reject"`},
		"sel._domainkey.example.org": {`sel._domainkey.example.org. 60 IN TXT ` + quoted},
		"empty.example.org":          {`empty.example.org. 60 IN A 192.0.2.1`},
	}, map[string]bool{"broken.example.org": true})
	res := NewDNSResolver(addr, 2*time.Second)
	ctx := context.Background()

	txt, err := res.LookupTXT(ctx, "sel._domainkey.example.org")
	if err != nil || len(txt) != 1 || txt[0] != rec {
		t.Fatalf("TXT (joined over TCP): %v %q", err, txt)
	}
	mx, err := res.LookupMX(ctx, "example.org")
	if err != nil || len(mx) != 1 || mx[0].Host != "mx.example.org." || mx[0].Pref != 10 {
		t.Fatalf("MX: %v %+v", err, mx)
	}
	got, err := res.LookupIP(ctx, "mx.example.org")
	if err != nil || len(got) != 2 {
		t.Fatalf("IP: %v %v", err, got)
	}
	if _, err := res.LookupTXT(ctx, "missing.example.org"); !isNotFound(err) {
		t.Fatalf("NXDOMAIN: %v", err)
	}
	if _, err := res.LookupTXT(ctx, "empty.example.org"); !isNotFound(err) {
		t.Fatalf("NODATA: %v", err)
	}
	var de *net.DNSError
	if _, err := res.LookupTXT(ctx, "broken.example.org"); !errors.As(err, &de) || !de.IsTemporary || de.IsNotFound {
		t.Fatalf("SERVFAIL: %v", err)
	}

	// The whole chain over the network resolver.
	signed := signWith(t, testMsg, "example.org", "sel", key)
	r := Check(ctx, res, net.ParseIP("2001:db8::25"), "mx.example.org", "alice@example.org", signed)
	if r.SPF.Result != SPFPass || len(r.DKIM) != 1 || r.DKIM[0].Result != "pass" || r.DMARC.Result != DMARCPass {
		t.Fatalf("check: %s", r.AuthenticationResults("h"))
	}
	r = Check(ctx, res, net.ParseIP("192.0.2.26"), "x", "alice@example.org", []byte(testMsg))
	if r.SPF.Result != SPFPass || r.DMARC.Result != DMARCPass {
		t.Fatalf("a: mechanism: %s", r.AuthenticationResults("h"))
	}
	r = Check(ctx, res, net.ParseIP("198.51.100.1"), "x", "alice@example.org", []byte(testMsg))
	if !r.Reject() {
		t.Fatalf("forged not rejected: %s", r.AuthenticationResults("h"))
	}
}

func TestDNSResolverTimeout(t *testing.T) {
	// A server that never answers.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	res := NewDNSResolver(pc.LocalAddr().String(), 200*time.Millisecond)
	start := time.Now()
	_, err = res.LookupTXT(context.Background(), "example.org")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsTimeout || isNotFound(err) {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	out := CheckSPF(context.Background(), res, net.ParseIP("192.0.2.1"), "h", "a@example.org")
	if out.Result != SPFTemperror {
		t.Fatalf("spf on dead dns: %+v", out)
	}
}

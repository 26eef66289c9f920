package webui

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestToolsRefuseBadArguments(t *testing.T) {
	srv, _ := w2Server(t, nil)
	cases := []struct {
		tool string
		body string
		want string
	}{
		{"ping", `{"host":"127.0.0.1; rm -rf /"}`, "not an IP address or a host name"},
		{"ping", `{"host":"$(reboot)"}`, "not an IP address or a host name"},
		{"ping", "{\"host\":\"a`id`\"}", "not an IP address or a host name"},
		{"ping", `{"host":"a|b"}`, "not an IP address or a host name"},
		{"ping", `{"host":"a&&b"}`, "not an IP address or a host name"},
		{"ping", `{"host":"-f"}`, "not an IP address or a host name"},
		{"ping", `{"host":"--help"}`, "not an IP address or a host name"},
		{"ping", `{"host":"-c 1000 127.0.0.1"}`, "not an IP address or a host name"},
		{"ping", `{"host":"a b"}`, "not an IP address or a host name"},
		{"ping", `{"host":"a\nb"}`, "not an IP address or a host name"},
		{"ping", `{"host":"fe80::1%eth0"}`, "zone"},
		{"ping", `{"host":""}`, "give an IP address"},
		{"ping", `{"host":"127.0.0.1","count":11}`, "count 11"},
		{"ping", `{"host":"127.0.0.1","count":-1}`, "count -1"},
		{"ping", `{"host":"127.0.0.1","flags":"-f"}`, "unknown field"},
		{"traceroute", `{"host":"-I"}`, "not an IP address or a host name"},
		{"tcp", `{"host":"127.0.0.1","port":0}`, "port 0"},
		{"tcp", `{"host":"127.0.0.1","port":65536}`, "port 65536"},
		{"tcp", `{"host":"x>y","port":25}`, "not an IP address or a host name"},
		{"dns", `{"name":"example.com","type":"ANY; ls"}`, "type"},
		{"dns", `{"name":"-x"}`, "not an IP address or a host name"},
		{"dns", `{"name":"example.com","server":"8.8.8.8 -p 5353"}`, "server"},
		{"dns", `{"name":"example.com","server":"-d"}`, "server"},
		{"dns", `{"name":"` + strings.Repeat("a", 254) + `"}`, "not an IP address or a host name"},
		{"nmap", `{"host":"127.0.0.1"}`, "no tool"},
		{"ping", `not json`, "bad JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.tool+" "+tc.body, func(t *testing.T) {
			code, body := call(t, srv, "POST", "/api/tools/"+tc.tool, tc.body)
			if code != http.StatusBadRequest && !(tc.tool == "nmap" && code == http.StatusNotFound) {
				t.Fatalf("status %d: %s", code, body)
			}
			if msg := errorOf(t, body); !strings.Contains(msg, tc.want) {
				t.Fatalf("error %q does not say %q", msg, tc.want)
			}
		})
	}
}

func TestCheckToolHost(t *testing.T) {
	for _, ok := range []string{"127.0.0.1", "::1", "2001:db8::1", "example.com", "mx1.example.com.", "_dmarc.example.com", "localhost", "xn--bcher-kva.example"} {
		if _, err := CheckToolHost(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"-v", "a-.b", ".example", "a..b", "ex ample", "exa\x00mple", "a/b", "a:b:c:::x", "ümlaut.de", "a;b"} {
		if _, err := CheckToolHost(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzCheckToolHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "example.com", "-x", "a;b", "::1", "fe80::1%lo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := CheckToolHost(s)
		if err != nil {
			return
		}
		if strings.HasPrefix(h, "-") || strings.ContainsAny(h, " \t\n;|&$`<>()'\"\\%") {
			t.Fatalf("%q accepted as %q", s, h)
		}
	})
}

func TestToolPingStreams(t *testing.T) {
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("ping (iputils-ping) not installed:", err)
	}
	srv, _ := w2Server(t, nil)
	code, body := call(t, srv, "POST", "/api/tools/ping", `{"host":"127.0.0.1","count":2}`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	out := string(body)
	if strings.Count(out, "from 127.0.0.1") != 2 || !strings.Contains(out, "2 received") {
		t.Fatalf("ping output:\n%s", out)
	}
}

func TestToolTracerouteMissing(t *testing.T) {
	tr := &toolRunner{a: &API{cfg: APIConfig{}}, sem: make(chan struct{}, 1),
		lookPath: func(string) (string, error) { return "", exec.ErrNotFound }}
	_, code, err := tr.prepare("traceroute", ToolRequest{Host: "127.0.0.1"})
	if code != http.StatusServiceUnavailable || err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("missing traceroute: %d %v", code, err)
	}
}

func TestToolTCPCheck(t *testing.T) {
	srv, _ := w2Server(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 test.example ESMTP ready\r\n"))
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	code, body := call(t, srv, "POST", "/api/tools/tcp", map[string]any{"host": "127.0.0.1", "port": port})
	if code != http.StatusOK || !strings.Contains(string(body), "open: connected") || !strings.Contains(string(body), "banner: 220 test.example ESMTP ready") {
		t.Fatalf("open port: %d\n%s", code, body)
	}

	// A port nobody listens on: take one and close it.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l2.Addr().(*net.TCPAddr).Port
	l2.Close()
	code, body = call(t, srv, "POST", "/api/tools/tcp", `{"host":"127.0.0.1","port":`+strconv.Itoa(closed)+`}`)
	if code != http.StatusOK || !strings.Contains(string(body), "closed: connection refused") {
		t.Fatalf("closed port: %d\n%s", code, body)
	}
}

func TestToolDNSLookup(t *testing.T) {
	// A tiny DNS server on loopback answering every A question.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go serveTestDNS(pc)
	srv, _ := w2Server(t, func(c *APIConfig) { c.DNSResolver = pc.LocalAddr().String() })
	code, body := call(t, srv, "POST", "/api/tools/dns", `{"name":"mail.example.test","type":"a"}`)
	if code != http.StatusOK || !strings.Contains(string(body), "mail.example.test.\t60\tIN\tA\t192.0.2.7") || !strings.Contains(string(body), "status NOERROR") {
		t.Fatalf("dns: %d\n%s", code, body)
	}
}

func serveTestDNS(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		q := new(dns.Msg)
		if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
			continue
		}
		r := new(dns.Msg)
		r.SetReply(q)
		if q.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 192.0.2.7")
			r.Answer = append(r.Answer, rr)
		}
		out, _ := r.Pack()
		pc.WriteTo(out, addr)
	}
}

func TestToolTracerouteStreams(t *testing.T) {
	if _, err := exec.LookPath("traceroute"); err != nil {
		t.Skip("traceroute (Debian package traceroute) not installed:", err)
	}
	srv, _ := w2Server(t, nil)
	code, body := call(t, srv, "POST", "/api/tools/traceroute", `{"host":"127.0.0.1"}`)
	if code != http.StatusOK || !strings.Contains(string(body), "traceroute to 127.0.0.1") || !strings.Contains(string(body), " 1  127.0.0.1") {
		t.Fatalf("traceroute: %d\n%s", code, body)
	}
}

// TestToolRunsBounded: at most maxToolRuns tools run at once; the next one
// is refused with 429 rather than queued.
func TestToolRunsBounded(t *testing.T) {
	tr := &toolRunner{a: &API{cfg: APIConfig{Logger: slog.New(slog.DiscardHandler)}}, sem: make(chan struct{}, maxToolRuns), lookPath: exec.LookPath}
	for i := 0; i < maxToolRuns; i++ {
		tr.sem <- struct{}{}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/tools/tcp", strings.NewReader(`{"host":"127.0.0.1","port":1}`))
	req.SetPathValue("tool", "tcp")
	tr.serve(rec, req)
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "running already") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	<-tr.sem
	rec = httptest.NewRecorder()
	req = httptest.NewRequest("POST", "/api/tools/tcp", strings.NewReader(`{"host":"127.0.0.1","port":1}`))
	req.SetPathValue("tool", "tcp")
	tr.serve(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "closed:") {
		t.Fatalf("after a slot freed: %d %s", rec.Code, rec.Body)
	}
}

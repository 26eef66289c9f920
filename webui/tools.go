package webui

// Network tools run from the box (SPEC D2): ping, traceroute, DNS lookup
// and TCP port check, streamed to the caller line by line as chunked
// text/plain. Arguments are validated before anything runs, programs are
// started with an argument vector (never a shell), every run is bounded in
// count and time, and at most maxToolRuns run at once on a node.
//
//	POST /api/tools/ping        {"host": "192.0.2.1", "count": 4}
//	POST /api/tools/traceroute  {"host": "example.com"}
//	POST /api/tools/dns         {"name": "example.com", "type": "MX", "server": "192.0.2.53"}
//	POST /api/tools/tcp         {"host": "mx.example.com", "port": 25}

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Tool limits.
const (
	maxPingCount = 10
	maxToolTime  = 30 * time.Second
	maxToolRuns  = 4
	tcpTimeout   = 5 * time.Second
)

// ToolRequest is the JSON body of POST /api/tools/{tool}.
type ToolRequest struct {
	Host string `json:"host,omitempty"` // ping, traceroute, tcp
	// Count of echo requests (ping; 1-10, default 4).
	Count int    `json:"count,omitempty"`
	Port  int    `json:"port,omitempty"` // tcp; 1-65535
	Name  string `json:"name,omitempty"` // dns
	// Type is the DNS record type (dns; default A).
	Type string `json:"type,omitempty"`
	// Server is a DNS server IP (dns; default the node's resolver).
	Server string `json:"server,omitempty"`
}

// hostnameRE is a DNS name of letters, digits, '-' and '_' labels (RFC 1123
// §2.1, '_' for service names), no label starting or ending with '-', so no
// argument can ever look like a command-line option.
var hostnameRE = regexp.MustCompile(`^(?i)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$`)

// CheckToolHost accepts an IP literal or a DNS name, nothing else.
func CheckToolHost(h string) (string, error) {
	if h == "" {
		return "", errors.New("host: give an IP address or a host name")
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("host %q: no zone index allowed", h)
		}
		return ip.String(), nil
	}
	if len(h) > 253 || !hostnameRE.MatchString(h) {
		return "", fmt.Errorf("host %q: not an IP address or a host name (letters, digits, '-', '.' only; no spaces or shell characters)", clip(h))
	}
	return strings.ToLower(h), nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// dnsTypes are the record types the lookup tool offers.
var dnsTypes = map[string]uint16{"A": dns.TypeA, "AAAA": dns.TypeAAAA, "MX": dns.TypeMX, "TXT": dns.TypeTXT,
	"NS": dns.TypeNS, "CNAME": dns.TypeCNAME, "PTR": dns.TypePTR, "SOA": dns.TypeSOA, "SRV": dns.TypeSRV,
	"CAA": dns.TypeCAA, "TLSA": dns.TypeTLSA}

type toolRunner struct {
	a   *API
	sem chan struct{}
	// lookPath finds programs (tests replace it to simulate a missing one).
	lookPath func(string) (string, error)
}

func (a *API) routesTools() {
	t := &toolRunner{a: a, sem: make(chan struct{}, maxToolRuns), lookPath: exec.LookPath}
	a.mux.HandleFunc("POST /api/tools/{tool}", a.globalAdminOnly(t.serve))
}

// toolArgs validates a request and returns what to run: argv for an
// external program, or a Go function.
type toolJob struct {
	argv []string
	fn   func(ctx context.Context, out func(string)) error
}

func (t *toolRunner) prepare(tool string, req ToolRequest) (toolJob, int, error) {
	bad := func(err error) (toolJob, int, error) { return toolJob{}, http.StatusBadRequest, err }
	switch tool {
	case "ping":
		host, err := CheckToolHost(req.Host)
		if err != nil {
			return bad(err)
		}
		if req.Count == 0 {
			req.Count = 4
		}
		if req.Count < 1 || req.Count > maxPingCount {
			return bad(fmt.Errorf("count %d: must be 1-%d", req.Count, maxPingCount))
		}
		ping, err := t.lookPath("ping")
		if err != nil {
			return toolJob{}, http.StatusServiceUnavailable, errors.New("ping is not installed on this node (Debian package iputils-ping)")
		}
		// -W 2: wait at most 2 s per reply; -w: the whole run's deadline;
		// "--" ends options, so the host is never read as one.
		return toolJob{argv: []string{ping, "-c", strconv.Itoa(req.Count), "-W", "2",
			"-w", strconv.Itoa(req.Count + 2), "--", host}}, 0, nil
	case "traceroute":
		host, err := CheckToolHost(req.Host)
		if err != nil {
			return bad(err)
		}
		tr, err := t.lookPath("traceroute")
		if err != nil {
			return toolJob{}, http.StatusServiceUnavailable, errors.New("traceroute is not installed on this node (Debian package traceroute)")
		}
		// One probe per hop, 2 s each, 20 hops: at most 40 s of waiting in
		// theory; the 30 s run limit cuts the rest.
		return toolJob{argv: []string{tr, "-n", "-q", "1", "-w", "2", "-m", "20", "--", host}}, 0, nil
	case "tcp":
		host, err := CheckToolHost(req.Host)
		if err != nil {
			return bad(err)
		}
		if req.Port < 1 || req.Port > 65535 {
			return bad(fmt.Errorf("port %d: must be 1-65535", req.Port))
		}
		return toolJob{fn: func(ctx context.Context, out func(string)) error { return tcpCheck(ctx, host, req.Port, out) }}, 0, nil
	case "dns":
		name, err := CheckToolHost(req.Name)
		if err != nil {
			return bad(fmt.Errorf("name: %w", err))
		}
		typ := strings.ToUpper(strings.TrimSpace(req.Type))
		if typ == "" {
			typ = "A"
		}
		qtype, ok := dnsTypes[typ]
		if !ok {
			return bad(fmt.Errorf("type %q: one of A, AAAA, MX, TXT, NS, CNAME, PTR, SOA, SRV, CAA, TLSA", clip(req.Type)))
		}
		if ip, err := netip.ParseAddr(name); err == nil {
			// A lookup of an address is a reverse lookup (RFC 1035 §3.5).
			name, _ = dns.ReverseAddr(ip.String())
			qtype, typ = dns.TypePTR, "PTR"
		}
		server, err := t.dnsServer(req.Server)
		if err != nil {
			return bad(err)
		}
		return toolJob{fn: func(ctx context.Context, out func(string)) error {
			return dnsLookup(ctx, server, name, typ, qtype, out)
		}}, 0, nil
	}
	return toolJob{}, http.StatusNotFound, fmt.Errorf("no tool %q: ping, traceroute, dns or tcp", clip(tool))
}

// dnsServer is the server to ask: the request's (an IP literal), the
// node's --dns-resolver, or the first of /etc/resolv.conf.
func (t *toolRunner) dnsServer(s string) (string, error) {
	if s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return "", fmt.Errorf("server %q: give the DNS server's IP address", clip(s))
		}
		return net.JoinHostPort(ip.String(), "53"), nil
	}
	if t.a.cfg.DNSResolver != "" {
		return t.a.cfg.DNSResolver, nil
	}
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(cc.Servers) == 0 {
		return "127.0.0.1:53", nil
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

func (t *toolRunner) serve(w http.ResponseWriter, r *http.Request) {
	var req ToolRequest
	if !decode(w, r, &req) {
		return
	}
	tool := r.PathValue("tool")
	job, code, err := t.prepare(tool, req)
	if err != nil {
		writeError(w, code, err)
		return
	}
	select {
	case t.sem <- struct{}{}:
		defer func() { <-t.sem }()
	default:
		writeError(w, http.StatusTooManyRequests, fmt.Errorf("%d network tools are running already; try again when one has finished", maxToolRuns))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxToolTime)
	defer cancel()

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex
	out := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(w, strings.TrimRight(line, "\r\n")+"\n")
		if flusher != nil {
			flusher.Flush()
		}
	}
	t.a.cfg.Logger.Info("network tool", "tool", tool, "host", req.Host, "name", req.Name, "port", req.Port)
	if job.fn != nil {
		err = job.fn(ctx, out)
	} else {
		err = runStreamed(ctx, job.argv, out)
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		out(fmt.Sprintf("stopped after the %s limit", maxToolTime))
	case err != nil:
		out("error: " + err.Error())
	}
}

// runStreamed runs argv (no shell) with an empty environment and passes
// each line of its combined output to out.
func runStreamed(ctx context.Context, argv []string, out func(string)) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	cmd.Stdin = nil
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			out(sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	err := cmd.Wait()
	pw.Close()
	<-done
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		// ping exits 1 when no reply came: the output says so already.
		out(fmt.Sprintf("exit status %d", ee.ExitCode()))
		return nil
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// tcpCheck connects, reports the time taken and any greeting the server
// sends in its first second (an SMTP, IMAP or POP3 banner).
func tcpCheck(ctx context.Context, host string, port int, out func(string)) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	out("connecting to " + addr + " ...")
	d := net.Dialer{Timeout: tcpTimeout}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		out(fmt.Sprintf("closed: %v", unwrapOp(err)))
		return nil
	}
	defer c.Close()
	out(fmt.Sprintf("open: connected to %s in %d ms", c.RemoteAddr(), time.Since(start).Milliseconds()))
	c.SetReadDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 512)).ReadString('\n')
	if line = strings.TrimSpace(line); line != "" {
		out("banner: " + strings.Map(printable, line))
	} else if err != nil {
		out("no banner in 1 s")
	}
	return nil
}

func printable(r rune) rune {
	if r < 0x20 || r == 0x7f {
		return '?'
	}
	return r
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var se *os.SyscallError
		if errors.As(op.Err, &se) {
			return se.Err
		}
		return op.Err
	}
	return err
}

// dnsLookup asks server one question with recursion desired and prints the
// answer's records in zone-file form, falling back to TCP when the UDP
// answer is truncated (RFC 7766 §5).
func dnsLookup(ctx context.Context, server, name, typ string, qtype uint16, out func(string)) error {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	out(fmt.Sprintf("asking %s for %s %s", server, dns.Fqdn(name), typ))
	c := &dns.Client{Timeout: 5 * time.Second}
	resp, rtt, err := c.ExchangeContext(ctx, m, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, rtt, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return fmt.Errorf("lookup %s %s at %s: %w", name, typ, server, err)
	}
	out(fmt.Sprintf("status %s, %d answer(s), %d ms", dns.RcodeToString[resp.Rcode], len(resp.Answer), rtt.Milliseconds()))
	for _, rr := range resp.Answer {
		out(rr.String())
	}
	if len(resp.Answer) == 0 {
		for _, rr := range resp.Ns {
			out("authority: " + rr.String())
		}
	}
	return nil
}

package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// resolver asks a recursive DNS server (Config.Resolver, else those of
// /etc/resolv.conf) and records each question and answer for the
// transcript.
type resolver struct {
	servers []string
	log     *slog.Logger
	timeout time.Duration
}

func newResolver(server string, log *slog.Logger) *resolver {
	r := &resolver{log: log, timeout: 5 * time.Second}
	if server != "" {
		r.servers = []string{server}
		return r
	}
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(cc.Servers) == 0 {
		log.Warn("outbound: no DNS servers in /etc/resolv.conf, using 127.0.0.1:53", "err", err)
		r.servers = []string{"127.0.0.1:53"}
		return r
	}
	for _, s := range cc.Servers {
		r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
	}
	return r
}

// dnsError is a failed lookup. NotFound (NXDOMAIN) is a fact about the
// name; anything else (SERVFAIL, timeouts) is temporary.
type dnsError struct {
	Name     string
	NotFound bool
	Msg      string
}

func (e *dnsError) Error() string { return fmt.Sprintf("DNS %s: %s", e.Name, e.Msg) }

// lookup asks for the records of one type. It returns those of that type
// in the answer (following the CNAME chain the recursive server gave),
// nil for NODATA, or a *dnsError.
func (r *resolver) lookup(ctx context.Context, name string, qtype uint16, rec *recorder) ([]dns.RR, error) {
	q := dns.Fqdn(name)
	x := DNSExchange{Question: q + " IN " + dns.TypeToString[qtype]}
	rrs, err := r.exchange(ctx, q, qtype)
	if err != nil {
		x.Error = err.Error()
		var de *dnsError
		if errors.As(err, &de) {
			x.Error = de.Msg
		}
	}
	for _, rr := range rrs {
		x.Answers = append(x.Answers, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	rec.dns(x)
	var out []dns.RR
	for _, rr := range rrs {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	return out, err
}

func (r *resolver) exchange(ctx context.Context, q string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(q, qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false) // the DNS flag day 2020 buffer size
	var last error = &dnsError{Name: q, Msg: "no DNS server answered"}
	for try := 0; try < 2; try++ {
		for _, srv := range r.servers {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			resp, err := r.ask(ctx, "udp", m, srv)
			if err == nil && resp.Truncated {
				resp, err = r.ask(ctx, "tcp", m, srv)
			}
			if err != nil {
				last = &dnsError{Name: q, Msg: fmt.Sprintf("%s: %v", srv, err)}
				continue
			}
			if resp.Id != m.Id || len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, q) {
				last = &dnsError{Name: q, Msg: srv + ": answer does not match the question"}
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess:
				return resp.Answer, nil
			case dns.RcodeNameError:
				return resp.Answer, &dnsError{Name: q, NotFound: true, Msg: "NXDOMAIN"}
			default:
				last = &dnsError{Name: q, Msg: dns.RcodeToString[resp.Rcode]}
			}
		}
	}
	return nil, last
}

func (r *resolver) ask(ctx context.Context, network string, m *dns.Msg, srv string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: r.timeout}
	resp, _, err := c.ExchangeContext(ctx, m, srv)
	return resp, err
}

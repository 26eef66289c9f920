// Package auth implements sender authentication for inbound mail (SPF, RFC
// 7208; DKIM, RFC 6376; DMARC, RFC 7489; ARC chain validation, RFC 8617),
// DKIM signing of outbound mail, and the Authentication-Results header
// (RFC 8601). Outbound key management and signing live in filter/dkimsign.
package auth

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Resolver is the DNS the checks use. Errors follow net.Resolver: a
// *net.DNSError with IsNotFound set for NXDOMAIN or an empty answer (a "void
// lookup", RFC 7208 §4.6.4), and IsTemporary/IsTimeout for server failures.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupIP(ctx context.Context, name string) ([]net.IP, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
}

// isNotFound reports whether err means "no such name or no such record".
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// notFound builds the error a Resolver returns for NXDOMAIN or NODATA.
func notFound(name, server string) error {
	return &net.DNSError{Err: "no such host", Name: name, Server: server, IsNotFound: true}
}

// DNSResolver queries one DNS server (e.g. "127.0.0.1:5353") directly, over
// UDP with a fallback to TCP when the answer is truncated.
type DNSResolver struct {
	server  string
	timeout time.Duration
	udp     *dns.Client
	tcp     *dns.Client
}

// NewDNSResolver returns a resolver asking server ("host:port"). timeout
// bounds each query; zero means 5 s.
func NewDNSResolver(server string, timeout time.Duration) *DNSResolver {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &DNSResolver{
		server:  server,
		timeout: timeout,
		udp:     &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 4096},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
	}
}

// query sends one question and returns the answer section, mapping DNS
// response codes onto *net.DNSError.
func (r *DNSResolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(4096, false)
	resp, _, err := r.udp.ExchangeContext(ctx, m, r.server)
	if err == nil && resp.Truncated {
		resp, _, err = r.tcp.ExchangeContext(ctx, m, r.server)
	}
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: name, Server: r.server, IsTimeout: true, IsTemporary: true}
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, notFound(name, r.server)
	default:
		return nil, &net.DNSError{Err: "server answered " + dns.RcodeToString[resp.Rcode], Name: name, Server: r.server, IsTemporary: true}
	}
	var out []dns.RR
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	if len(out) == 0 {
		return nil, notFound(name, r.server)
	}
	return out, nil
}

// LookupTXT returns each TXT record with its strings concatenated (RFC 7208 §3.3).
func (r *DNSResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupIP returns the A and AAAA records of name. It fails only when both
// queries fail; a temporary failure wins over "not found".
func (r *DNSResolver) LookupIP(ctx context.Context, name string) ([]net.IP, error) {
	var (
		wg         sync.WaitGroup
		a, aaaa    []dns.RR
		errA, err6 error
	)
	wg.Add(2)
	go func() { defer wg.Done(); a, errA = r.query(ctx, name, dns.TypeA) }()
	go func() { defer wg.Done(); aaaa, err6 = r.query(ctx, name, dns.TypeAAAA) }()
	wg.Wait()
	var ips []net.IP
	for _, rr := range a {
		ips = append(ips, rr.(*dns.A).A)
	}
	for _, rr := range aaaa {
		ips = append(ips, rr.(*dns.AAAA).AAAA)
	}
	if len(ips) > 0 {
		return ips, nil
	}
	if errA != nil && !isNotFound(errA) {
		return nil, errA
	}
	if err6 != nil && !isNotFound(err6) {
		return nil, err6
	}
	return nil, notFound(name, r.server)
}

// LookupMX returns the MX records of name, in answer order.
func (r *DNSResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, nil
}

// StaticResolver is an in-memory Resolver for tests and for local
// overrides. Keys are domain names without the trailing dot, any case. A
// name listed in Fail returns a temporary error for every lookup.
type StaticResolver struct {
	TXT  map[string][]string
	IP   map[string][]net.IP
	MX   map[string][]*net.MX
	Fail map[string]bool

	mu      sync.Mutex
	queries int
}

// Queries returns how many lookups were made so far.
func (s *StaticResolver) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func (s *StaticResolver) key(name string) (string, error) {
	s.mu.Lock()
	s.queries++
	s.mu.Unlock()
	k := strings.ToLower(strings.TrimSuffix(name, "."))
	if s.Fail[k] {
		return k, &net.DNSError{Err: "simulated failure", Name: name, IsTemporary: true}
	}
	return k, nil
}

// LookupTXT implements Resolver.
func (s *StaticResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	k, err := s.key(name)
	if err != nil {
		return nil, err
	}
	if v := s.TXT[k]; len(v) > 0 {
		return v, nil
	}
	return nil, notFound(name, "static")
}

// LookupIP implements Resolver.
func (s *StaticResolver) LookupIP(ctx context.Context, name string) ([]net.IP, error) {
	k, err := s.key(name)
	if err != nil {
		return nil, err
	}
	if v := s.IP[k]; len(v) > 0 {
		return v, nil
	}
	return nil, notFound(name, "static")
}

// LookupMX implements Resolver.
func (s *StaticResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	k, err := s.key(name)
	if err != nil {
		return nil, err
	}
	if v := s.MX[k]; len(v) > 0 {
		return v, nil
	}
	return nil, notFound(name, "static")
}

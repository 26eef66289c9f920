package dnsbl

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Resolver answers A queries with the records' lifetime. A name that does
// not exist (NXDOMAIN, NODATA) is not an error: no addresses and the
// negative-caching time (RFC 2308 §5).
type Resolver interface {
	LookupA(ctx context.Context, name string) (addrs []net.IP, ttl time.Duration, err error)
}

// DNSResolver asks one recursive DNS server directly over UDP (TCP when
// the answer is truncated), so the TTLs are known.
type DNSResolver struct {
	Server string // "host:port"
}

// NewDNSResolver returns a resolver asking server; "" uses the first
// server of /etc/resolv.conf (127.0.0.1:53 when there is none).
func NewDNSResolver(server string) *DNSResolver {
	if server == "" {
		server = "127.0.0.1:53"
		if cc, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil && len(cc.Servers) > 0 {
			server = net.JoinHostPort(cc.Servers[0], cc.Port)
		}
	}
	return &DNSResolver{Server: server}
}

// LookupA implements Resolver.
func (r *DNSResolver) LookupA(ctx context.Context, name string) ([]net.IP, time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.RecursionDesired = true
	c := &dns.Client{Net: "udp"}
	in, _, err := c.ExchangeContext(ctx, m, r.Server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, r.Server)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("query %s at %s: %w", name, r.Server, err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, 0, fmt.Errorf("query %s at %s: %s", name, r.Server, dns.RcodeToString[in.Rcode])
	}
	var ips []net.IP
	ttl := time.Duration(-1)
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok {
			ips = append(ips, a.A)
			if t := time.Duration(a.Hdr.Ttl) * time.Second; ttl < 0 || t < ttl {
				ttl = t
			}
		}
	}
	if len(ips) == 0 {
		// RFC 2308 §5: a negative answer lives min(SOA TTL, SOA minimum).
		ttl = -1
		for _, rr := range in.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			}
		}
	}
	if ttl < 0 {
		ttl = 5 * time.Minute
	}
	return ips, ttl, nil
}

// cache keeps answers for their TTL, bounded in entries: a flood of
// connections from distinct addresses cannot grow it without limit.
type cache struct {
	mu      sync.Mutex
	max     int
	minTTL  time.Duration
	maxTTL  time.Duration
	entries map[string]cacheEntry
}

type cacheEntry struct {
	ips     []net.IP
	expires time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, minTTL: 30 * time.Second, maxTTL: time.Hour, entries: make(map[string]cacheEntry)}
}

func (c *cache) get(name string, now time.Time) ([]net.IP, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[name]
	if !ok {
		return nil, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, name)
		return nil, false
	}
	return e.ips, true
}

func (c *cache) put(name string, ips []net.IP, ttl time.Duration, now time.Time) {
	ttl = max(c.minTTL, min(ttl, c.maxTTL))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Drop the expired entries; if none, an eighth of the cache
		// (map order: arbitrary, which is good enough for a cache).
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		drop := c.max / 8
		for k := range c.entries {
			if len(c.entries) < c.max || drop <= 0 {
				break
			}
			delete(c.entries, k)
			drop--
		}
	}
	c.entries[name] = cacheEntry{ips: ips, expires: now.Add(ttl)}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

package dnsd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Check statuses of a published record.
const (
	CheckPresent = "present"
	CheckMissing = "missing"
	CheckWrong   = "wrong"
	CheckError   = "error" // the lookup failed (timeout, SERVFAIL): unknown
)

// CheckResult is what a resolver returned for one record a domain should
// publish.
type CheckResult struct {
	Record Record   `json:"record"`
	Status string   `json:"status"`
	Found  []string `json:"found,omitempty"` // values of the same kind that are there instead
	Error  string   `json:"error,omitempty"`
}

// LookupFunc asks a resolver for name and type; a name that does not exist
// is an empty answer, not an error.
type LookupFunc func(ctx context.Context, name string, qtype uint16) ([]dns.RR, error)

// CheckRecords looks up every record of want and says whether it is present,
// missing or wrong. Records of one RRset (and for TXT of one "v=" tag, so the
// SPF record is judged apart from verification strings) are compared as a
// set: an expected value absent while others of its kind exist is wrong.
func CheckRecords(ctx context.Context, want []Record, lookup LookupFunc) []CheckResult {
	type answer struct {
		rrs []dns.RR
		err error
	}
	cache := map[string]answer{}
	out := make([]CheckResult, 0, len(want))
	for _, r := range want {
		qtype := dns.StringToType[r.Type]
		ck := r.Name + " " + r.Type
		a, ok := cache[ck]
		if !ok {
			a.rrs, a.err = lookup(ctx, r.Name, qtype)
			cache[ck] = a
		}
		res := CheckResult{Record: r}
		if a.err != nil {
			res.Status, res.Error = CheckError, a.err.Error()
			out = append(out, res)
			continue
		}
		tag := txtTag(r.Value)
		for _, rr := range a.rrs {
			if rr.Header().Rrtype != qtype {
				continue
			}
			got := fromRR(rr)
			if qtype == dns.TypeTXT && txtTag(got.Value) != tag {
				continue
			}
			res.Found = append(res.Found, got.Value)
		}
		switch {
		case slices.Contains(res.Found, r.Value):
			res.Status, res.Found = CheckPresent, nil
		case len(res.Found) == 0:
			res.Status = CheckMissing
		default:
			res.Status = CheckWrong
		}
		out = append(out, res)
	}
	return out
}

// ResolverLookup returns a LookupFunc asking server (HOST:PORT or HOST; "" is
// the first nameserver of /etc/resolv.conf) with recursion desired, over UDP
// and again over TCP when the answer is truncated. This is the admin's check
// tool, not the authoritative server, which never sends queries (RFC 5358).
func ResolverLookup(server string) (LookupFunc, error) {
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("no resolver given and /etc/resolv.conf unusable: %w", err)
		}
		if len(cc.Servers) == 0 {
			return nil, errors.New("no resolver given and none in /etc/resolv.conf")
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	} else if _, _, err := net.SplitHostPort(server); err != nil {
		if net.ParseIP(strings.Trim(server, "[]")) == nil && strings.ContainsAny(server, " /") {
			return nil, fmt.Errorf("resolver %q: want HOST or HOST:PORT", server)
		}
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	return func(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		m.SetEdns0(1232, false)
		c := &dns.Client{Timeout: 3 * time.Second}
		resp, _, err := c.ExchangeContext(ctx, m, server)
		if err == nil && resp.Truncated {
			c.Net = "tcp"
			resp, _, err = c.ExchangeContext(ctx, m, server)
		}
		if err != nil {
			return nil, fmt.Errorf("ask %s for %s %s: %w", server, name, dns.TypeToString[qtype], err)
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return resp.Answer, nil
		default:
			return nil, fmt.Errorf("%s answered %s for %s %s", server, dns.RcodeToString[resp.Rcode], name, dns.TypeToString[qtype])
		}
	}, nil
}

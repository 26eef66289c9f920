package outbound

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
)

// failure is an outcome shared by every recipient of a destination.
type failure struct {
	Perm bool
	Code int
	Enh  [3]int
	Msg  string
}

func (f *failure) String() string {
	return fmt.Sprintf("%d %d.%d.%d %s", f.Code, f.Enh[0], f.Enh[1], f.Enh[2], f.Msg)
}

func tempFailure(enh [3]int, format string, a ...any) *failure {
	return &failure{Code: 451, Enh: enh, Msg: fmt.Sprintf(format, a...)}
}

func permFailure(code int, enh [3]int, format string, a ...any) *failure {
	return &failure{Perm: true, Code: code, Enh: enh, Msg: fmt.Sprintf(format, a...)}
}

// mxHost is one host to try, in order, with its addresses.
type mxHost struct {
	Name  string // without the trailing dot; the TLS server name
	Pref  uint16
	Addrs []netip.Addr
	Port  int // 0: the engine's port; set for gateway backends
}

// asciiDomain is the A-label form used in DNS (RFC 5890); SMTPUTF8 mail may
// name a domain in U-labels.
func asciiDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", err
	}
	return strings.ToLower(a), nil
}

// mxHosts finds where mail for domain goes: its MX hosts by preference
// (equal preferences shuffled, RFC 5321 §5.1), the domain itself when it
// has no MX (the implicit MX), and a permanent failure for a null MX
// (RFC 7505) or a domain that does not exist.
func (e *Engine) mxHosts(ctx context.Context, domain string, rec *recorder) ([]mxHost, *failure) {
	if strings.HasPrefix(domain, "[") {
		return nil, permFailure(550, [3]int{5, 1, 2}, "address literals are not delivered to")
	}
	ad, err := asciiDomain(domain)
	if err != nil || ad == "" {
		return nil, permFailure(550, [3]int{5, 1, 2}, "bad domain %q", domain)
	}
	rrs, err := e.res.lookup(ctx, ad, dns.TypeMX, rec)
	var de *dnsError
	switch {
	case errors.As(err, &de) && de.NotFound:
		return nil, permFailure(550, [3]int{5, 1, 2}, "domain %s does not exist (NXDOMAIN)", ad)
	case err != nil:
		return nil, tempFailure([3]int{4, 4, 3}, "MX lookup for %s failed: %v", ad, err)
	}
	var hosts []mxHost
	null := false
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		if mx.Mx == "." {
			null = true
			continue
		}
		hosts = append(hosts, mxHost{Name: strings.ToLower(strings.TrimSuffix(mx.Mx, ".")), Pref: mx.Preference})
	}
	if null && len(hosts) == 0 {
		// RFC 7505 §4.1: the domain accepts no mail; say so at once.
		return nil, permFailure(556, [3]int{5, 1, 10}, "domain %s does not accept mail (null MX, RFC 7505)", ad)
	}
	implicit := len(hosts) == 0
	if implicit {
		// RFC 5321 §5.1: no MX records, the domain is its own mail host.
		hosts = []mxHost{{Name: ad}}
	}
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	sort.SliceStable(hosts, func(i, j int) bool { return hosts[i].Pref < hosts[j].Pref })

	var tempErr error
	allNotFound := true
	n := 0
	for i := range hosts {
		if n >= e.cfg.MaxAddresses {
			break
		}
		addrs, notFound, err := e.hostAddrs(ctx, hosts[i].Name, rec)
		if err != nil && !notFound {
			tempErr = err
		}
		if !notFound {
			allNotFound = false
		}
		hosts[i].Addrs = addrs
		n += len(addrs)
	}
	out := hosts[:0]
	for _, h := range hosts {
		if len(h.Addrs) > 0 {
			out = append(out, h)
		}
	}
	switch {
	case len(out) > 0:
		return out, nil
	case tempErr != nil:
		return nil, tempFailure([3]int{4, 4, 3}, "address lookup failed: %v", tempErr)
	case implicit && allNotFound:
		return nil, permFailure(550, [3]int{5, 1, 2}, "domain %s has no MX and no address records", ad)
	}
	return nil, tempFailure([3]int{4, 4, 3}, "no address found for the MX hosts of %s", ad)
}

// hostAddrs looks up AAAA and A; IPv6 addresses are tried first (RFC 6724
// prefers them, SPEC M8). notFound reports that neither type exists.
func (e *Engine) hostAddrs(ctx context.Context, host string, rec *recorder) (addrs []netip.Addr, notFound bool, err error) {
	if a, perr := netip.ParseAddr(host); perr == nil {
		return []netip.Addr{a}, false, nil // a smarthost given by address
	}
	empty := 0
	for _, qt := range []uint16{dns.TypeAAAA, dns.TypeA} {
		rrs, lerr := e.res.lookup(ctx, host, qt, rec)
		var de *dnsError
		if errors.As(lerr, &de) && de.NotFound {
			empty++
			continue
		}
		if lerr != nil {
			err = lerr
			continue
		}
		if len(rrs) == 0 {
			empty++
		}
		for _, rr := range rrs {
			var ip []byte
			switch v := rr.(type) {
			case *dns.AAAA:
				ip = v.AAAA
			case *dns.A:
				ip = v.A
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				addrs = append(addrs, a.Unmap())
			}
		}
	}
	return addrs, empty == 2, err
}

package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// SPF results (RFC 7208 §2.6).
const (
	SPFNone      = "none"
	SPFNeutral   = "neutral"
	SPFPass      = "pass"
	SPFFail      = "fail"
	SPFSoftfail  = "softfail"
	SPFTemperror = "temperror"
	SPFPermerror = "permerror"
)

// Limits of RFC 7208 §4.6.4.
const (
	spfMaxLookups = 10 // terms causing DNS queries
	spfMaxVoid    = 2  // lookups answering NXDOMAIN or nothing
	spfMaxMX      = 10 // MX names per "mx" mechanism
)

// SPFOutcome is the result of the SPF check of one message.
type SPFOutcome struct {
	Result   string // one of the SPF* constants
	Identity string // "mailfrom" or "helo": which identity was checked (§2.3, §2.4)
	Sender   string // the checked address, e.g. "bob@example.org" or "postmaster@helo"
	Domain   string // its domain, used for DMARC alignment
	Err      error  // detail for permerror/temperror
}

// CheckSPF runs check_host() (RFC 7208 §4) for the MAIL FROM identity, or
// for postmaster@<helo> when the reverse-path is empty (§2.4).
//
// The "ptr" mechanism (deprecated, §5.5) is counted against the lookup limit
// but never matches.
func CheckSPF(ctx context.Context, res Resolver, ip net.IP, helo, mailFrom string) SPFOutcome {
	out := SPFOutcome{Identity: "mailfrom", Sender: mailFrom}
	local, domain := "", ""
	if i := strings.LastIndexByte(mailFrom, '@'); i >= 0 {
		local, domain = mailFrom[:i], mailFrom[i+1:]
	} else {
		domain = mailFrom
	}
	if mailFrom == "" {
		out.Identity, domain = "helo", helo
	}
	if local == "" {
		local = "postmaster" // §4.3
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	out.Sender, out.Domain = local+"@"+domain, domain
	if ip == nil {
		out.Result, out.Err = SPFPermerror, errors.New("no client ip")
		return out
	}
	c := &spfCheck{ctx: ctx, res: res, ip: ip, local: local, senderDomain: domain, helo: helo}
	out.Result, out.Err = c.checkHost(domain)
	return out
}

type spfCheck struct {
	ctx          context.Context
	res          Resolver
	ip           net.IP
	local        string
	senderDomain string
	helo         string
	lookups      int
	voids        int
}

var errSPFLimit = errors.New("dns lookup limit exceeded")

func (c *spfCheck) countLookup() error {
	c.lookups++
	if c.lookups > spfMaxLookups {
		return fmt.Errorf("%w (%d)", errSPFLimit, spfMaxLookups)
	}
	return nil
}

// void records a lookup that found nothing; past the limit it is a permerror.
func (c *spfCheck) void() error {
	c.voids++
	if c.voids > spfMaxVoid {
		return fmt.Errorf("void lookup limit exceeded (%d)", spfMaxVoid)
	}
	return nil
}

// validDomain applies §4.3: a multi-label name with labels of 1..63 octets.
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

// checkHost implements check_host() (§4); domain is the <domain> argument.
func (c *spfCheck) checkHost(domain string) (string, error) {
	if err := c.ctx.Err(); err != nil {
		return SPFTemperror, err
	}
	if !validDomain(domain) {
		return SPFNone, fmt.Errorf("invalid domain %q", domain)
	}
	txts, err := c.res.LookupTXT(c.ctx, domain)
	if err != nil {
		if isNotFound(err) {
			return SPFNone, nil // §4.3
		}
		return SPFTemperror, err // §4.4
	}
	var recs []string
	for _, t := range txts {
		if isSPFRecord(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return SPFNone, nil // §4.5
	case 1:
	default:
		return SPFPermerror, fmt.Errorf("%s has %d spf records", domain, len(recs))
	}
	rec, err := parseSPF(recs[0])
	if err != nil {
		return SPFPermerror, fmt.Errorf("%s: %w", domain, err)
	}
	for _, d := range rec.directives {
		match, res, err := c.evalMechanism(domain, d)
		if err != nil || res != "" {
			return res, err
		}
		if match {
			return qualifierResult(d.qual), nil // §4.6.2
		}
	}
	// redirect= applies only when no mechanism matched (§6.1); a record with
	// "all" never gets here.
	if rec.redirect != "" {
		if err := c.countLookup(); err != nil {
			return SPFPermerror, err
		}
		target, err := c.expandDomain(rec.redirect, domain)
		if err != nil {
			return SPFPermerror, err
		}
		res, err := c.checkHost(target)
		if res == SPFNone {
			return SPFPermerror, fmt.Errorf("redirect to %s: no spf record", target)
		}
		return res, err
	}
	return SPFNeutral, nil // §4.7
}

func qualifierResult(q byte) string {
	switch q {
	case '-':
		return SPFFail
	case '~':
		return SPFSoftfail
	case '?':
		return SPFNeutral
	}
	return SPFPass
}

// evalMechanism reports whether d matches; a non-empty result ends the
// evaluation with that result (errors and limits).
func (c *spfCheck) evalMechanism(domain string, d spfDirective) (bool, string, error) {
	switch d.mech {
	case "all":
		return true, "", nil
	case "ip4", "ip6":
		return ipInPrefix(c.ip, d.ip, d.cidr4, d.cidr6, d.mech == "ip6"), "", nil
	}
	if err := c.countLookup(); err != nil {
		return false, SPFPermerror, err
	}
	target := domain
	if d.domain != "" {
		var err error
		if target, err = c.expandDomain(d.domain, domain); err != nil {
			return false, SPFPermerror, err
		}
	}
	switch d.mech {
	case "include": // §5.2
		res, err := c.checkHost(target)
		switch res {
		case SPFPass:
			return true, "", nil
		case SPFFail, SPFSoftfail, SPFNeutral:
			return false, "", nil
		case SPFTemperror:
			return false, SPFTemperror, err
		}
		if err == nil {
			err = fmt.Errorf("include %s: %s", target, res)
		}
		return false, SPFPermerror, err
	case "a": // §5.3
		ips, res, err := c.lookupIP(target)
		if res != "" {
			return false, res, err
		}
		for _, a := range ips {
			if ipInPrefix(c.ip, a, d.cidr4, d.cidr6, a.To4() == nil) {
				return true, "", nil
			}
		}
		return false, "", nil
	case "mx": // §5.4
		mxs, err := c.res.LookupMX(c.ctx, target)
		if err != nil {
			if !isNotFound(err) {
				return false, SPFTemperror, err
			}
			if err := c.void(); err != nil {
				return false, SPFPermerror, err
			}
			return false, "", nil
		}
		if len(mxs) > spfMaxMX {
			return false, SPFPermerror, fmt.Errorf("%s has more than %d mx records", target, spfMaxMX)
		}
		for _, mx := range mxs {
			host := strings.TrimSuffix(mx.Host, ".")
			if host == "" {
				continue // null MX (RFC 7505)
			}
			ips, err := c.res.LookupIP(c.ctx, host)
			if err != nil && !isNotFound(err) {
				return false, SPFTemperror, err
			}
			for _, a := range ips {
				if ipInPrefix(c.ip, a, d.cidr4, d.cidr6, a.To4() == nil) {
					return true, "", nil
				}
			}
		}
		return false, "", nil
	case "exists": // §5.7: any A record matches, whatever its address.
		ips, res, err := c.lookupIP(target)
		if res != "" {
			return false, res, err
		}
		for _, a := range ips {
			if a.To4() != nil {
				return true, "", nil
			}
		}
		return false, "", nil
	case "ptr": // §5.5: SHOULD NOT be used; counted, never matches.
		return false, "", nil
	}
	return false, SPFPermerror, fmt.Errorf("unknown mechanism %q", d.mech)
}

func (c *spfCheck) lookupIP(name string) ([]net.IP, string, error) {
	ips, err := c.res.LookupIP(c.ctx, name)
	if err == nil {
		return ips, "", nil
	}
	if !isNotFound(err) {
		return nil, SPFTemperror, err
	}
	if err := c.void(); err != nil {
		return nil, SPFPermerror, err
	}
	return nil, "", nil
}

// ipInPrefix reports whether client lies in network/len; v6 selects which
// family the mechanism is about (§5.6: a family mismatch never matches).
func ipInPrefix(client, network net.IP, len4, len6 int, v6 bool) bool {
	c4 := client.To4()
	if v6 {
		if c4 != nil || network.To4() != nil {
			return false
		}
		return net.IP.Equal(client.Mask(net.CIDRMask(len6, 128)), network.Mask(net.CIDRMask(len6, 128)))
	}
	n4 := network.To4()
	if c4 == nil || n4 == nil {
		return false
	}
	m := net.CIDRMask(len4, 32)
	return c4.Mask(m).Equal(n4.Mask(m))
}

// expandDomain expands macros in a domain-spec (§7) and shortens the result
// to 253 octets by dropping labels from the left (§7.3).
func (c *spfCheck) expandDomain(spec, domain string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		ch := spec[i]
		if ch != '%' {
			b.WriteByte(ch)
			continue
		}
		if i+1 >= len(spec) {
			return "", errors.New("dangling %")
		}
		i++
		switch spec[i] {
		case '%':
			b.WriteByte('%')
			continue
		case '_':
			b.WriteByte(' ')
			continue
		case '-':
			b.WriteString("%20")
			continue
		}
		end := strings.IndexByte(spec[i:], '}')
		if spec[i] != '{' || end < 0 {
			return "", errors.New("bad macro")
		}
		letter, digits, reverse, delims, err := parseMacroBody(spec[i+1 : i+end])
		if err != nil {
			return "", err
		}
		i += end
		var v string
		switch letter {
		case 's':
			v = c.local + "@" + c.senderDomain
		case 'l':
			v = c.local
		case 'o':
			v = c.senderDomain
		case 'd':
			v = domain
		case 'i':
			v = macroIP(c.ip)
		case 'p':
			v = "unknown" // §7.3: validated names are not computed
		case 'v':
			v = "in-addr"
			if c.ip.To4() == nil {
				v = "ip6"
			}
		case 'h':
			v = c.helo
		default: // c, r, t are allowed only in exp= (§7.2)
			return "", fmt.Errorf("macro %%{%c} outside exp", letter)
		}
		b.WriteString(transformMacro(v, digits, reverse, delims))
	}
	out := b.String()
	for len(out) > 253 {
		i := strings.IndexByte(out, '.')
		if i < 0 {
			return "", errors.New("expanded domain too long")
		}
		out = out[i+1:]
	}
	return out, nil
}

// macroIP formats the client address for %{i}: dotted quad, or dotted
// nibbles for IPv6 (§7.3).
func macroIP(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i, x := range ip.To16() {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteByte(hex[x>>4])
		b.WriteByte('.')
		b.WriteByte(hex[x&0xf])
	}
	return b.String()
}

// transformMacro splits v on delims, optionally reverses, keeps the
// rightmost digits parts and joins with "." (§7.3).
func transformMacro(v string, digits int, reverse bool, delims string) string {
	if delims == "" {
		delims = "."
	}
	parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
	if reverse {
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
	}
	if digits > 0 && digits < len(parts) {
		parts = parts[len(parts)-digits:]
	}
	return strings.Join(parts, ".")
}

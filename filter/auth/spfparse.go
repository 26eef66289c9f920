package auth

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// spfDirective is one mechanism with its qualifier (RFC 7208 §4.6.1, §5).
type spfDirective struct {
	qual   byte   // '+', '-', '~', '?'
	mech   string // all, include, a, mx, ptr, ip4, ip6, exists
	domain string // domain-spec (unexpanded macros), may be empty
	ip     net.IP // ip4/ip6
	cidr4  int    // ip4-cidr-length, or for ip6 the prefix
	cidr6  int
}

// spfRecord is a parsed "v=spf1" record.
type spfRecord struct {
	directives []spfDirective
	redirect   string // redirect= domain-spec (§6.1), "" if absent
	exp        string // exp= domain-spec (§6.2), only parsed
}

// isSPFRecord reports whether a TXT string is an SPF record: "v=spf1"
// followed by a space or nothing (RFC 7208 §4.5).
func isSPFRecord(txt string) bool {
	if len(txt) < 6 || !strings.EqualFold(txt[:6], "v=spf1") {
		return false
	}
	return len(txt) == 6 || txt[6] == ' '
}

// parseSPF parses an SPF record (RFC 7208 §4.6.1, §12 ABNF). Any syntax
// error makes the whole record a permerror (§4.6).
func parseSPF(txt string) (*spfRecord, error) {
	if !isSPFRecord(txt) {
		return nil, errors.New("not an spf1 record")
	}
	rec := &spfRecord{}
	seenRedirect, seenExp := false, false
	for _, term := range strings.Split(txt[6:], " ") {
		if term == "" {
			continue
		}
		// A modifier is name "=" macro-string; name = ALPHA *(ALPHA/DIGIT/-/_/.) (§12).
		if i := strings.IndexByte(term, '='); i > 0 && isModifierName(term[:i]) {
			name, val := strings.ToLower(term[:i]), term[i+1:]
			if err := checkMacroString(val); err != nil {
				return nil, fmt.Errorf("modifier %s: %w", name, err)
			}
			switch name {
			case "redirect":
				if seenRedirect || val == "" {
					return nil, errors.New("bad or repeated redirect=") // §6
				}
				seenRedirect, rec.redirect = true, val
			case "exp":
				if seenExp || val == "" {
					return nil, errors.New("bad or repeated exp=")
				}
				seenExp, rec.exp = true, val
			}
			// Unknown modifiers are ignored (§6).
			continue
		}
		d, err := parseDirective(term)
		if err != nil {
			return nil, err
		}
		rec.directives = append(rec.directives, d)
	}
	return rec, nil
}

func isModifierName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

func parseDirective(term string) (spfDirective, error) {
	d := spfDirective{qual: '+', cidr4: 32, cidr6: 128}
	switch term[0] {
	case '+', '-', '~', '?':
		d.qual = term[0]
		term = term[1:]
	}
	name, arg, hasArg := term, "", false
	if i := strings.IndexAny(term, ":/"); i >= 0 {
		name, arg, hasArg = term[:i], term[i:], true
	}
	d.mech = strings.ToLower(name)
	switch d.mech {
	case "all":
		if hasArg {
			return d, errors.New("all takes no argument")
		}
	case "include", "exists":
		if !strings.HasPrefix(arg, ":") || len(arg) < 2 {
			return d, fmt.Errorf("%s needs a domain", d.mech)
		}
		d.domain = arg[1:]
		if err := checkDomainSpec(d.domain); err != nil {
			return d, err
		}
	case "a", "mx", "ptr":
		spec := arg
		if d.mech != "ptr" {
			if i := strings.IndexByte(arg, '/'); i >= 0 {
				spec = arg[:i]
				var err error
				if d.cidr4, d.cidr6, err = parseDualCIDR(arg[i:]); err != nil {
					return d, err
				}
			}
		}
		if spec != "" {
			if spec[0] != ':' || len(spec) < 2 {
				return d, fmt.Errorf("bad %s argument", d.mech)
			}
			d.domain = spec[1:]
			if err := checkDomainSpec(d.domain); err != nil {
				return d, err
			}
		}
	case "ip4", "ip6":
		if !strings.HasPrefix(arg, ":") {
			return d, fmt.Errorf("%s needs an address", d.mech)
		}
		addr, plen, hasLen := strings.Cut(arg[1:], "/")
		ip := net.ParseIP(addr)
		max := 32
		if d.mech == "ip6" {
			max = 128
			if ip == nil || ip.To4() != nil && !strings.Contains(addr, ":") {
				return d, errors.New("bad ip6 address")
			}
		} else if ip == nil || ip.To4() == nil || strings.Contains(addr, ":") {
			return d, errors.New("bad ip4 address")
		}
		n := max
		if hasLen {
			var err error
			if n, err = parseCIDRLen(plen, max); err != nil {
				return d, err
			}
		}
		d.ip = ip
		if d.mech == "ip4" {
			d.ip, d.cidr4 = ip.To4(), n
		} else {
			d.cidr6 = n
		}
	default:
		return d, fmt.Errorf("unknown mechanism %q", name) // §4.6.1: permerror
	}
	return d, nil
}

// parseDualCIDR parses "/n", "//m" or "/n//m" (§5.6).
func parseDualCIDR(s string) (int, int, error) {
	c4, c6 := 32, 128
	v4, v6, has6 := strings.Cut(s, "//")
	var err error
	if v4 != "" {
		if !strings.HasPrefix(v4, "/") {
			return 0, 0, errors.New("bad cidr")
		}
		if c4, err = parseCIDRLen(v4[1:], 32); err != nil {
			return 0, 0, err
		}
	}
	if has6 {
		if c6, err = parseCIDRLen(v6, 128); err != nil {
			return 0, 0, err
		}
	}
	return c4, c6, nil
}

func parseCIDRLen(s string, max int) (int, error) {
	// No leading zeros (§12: ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT)).
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad cidr length %q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > max {
		return 0, fmt.Errorf("bad cidr length %q", s)
	}
	return n, nil
}

// checkDomainSpec validates a domain-spec syntactically (§7.1): a macro
// string; if it does not end in a macro expansion, its last label must be a
// toplabel.
func checkDomainSpec(s string) error {
	if err := checkMacroString(s); err != nil {
		return err
	}
	if strings.HasSuffix(s, "}") {
		return nil
	}
	// domain-end = "." toplabel ["."]; toplabel has a letter (§7.1, §12).
	t := strings.TrimSuffix(s, ".")
	i := strings.LastIndexByte(t, '.')
	if i < 0 || !hasLetter(t[i+1:]) {
		return fmt.Errorf("bad domain-spec %q", s)
	}
	return nil
}

// checkMacroString validates macro syntax (§7.1) without expanding it.
func checkMacroString(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("bad character %q", c)
		}
		if c != '%' {
			continue
		}
		if i+1 >= len(s) {
			return errors.New("dangling %")
		}
		i++
		switch s[i] {
		case '%', '_', '-':
			continue
		case '{':
		default:
			return fmt.Errorf("bad macro escape %%%c", s[i])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return errors.New("unterminated macro")
		}
		if _, _, _, _, err := parseMacroBody(s[i+1 : i+end]); err != nil {
			return err
		}
		i += end
	}
	return nil
}

// parseMacroBody parses "letter [digits] [r] [delimiters]" (§7.1).
func parseMacroBody(b string) (letter byte, digits int, reverse bool, delims string, err error) {
	if b == "" {
		return 0, 0, false, "", errors.New("empty macro")
	}
	letter = b[0] | 0x20
	if !strings.ContainsRune("slodiphcrtv", rune(letter)) {
		return 0, 0, false, "", fmt.Errorf("unknown macro letter %q", b[0])
	}
	b = b[1:]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j > 0 {
		if j > 3 {
			return 0, 0, false, "", errors.New("macro digits too long")
		}
		digits, _ = strconv.Atoi(b[:j])
		if digits == 0 {
			return 0, 0, false, "", errors.New("macro digits zero") // §7.3
		}
	}
	b = b[j:]
	if b != "" && (b[0]|0x20) == 'r' {
		reverse = true
		b = b[1:]
	}
	for k := 0; k < len(b); k++ {
		if !strings.ContainsRune(".-+,/_=", rune(b[k])) {
			return 0, 0, false, "", fmt.Errorf("bad macro delimiter %q", b[k])
		}
	}
	return letter, digits, reverse, b, nil
}

func hasLetter(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c >= 'a' && c <= 'z' {
			return true
		}
	}
	return false
}

package filter

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tandemmail/tandem/storage"
	"golang.org/x/net/idna"
)

// Address errors of ParseAddress.
var (
	ErrAddressSyntax = errors.New("address syntax")
	ErrNonASCII      = errors.New("non-ASCII address without SMTPUTF8")
)

// Address is an envelope mailbox (RFC 5321 §4.1.2 Mailbox) after parsing:
// Domain is lower-case ASCII (IDNs as A-labels, RFC 5890) or an address
// literal in brackets.
type Address struct {
	Local   string
	Domain  string
	Literal bool // Domain is an address literal such as [192.0.2.1]
}

func (a Address) String() string { return a.Local + "@" + a.Domain }

// RelayForm reports whether the local part hides another destination:
// "user%other@ours", "other!user@ours" or the quoted "user@other"@ours
// (the quotes are gone by the time the address gets here). Open relays of
// the 1990s forwarded such addresses; Tandem refuses them outright, as it
// does address literals, which it never hosts.
func (a Address) RelayForm() bool {
	return a.Literal || strings.ContainsAny(a.Local, "@%!")
}

// ParseAddress parses an envelope address as the SMTP layer hands it over
// (source route removed, quoted local part unquoted). utf8OK is the SMTPUTF8
// parameter: without it a non-ASCII address is ErrNonASCII (RFC 6531 §3.5).
func ParseAddress(s string, utf8OK bool) (Address, error) {
	// RFC 5321 §4.5.3.1.1-2: local part ≤ 64 octets, domain ≤ 255.
	if len(s) > 64+1+255 {
		return Address{}, fmt.Errorf("address too long: %w", ErrAddressSyntax)
	}
	if !utf8.ValidString(s) {
		return Address{}, fmt.Errorf("address not UTF-8: %w", ErrAddressSyntax)
	}
	ascii := true
	for _, r := range s {
		if r < 0x21 || r == 0x7f || unicode.IsControl(r) || unicode.IsSpace(r) {
			return Address{}, fmt.Errorf("address contains control or space: %w", ErrAddressSyntax)
		}
		if r >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8OK {
		return Address{}, ErrNonASCII
	}
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return Address{}, fmt.Errorf("want local@domain: %w", ErrAddressSyntax)
	}
	local, domain := s[:i], s[i+1:]
	if len(local) > 64 {
		return Address{}, fmt.Errorf("local part longer than 64 octets: %w", ErrAddressSyntax)
	}
	if strings.ContainsAny(local, "\"(),:;<>[\\]") {
		return Address{}, fmt.Errorf("special character in local part: %w", ErrAddressSyntax)
	}
	if strings.HasPrefix(domain, "[") {
		lit, err := parseLiteral(domain)
		if err != nil {
			return Address{}, err
		}
		return Address{Local: local, Domain: lit, Literal: true}, nil
	}
	d, err := normalizeDomain(domain)
	if err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: d}, nil
}

// normalizeDomain lower-cases a domain, turns U-labels into A-labels and
// checks the LDH rule (RFC 1035 §2.3.1, RFC 5890).
func normalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".") // a fully qualified "example.com." is the same domain
	if d == "" || len(d) > 255 {
		return "", fmt.Errorf("domain length: %w", ErrAddressSyntax)
	}
	d = strings.ToLower(d)
	for i := 0; i < len(d); i++ {
		if d[i] >= utf8.RuneSelf {
			a, err := idna.Lookup.ToASCII(d)
			if err != nil {
				return "", fmt.Errorf("domain %q: %v: %w", d, err, ErrAddressSyntax)
			}
			d = a
			break
		}
	}
	if err := storage.CheckDomain(d); err != nil {
		return "", fmt.Errorf("%v: %w", err, ErrAddressSyntax)
	}
	return d, nil
}

// parseLiteral checks an address literal (RFC 5321 §4.1.3): [IPv4] or
// [IPv6:addr].
func parseLiteral(d string) (string, error) {
	if len(d) < 3 || d[len(d)-1] != ']' {
		return "", fmt.Errorf("address literal: %w", ErrAddressSyntax)
	}
	in := d[1 : len(d)-1]
	if v6, ok := strings.CutPrefix(strings.ToLower(in), "ipv6:"); ok {
		ip := net.ParseIP(v6)
		if ip == nil || ip.To4() != nil && !strings.Contains(v6, ":") {
			return "", fmt.Errorf("IPv6 literal: %w", ErrAddressSyntax)
		}
		return "[IPv6:" + ip.String() + "]", nil
	}
	ip := net.ParseIP(in)
	if ip == nil || ip.To4() == nil || strings.Contains(in, ":") {
		return "", fmt.Errorf("IPv4 literal: %w", ErrAddressSyntax)
	}
	return "[" + ip.String() + "]", nil
}

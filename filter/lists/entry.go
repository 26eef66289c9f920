// Package lists holds the allow and block lists, the personal rules and the
// automatic whitelist, each a pipeline stage.
//
// KV namespaces it owns:
//   - "filter.lists": one Lists document (JSON) per scope key: "global",
//     "domain/<domain>" (mail to that domain), "user/<account address>"
//     (mail to that account, also through its aliases). Entries are addresses, domains (".example.com" also
//     matches every subdomain), IP addresses and CIDR networks.
//   - "filter.rules": "user/<account address>" → the account's []Rule.
//   - "filter.awl": "<account address>/<address>" → when that account last
//     sent to that address (automatic whitelist), written in batches.
//
// Precedence: the most specific scope that matches decides (user, then
// domain, then global); inside one scope an allow entry beats a block
// entry, so an admin can block a domain and allow one of its addresses.
// Authenticated clients are never judged by these lists.
//
// What it must not do: reject a message for all recipients because of one
// user's personal rule (see Rules), or write on every message.
package lists

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"
)

// KV names.
const (
	Namespace      = "filter.lists"
	RulesNamespace = "filter.rules"
	AWLNamespace   = "filter.awl"
	GlobalScope    = "global"
)

// Lists is the stored document of one scope.
type Lists struct {
	Block []string `json:"block,omitempty"`
	Allow []string `json:"allow,omitempty"`
}

// Entry kinds.
const (
	KindAddress = "address"
	KindDomain  = "domain" // exact domain
	KindSuffix  = "suffix" // ".example.com": the domain and its subdomains
	KindIP      = "ip"     // address or CIDR network
)

// Entry is one parsed list entry.
type Entry struct {
	Kind   string
	Value  string // normalized text, as stored
	Prefix netip.Prefix
}

// ParseEntry checks and normalizes one entry.
func ParseEntry(s string) (Entry, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Entry{}, fmt.Errorf("empty list entry")
	}
	if len(s) > 320 {
		return Entry{}, fmt.Errorf("list entry %.40q…: longer than 320 characters", s)
	}
	if !utf8.ValidString(s) {
		return Entry{}, fmt.Errorf("list entry %.40q…: not valid UTF-8 text", s)
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		return Entry{Kind: KindIP, Value: p.String(), Prefix: p}, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		a = a.Unmap()
		p := netip.PrefixFrom(a, a.BitLen())
		return Entry{Kind: KindIP, Value: a.String(), Prefix: p}, nil
	}
	s = strings.ToLower(s)
	if local, dom, ok := strings.Cut(s, "@"); ok {
		if local == "" {
			// "@example.com" means the domain.
			if err := checkDomain(dom); err != nil {
				return Entry{}, fmt.Errorf("list entry %q: %w", s, err)
			}
			return Entry{Kind: KindDomain, Value: dom}, nil
		}
		if strings.ContainsAny(local, " \t<>\"") || strings.Contains(dom, "@") {
			return Entry{}, fmt.Errorf("list entry %q: not an email address", s)
		}
		if err := checkDomain(dom); err != nil {
			return Entry{}, fmt.Errorf("list entry %q: %w", s, err)
		}
		return Entry{Kind: KindAddress, Value: s}, nil
	}
	if d, ok := strings.CutPrefix(s, "."); ok {
		if err := checkDomain(d); err != nil {
			return Entry{}, fmt.Errorf("list entry %q: %w", s, err)
		}
		return Entry{Kind: KindSuffix, Value: "." + d}, nil
	}
	if err := checkDomain(s); err != nil {
		return Entry{}, fmt.Errorf("list entry %q: not an address, domain, IP or CIDR: %w", s, err)
	}
	return Entry{Kind: KindDomain, Value: s}, nil
}

func checkDomain(d string) error {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return fmt.Errorf("domain must be 1-253 characters")
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("domain %q has an empty or over-long label", d)
		}
		for _, r := range l {
			if r < 0x80 && !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("domain %q: character %q not allowed", d, r)
			}
		}
	}
	return nil
}

// Scope names a list document: "global", "domain/<domain>", "user/<id>".
func DomainScope(domain string) string { return "domain/" + strings.ToLower(domain) }

// UserScope is the scope of one account's lists and rules, named by the
// account's address (not its ID, so an exported configuration still
// applies after an import into a new cluster).
func UserScope(account string) string { return "user/" + strings.ToLower(account) }

// ParseLists decodes and checks a stored document.
func ParseLists(raw []byte) (Lists, error) {
	var l Lists
	if len(raw) == 0 {
		return l, nil
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return Lists{}, fmt.Errorf("lists: %w", err)
	}
	for _, es := range []*[]string{&l.Block, &l.Allow} {
		for i, e := range *es {
			p, err := ParseEntry(e)
			if err != nil {
				return Lists{}, err
			}
			(*es)[i] = p.Value
		}
	}
	return l, nil
}

// Add puts entry on the named list ("block" or "allow"); it reports
// whether the document changed.
func (l *Lists) Add(list, entry string) (bool, error) {
	p, err := ParseEntry(entry)
	if err != nil {
		return false, err
	}
	es, err := l.list(list)
	if err != nil {
		return false, err
	}
	if slices.Contains(*es, p.Value) {
		return false, nil
	}
	*es = append(*es, p.Value)
	return true, nil
}

// Remove takes entry off the named list; it reports whether it was there.
func (l *Lists) Remove(list, entry string) (bool, error) {
	p, err := ParseEntry(entry)
	if err != nil {
		return false, err
	}
	es, err := l.list(list)
	if err != nil {
		return false, err
	}
	i := slices.Index(*es, p.Value)
	if i < 0 {
		return false, nil
	}
	*es = slices.Delete(*es, i, i+1)
	return true, nil
}

func (l *Lists) list(name string) (*[]string, error) {
	switch name {
	case "block":
		return &l.Block, nil
	case "allow":
		return &l.Allow, nil
	}
	return nil, fmt.Errorf("list %q: must be block or allow", name)
}

// matcher is a compiled list.
type matcher struct {
	addrs    map[string]bool
	domains  map[string]bool
	suffixes []string // ".example.com"
	nets     []netip.Prefix
}

func compile(entries []string) matcher {
	m := matcher{addrs: map[string]bool{}, domains: map[string]bool{}}
	for _, s := range entries {
		e, err := ParseEntry(s)
		if err != nil {
			continue
		}
		switch e.Kind {
		case KindAddress:
			m.addrs[e.Value] = true
		case KindDomain:
			m.domains[e.Value] = true
		case KindSuffix:
			m.suffixes = append(m.suffixes, e.Value)
		case KindIP:
			m.nets = append(m.nets, e.Prefix)
		}
	}
	return m
}

// sender reports the entry matching the address (lower-cased), if any.
func (m *matcher) sender(addr string) (string, bool) {
	if addr == "" {
		return "", false
	}
	if m.addrs[addr] {
		return addr, true
	}
	_, dom, ok := strings.Cut(addr, "@")
	if !ok {
		return "", false
	}
	if m.domains[dom] {
		return dom, true
	}
	for _, s := range m.suffixes {
		if dom == s[1:] || strings.HasSuffix(dom, s) {
			return s, true
		}
	}
	return "", false
}

func (m *matcher) ip(ip net.IP) (string, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return "", false
	}
	a = a.Unmap()
	for _, n := range m.nets {
		if n.Contains(a) {
			return n.String(), true
		}
	}
	return "", false
}

func (m *matcher) empty() bool {
	return len(m.addrs) == 0 && len(m.domains) == 0 && len(m.suffixes) == 0 && len(m.nets) == 0
}

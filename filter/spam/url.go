package spam

import (
	"net/url"
	"strings"
)

// urlLen returns the length of the URL starting at s[0] ("http://",
// "https://" or "www."), or 0. A URL ends at whitespace, a quote or an angle
// bracket (RFC 3986 Appendix C: the usual delimiters of URLs in text).
func urlLen(s string) int {
	var n int
	switch {
	case hasPrefixFold(s, "http://"):
		n = 7
	case hasPrefixFold(s, "https://"):
		n = 8
	case hasPrefixFold(s, "www."):
		n = 4
	default:
		return 0
	}
	for n < len(s) {
		switch s[n] {
		case ' ', '\t', '\r', '\n', '"', '\'', '<', '>', '`', '{', '}', '|', '\\', '^':
			return n
		}
		n++
	}
	return n
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// url adds a link's hints: its host and parent domains, IP-literal and
// obfuscation markers, port, and words of its path.
func (t *tokenizer) url(u string) {
	t.urls++
	u = u[:min(len(u), 512)]
	if strings.ContainsAny(u, "\t\r\n") {
		// Browsers drop tabs and newlines inside URLs (WHATWG URL
		// standard, basic URL parser), so attribute values split
		// across lines still lead to the same place.
		u = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, u)
	}
	u = strings.ToLower(u)
	rest := u
	if i := strings.Index(rest, "://"); i >= 0 {
		if rest[:i] == "https" {
			t.add("url:https")
		}
		rest = rest[i+3:]
	}
	host := rest
	path := ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		// http://www.bank.com@evil.example/ hides the real host.
		t.add("url:userinfo")
		host = host[i+1:]
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		t.add("url:port")
		host = host[:i]
	}
	host = strings.Trim(host, ".")
	switch {
	case host == "":
		t.add("url:nohost")
	case isIPv4ish(host):
		t.add("url:ip")
	default:
		if strings.Contains(host, "%") {
			// Percent-encoded host names hide the domain from filters;
			// browsers decode them.
			t.add("url:escaped-host")
			if h, err := url.PathUnescape(host); err == nil {
				host = strings.ToLower(h)
			}
		}
		if isIPv4ish(host) {
			t.add("url:ip")
			break
		}
		t.domain("url:", host)
	}
	if strings.Contains(path, "%") {
		t.add("url:escaped")
	}
	words := 0
	for _, w := range strings.FieldsFunc(path, func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9')
	}) {
		if len(w) >= minWord && len(w) <= maxWord {
			t.addPrefixedString("url:p:", w)
			if words++; words >= 12 {
				break
			}
		}
	}
}

// isIPv4ish reports a host made of digits and dots (or a decimal or hex
// number: browsers accept http://3232235777/).
func isIPv4ish(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || c == '.' || c == 'x') {
			return false
		}
	}
	return true
}

package storage

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxMailboxName bounds a mailbox name in bytes.
const MaxMailboxName = 255

// CanonicalMailboxName normalises a client-supplied name: NFC (so "Café"
// typed two ways is one mailbox, RELIABILITY #27) and "INBOX" in any case
// as the first level becomes "INBOX" (RFC 9051 §5.1).
func CanonicalMailboxName(name string) string {
	name = norm.NFC.String(name)
	first, rest, hasRest := strings.Cut(name, "/")
	if strings.EqualFold(first, "INBOX") {
		if hasRest {
			return "INBOX/" + rest
		}
		return "INBOX"
	}
	return name
}

// CheckMailboxName rejects names that are not valid mailbox names here.
// Names never become file paths (storage keys by ID), but a name such as
// "../x" is refused anyway so no layer can be tricked later.
func CheckMailboxName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("mailbox name %q: %s: %w", truncate(name, 64), why, ErrBadMailboxName)
	}
	switch {
	case name == "":
		return bad("empty")
	case len(name) > MaxMailboxName:
		return bad("too long")
	case !utf8.ValidString(name):
		return bad("not UTF-8")
	case strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/"):
		return bad("leading or trailing /")
	}
	for _, seg := range strings.Split(name, "/") {
		switch {
		case seg == "":
			return bad("empty level")
		case seg == "." || seg == "..":
			return bad("relative level")
		case strings.TrimSpace(seg) != seg:
			return bad("level starts or ends with a space")
		}
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '*' || r == '%' || r == '\\' || r == 0xFFFD {
			return bad("forbidden character")
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

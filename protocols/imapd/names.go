package imapd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/tandemmail/tandem/storage"
)

// delim is the hierarchy separator (RFC 9051 §5.1). Storage uses the same.
const delim = '/'

// maxPatternLen bounds a LIST reference+pattern. Longer patterns cannot
// match a name of storage.MaxMailboxName bytes anyway beyond their
// wildcards, and the bound keeps matching cheap (RELIABILITY #26).
const maxPatternLen = 1024

// mailboxName turns a client-supplied name (already decoded from modified
// UTF-7 by go-imap) into the canonical stored form and checks it: NFC,
// "INBOX" in any case, no empty, "." or ".." levels, no control
// characters, no leading or trailing "/", at most 255 bytes, valid UTF-8
// (RELIABILITY #27). Names never become file paths (storage keys
// mailboxes by ID), but a bad name is refused clearly so no layer can be
// tricked later.
func mailboxName(raw string) (string, error) {
	name := storage.CanonicalMailboxName(raw)
	if err := storage.CheckMailboxName(name); err != nil {
		return "", err
	}
	if storage.ReservedMailbox(name) {
		// Server-held mail (quarantine) is not the client's to open.
		return "", fmt.Errorf("mailbox name %q: reserved for the server: %w", name, storage.ErrBadMailboxName)
	}
	return name, nil
}

// badNameError is the reply for a name refused by mailboxName. RFC 5530
// §3: CANNOT for a create or rename that can never succeed; a lookup of
// such a name simply finds nothing (NONEXISTENT).
func badNameError(raw string, err error, creating bool) error {
	code := imap.ResponseCodeNonExistent
	if creating {
		code = imap.ResponseCodeCannot
	}
	why := "invalid mailbox name"
	if errors.Is(err, storage.ErrBadMailboxName) {
		// storage's text says which rule was broken, without the name.
		if _, rest, ok := strings.Cut(err.Error(), ": "); ok {
			why = "invalid mailbox name: " + strings.TrimSuffix(rest, ": "+storage.ErrBadMailboxName.Error())
		}
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: why}
}

// isInbox reports whether a canonical name is INBOX.
func isInbox(name string) bool { return name == "INBOX" }

// parentNames lists the ancestors of a name, nearest last:
// "a/b/c" → ["a", "a/b"].
func parentNames(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == delim {
			out = append(out, name[:i])
		}
	}
	return out
}

// listMatcher matches mailbox names against a LIST reference and pattern
// (RFC 9051 §6.3.9): "*" matches anything, "%" anything but the
// hierarchy delimiter. go-imap's MatchList backtracks exponentially on
// patterns such as "*%*%*%*%" (RELIABILITY #26); this matcher runs a
// state-set simulation in O(len(name) × len(pattern)).
type listMatcher struct {
	pattern []byte
}

// newListMatcher joins reference and pattern the way RFC 3501 §6.3.8
// describes (a pattern starting with the delimiter ignores the reference)
// and collapses runs of wildcards: "*%" and "%*" are "*", "%%" is "%".
func newListMatcher(reference, pattern string) (*listMatcher, error) {
	full := pattern
	if !strings.HasPrefix(pattern, string(delim)) && reference != "" {
		if !strings.HasSuffix(reference, string(delim)) {
			reference += string(delim)
		}
		full = reference + pattern
	} else {
		full = strings.TrimPrefix(pattern, string(delim))
	}
	if len(full) > maxPatternLen {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("LIST pattern longer than %d bytes", maxPatternLen)}
	}
	// "INBOX" is case-insensitive also in patterns (RFC 9051 §5.1).
	if len(full) >= 5 && strings.EqualFold(full[:5], "INBOX") && (len(full) == 5 || full[5] == delim) {
		full = "INBOX" + full[5:]
	}
	out := make([]byte, 0, len(full))
	for i := 0; i < len(full); i++ {
		c := full[i]
		if (c == '*' || c == '%') && len(out) > 0 {
			last := out[len(out)-1]
			if last == '*' || last == '%' {
				if c == '*' || last == '*' {
					out[len(out)-1] = '*'
				}
				continue
			}
		}
		out = append(out, c)
	}
	return &listMatcher{pattern: out}, nil
}

// match reports whether name matches. The state set holds the pattern
// positions reachable after the bytes read so far.
func (m *listMatcher) match(name string) bool {
	p := m.pattern
	// Fast reject: every literal byte of the pattern needs a byte of name.
	literals := 0
	for _, c := range p {
		if c != '*' && c != '%' {
			literals++
		}
	}
	if literals > len(name) {
		return false
	}
	cur := make([]bool, len(p)+1)
	next := make([]bool, len(p)+1)
	cur[0] = true
	closeOver(p, cur)
	for i := 0; i < len(name); i++ {
		c := name[i]
		clear(next)
		any := false
		for j, on := range cur {
			if !on || j == len(p) {
				continue
			}
			switch p[j] {
			case '*':
				next[j] = true
			case '%':
				if c != delim {
					next[j] = true
				}
			default:
				if p[j] == c {
					next[j+1] = true
				}
			}
		}
		closeOver(p, next)
		for _, on := range next {
			any = any || on
		}
		if !any {
			return false
		}
		cur, next = next, cur
	}
	return cur[len(p)]
}

// closeOver adds the positions reachable by letting wildcards match
// nothing.
func closeOver(p []byte, set []bool) {
	for j := 0; j < len(p); j++ {
		if set[j] && (p[j] == '*' || p[j] == '%') {
			set[j+1] = true
		}
	}
}

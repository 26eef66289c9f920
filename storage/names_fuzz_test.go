package storage

import (
	"strings"
	"testing"
	"unicode"
)

// FuzzMailboxName: a name that passes the check never has a relative or
// empty level or a control character, and canonicalisation is idempotent
// (RELIABILITY #27, #41: the name codec always stays inside the account).
func FuzzMailboxName(f *testing.F) {
	for _, s := range []string{"INBOX", "inbox/Sub", "Work/2024", "../etc", "a//b", "Caf\u00e9", "Cafe\u0301",
		"a/./b", " a", "\x00", "%", "*", "x/", strings.Repeat("a/", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c := CanonicalMailboxName(name)
		if CanonicalMailboxName(c) != c {
			t.Fatalf("canonical form not idempotent: %q → %q → %q", name, c, CanonicalMailboxName(c))
		}
		if CheckMailboxName(c) != nil {
			return
		}
		if len(c) > MaxMailboxName {
			t.Fatalf("accepted %d-byte name", len(c))
		}
		for _, seg := range strings.Split(c, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted level %q in %q", seg, c)
			}
		}
		for _, r := range c {
			if unicode.IsControl(r) {
				t.Fatalf("accepted control character in %q", c)
			}
		}
	})
}

// FuzzNormalizeAddress: an accepted address has one @, no relay syntax, and
// normalising it again changes nothing.
func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{"a@b.c", "A@B.C", "user%other@ours.test", "@ours:u@other", `"u@other"@ours`,
		"other!u@ours", "a@b@c", "a@-b.c", "a@b..c", " a@b ", "üser@example.com", "a+tag@x.y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeAddress(in)
		if err != nil {
			return
		}
		if strings.Count(out, "@") != 1 || strings.ContainsAny(out, "%!\" \t\r\n:") {
			t.Fatalf("accepted %q as %q", in, out)
		}
		again, err := NormalizeAddress(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q → %q → %q (%v)", in, out, again, err)
		}
	})
}

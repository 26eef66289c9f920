package filter

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in    string
		utf8  bool
		want  string
		relay bool
		errIs error
	}{
		{in: "alice@example.org", want: "alice@example.org"},
		{in: "Alice@EXAMPLE.org", want: "Alice@example.org"},
		{in: "alice@example.org.", want: "alice@example.org"},
		{in: "a+tag@example.org", want: "a+tag@example.org"},
		{in: "user%other@example.org", want: "user%other@example.org", relay: true},
		{in: "other!user@example.org", want: "other!user@example.org", relay: true},
		{in: "user@other@example.org", want: "user@other@example.org", relay: true}, // from "user@other"@example.org
		{in: "user@[192.0.2.1]", want: "user@[192.0.2.1]", relay: true},
		{in: "user@[IPv6:2001:db8::1]", want: "user@[IPv6:2001:db8::1]", relay: true},
		{in: "user@[999.1.1.1]", errIs: ErrAddressSyntax},
		{in: "user@[IPv6:1.2.3.4]", errIs: ErrAddressSyntax},
		{in: "jörg@example.org", errIs: ErrNonASCII},
		{in: "jörg@example.org", utf8: true, want: "jörg@example.org"},
		{in: "a@bücher.example", utf8: true, want: "a@xn--bcher-kva.example"},
		{in: "a@bücher.example", errIs: ErrNonASCII},
		{in: "@example.org", errIs: ErrAddressSyntax},
		{in: "alice@", errIs: ErrAddressSyntax},
		{in: "alice", errIs: ErrAddressSyntax},
		{in: "a b@example.org", errIs: ErrAddressSyntax},
		{in: "a\x00b@example.org", errIs: ErrAddressSyntax},
		{in: "a\r\nRCPT@example.org", errIs: ErrAddressSyntax},
		{in: "a(b@example.org", errIs: ErrAddressSyntax},
		{in: strings.Repeat("a", 65) + "@example.org", errIs: ErrAddressSyntax},
		{in: "a@" + strings.Repeat("b", 64) + ".org", errIs: ErrAddressSyntax},
		{in: "a@exa_mple.org", errIs: ErrAddressSyntax},
		{in: "a@-example.org", errIs: ErrAddressSyntax},
		{in: "a@example..org", errIs: ErrAddressSyntax},
		{in: "a@\xff.org", utf8: true, errIs: ErrAddressSyntax},
	} {
		a, err := ParseAddress(tc.in, tc.utf8)
		if tc.errIs != nil {
			if !errors.Is(err, tc.errIs) {
				t.Errorf("ParseAddress(%q) = %v, %v; want error %v", tc.in, a, err, tc.errIs)
			}
			continue
		}
		if err != nil || a.String() != tc.want || a.RelayForm() != tc.relay {
			t.Errorf("ParseAddress(%q) = %q relay=%v, %v; want %q relay=%v", tc.in, a, a.RelayForm(), err, tc.want, tc.relay)
		}
	}
}

// FuzzParseAddress: no panic; accepted addresses are normalised (parsing
// the output again gives the same address) and carry no control
// characters, spaces or header-breaking bytes.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"alice@example.org", "user%other@ours.example", "\"a@b\"@c", "a@[1.2.3.4]",
		"a@[IPv6:::1]", "jörg@bücher.example", "a@xn--bcher-kva.example", "a@b.", "x@y@z", "a!b@c"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, u bool) {
		a, err := ParseAddress(s, u)
		if err != nil {
			return
		}
		out := a.String()
		if !utf8.ValidString(out) || strings.ContainsAny(out, " \t\r\n\x00<>()\"\\") {
			t.Fatalf("ParseAddress(%q) accepted %q", s, out)
		}
		if !u && !isASCII(out) {
			t.Fatalf("non-ASCII %q without SMTPUTF8", out)
		}
		b, err := ParseAddress(out, true)
		if err != nil || b != a {
			t.Fatalf("not idempotent: %q → %q → %q, %v", s, out, b, err)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

package node

import (
	"strings"
	"testing"
)

func TestHeaderFromDomain(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Received: from x\r\nFrom: Ann <Ann@Example.TEST>\r\n\r\nbody", "example.test"},
		{"From: a@one.test, b@two.test\r\n\r\n", "one.test"},
		{"From: =?UTF-8?B?5L2g?= <x@utf.test>\r\n\r\n", "utf.test"},
		{"From: not an address\r\n\r\n", ""},
		{"Subject: no from\r\n\r\n", ""},
		{"From: a@dot.test.\r\n\r\n", ""}, // not an RFC 5322 addr-spec
		{"", ""},
	}
	for _, c := range cases {
		if got := headerFromDomain(strings.NewReader(c.in)); got != c.want {
			t.Errorf("headerFromDomain(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzHeaderFromDomain(f *testing.F) {
	f.Add("From: a@b.test\r\n\r\n")
	f.Add("From: \"x@evil.test\" <a@b.test>\r\n\r\n")
	f.Add("From:\r\n \r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		d := headerFromDomain(strings.NewReader(in))
		if strings.ContainsAny(d, "@\r\n") || d != strings.ToLower(d) {
			t.Fatalf("domain %q from %q", d, in)
		}
	})
}

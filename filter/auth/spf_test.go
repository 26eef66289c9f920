package auth

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
)

func ips(s ...string) []net.IP {
	out := make([]net.IP, len(s))
	for i, x := range s {
		out[i] = net.ParseIP(x)
	}
	return out
}

func spfResolver() *StaticResolver {
	r := &StaticResolver{
		TXT: map[string][]string{
			"ip4.test":        {"v=spf1 ip4:192.0.2.0/24 -all"},
			"ip6.test":        {"v=spf1 ip6:2001:db8::/32 -all"},
			"a.test":          {"v=spf1 a -all"},
			"acidr.test":      {"v=spf1 a:host.a.test/24 -all"},
			"mx.test":         {"v=spf1 mx ~all"},
			"inc.test":        {"v=spf1 include:ip4.test ?all"},
			"incnone.test":    {"v=spf1 include:nothing.test -all"},
			"incfail.test":    {"v=spf1 include:softall.test -all"},
			"softall.test":    {"v=spf1 ~all"},
			"exists.test":     {"v=spf1 exists:%{i}._spf.exists.test -all"},
			"redir.test":      {"v=spf1 redirect=ip4.test"},
			"redirnone.test":  {"v=spf1 redirect=nothing.test"},
			"redirall.test":   {"v=spf1 ~all redirect=ip4.test"},
			"neutral.test":    {"v=spf1 ip4:198.51.100.1"},
			"two.test":        {"v=spf1 -all", "v=spf1 +all"},
			"other.test":      {"google-site-verification=x", "v=spf10 +all"},
			"syntax.test":     {"v=spf1 ip4:300.1.1.1 -all"},
			"unknown.test":    {"v=spf1 foo:bar -all"},
			"qual.test":       {"v=spf1 ?ip4:192.0.2.1 -all"},
			"case.test":       {"V=SPF1 IP4:192.0.2.1 -ALL"},
			"macro.test":      {"v=spf1 exists:%{l}.%{o}.users.macro.test -all"},
			"ptr.test":        {"v=spf1 ptr -all"},
			"temp.test":       {"v=spf1 a:broken.test -all"},
			"void.test":       {"v=spf1 a:v1.test a:v2.test a:v3.test +all"},
			"void2.test":      {"v=spf1 a:v1.test a:v2.test +all"},
			"loop.test":       {"v=spf1 include:loop.test -all"},
			"manymx.test":     {"v=spf1 mx -all"},
			"tenlookups.test": {"v=spf1 " + strings.Repeat("a:host.a.test ", 10) + "+all"},
			"eleven.test":     {"v=spf1 " + strings.Repeat("a:host.a.test ", 11) + "+all"},
			"modifier.test":   {"v=spf1 foo=bar ip4:192.0.2.1 -all"},
			"dualcidr.test":   {"v=spf1 a:host6.test//64 -all"},
		},
		IP: map[string][]net.IP{
			"a.test":                           ips("192.0.2.10"),
			"host.a.test":                      ips("203.0.113.5"),
			"mx1.mx.test":                      ips("198.51.100.7"),
			"192.0.2.77._spf.exists.test":      ips("127.0.0.2"),
			"bob.example.org.users.macro.test": ips("127.0.0.2"),
			"host6.test":                       ips("2001:db8:1:2::1"),
		},
		MX: map[string][]*net.MX{
			"mx.test": {{Host: "mx1.mx.test.", Pref: 10}},
		},
		Fail: map[string]bool{"broken.test": true},
	}
	var many []*net.MX
	for i := 0; i < 11; i++ {
		many = append(many, &net.MX{Host: fmt.Sprintf("m%d.manymx.test", i)})
	}
	r.MX["manymx.test"] = many
	return r
}

func TestSPF(t *testing.T) {
	res := spfResolver()
	tests := []struct {
		domain, ip, from string
		want             string
	}{
		{"ip4.test", "192.0.2.1", "", SPFPass},
		{"ip4.test", "192.0.3.1", "", SPFFail},
		{"ip4.test", "2001:db8::1", "", SPFFail},
		{"ip6.test", "2001:db8::1", "", SPFPass},
		{"ip6.test", "2001:db9::1", "", SPFFail},
		{"ip6.test", "192.0.2.1", "", SPFFail},
		{"a.test", "192.0.2.10", "", SPFPass},
		{"a.test", "192.0.2.11", "", SPFFail},
		{"acidr.test", "203.0.113.200", "", SPFPass},
		{"acidr.test", "203.0.114.1", "", SPFFail},
		{"dualcidr.test", "2001:db8:1:2:ffff::9", "", SPFPass},
		{"dualcidr.test", "2001:db8:1:3::1", "", SPFFail},
		{"mx.test", "198.51.100.7", "", SPFPass},
		{"mx.test", "198.51.100.8", "", SPFSoftfail},
		{"inc.test", "192.0.2.1", "", SPFPass},
		{"inc.test", "10.0.0.1", "", SPFNeutral},
		{"incnone.test", "10.0.0.1", "", SPFPermerror},
		{"incfail.test", "10.0.0.1", "", SPFFail},
		{"exists.test", "192.0.2.77", "", SPFPass},
		{"exists.test", "192.0.2.78", "", SPFFail},
		{"redir.test", "192.0.2.1", "", SPFPass},
		{"redir.test", "10.0.0.1", "", SPFFail},
		{"redirnone.test", "10.0.0.1", "", SPFPermerror},
		{"redirall.test", "192.0.2.1", "", SPFSoftfail}, // all wins, redirect ignored
		{"neutral.test", "10.0.0.1", "", SPFNeutral},
		{"two.test", "10.0.0.1", "", SPFPermerror},
		{"other.test", "10.0.0.1", "", SPFNone},
		{"nothing.test", "10.0.0.1", "", SPFNone},
		{"syntax.test", "10.0.0.1", "", SPFPermerror},
		{"unknown.test", "10.0.0.1", "", SPFPermerror},
		{"qual.test", "192.0.2.1", "", SPFNeutral},
		{"case.test", "192.0.2.1", "", SPFPass},
		{"macro.test", "10.0.0.1", "bob@macro.test", SPFFail},
		{"macro.test", "10.0.0.1", "bob@example.org", SPFNone}, // checks example.org: no record
		{"ptr.test", "10.0.0.1", "", SPFFail},
		{"temp.test", "10.0.0.1", "", SPFTemperror},
		{"void.test", "10.0.0.1", "", SPFPermerror},
		{"void2.test", "10.0.0.1", "", SPFPass},
		{"loop.test", "10.0.0.1", "", SPFPermerror},
		{"manymx.test", "10.0.0.1", "", SPFPermerror},
		{"tenlookups.test", "10.0.0.1", "", SPFPass},
		{"eleven.test", "10.0.0.1", "", SPFPermerror},
		{"modifier.test", "192.0.2.1", "", SPFPass},
		{"nodot", "10.0.0.1", "", SPFNone},
	}
	for _, tt := range tests {
		from := tt.from
		if from == "" {
			from = "user@" + tt.domain
		}
		got := CheckSPF(context.Background(), res, net.ParseIP(tt.ip), "helo.test", from)
		if got.Result != tt.want {
			t.Errorf("%s from %s (%s): got %s (%v), want %s", tt.domain, tt.ip, from, got.Result, got.Err, tt.want)
		}
	}
}

func TestSPFMacroUsesSender(t *testing.T) {
	res := spfResolver()
	res.TXT["example.org"] = []string{"v=spf1 exists:%{l}.%{o}.users.macro.test -all"}
	got := CheckSPF(context.Background(), res, net.ParseIP("10.0.0.1"), "h.test", "bob@example.org")
	if got.Result != SPFPass {
		t.Fatalf("got %s (%v)", got.Result, got.Err)
	}
}

func TestSPFNullSenderUsesHelo(t *testing.T) {
	res := spfResolver()
	got := CheckSPF(context.Background(), res, net.ParseIP("192.0.2.1"), "ip4.test", "")
	if got.Result != SPFPass || got.Identity != "helo" || got.Sender != "postmaster@ip4.test" {
		t.Fatalf("got %+v", got)
	}
}

func TestMacroExpand(t *testing.T) {
	c := &spfCheck{ip: net.ParseIP("192.0.2.3"), local: "strong-bad", senderDomain: "email.example.com", helo: "mx.example.org"}
	tests := []struct{ in, want string }{
		{"%{s}", "strong-bad@email.example.com"},
		{"%{o}", "email.example.com"},
		{"%{d}", "email.example.com"},
		{"%{d4}", "email.example.com"},
		{"%{d3}", "email.example.com"},
		{"%{d2}", "example.com"},
		{"%{d1}", "com"},
		{"%{dr}", "com.example.email"},
		{"%{d2r}", "example.email"},
		{"%{l}", "strong-bad"},
		{"%{l-}", "strong.bad"},
		{"%{lr}", "strong-bad"},
		{"%{lr-}", "bad.strong"},
		{"%{l1r-}", "strong"},
		{"%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
		{"%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
		{"%{h}", "mx.example.org"},
		{"a%%b%_c%-d", "a%b c%20d"},
	}
	for _, tt := range tests {
		got, err := c.expandDomain(tt.in, "email.example.com")
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q %v, want %q", tt.in, got, err, tt.want)
		}
	}
	c.ip = net.ParseIP("2001:db8::cb01")
	got, _ := c.expandDomain("%{ir}.%{v}._spf.%{d2}", "email.example.com")
	if want := "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"; got != want {
		t.Errorf("ipv6: got %q", got)
	}
	if _, err := c.expandDomain("%{c}", "x.test"); err == nil {
		t.Error("%{c} outside exp accepted")
	}
}

func TestParseSPF(t *testing.T) {
	good := []string{
		"v=spf1",
		"v=spf1 -all",
		"v=spf1 ip4:1.2.3.4/32 ip6:::1/128 a mx/24//64 a:x.test/0 include:_spf.x.test exists:%{i}.x.test ~all",
		"v=spf1 redirect=_spf.x.test",
		"v=spf1 unknown-mod=whatever -all",
		"v=spf1  ip4:1.2.3.4   -all",
	}
	bad := []string{
		"v=spf1 -all/8",
		"v=spf1 ip4:1.2.3.4/33",
		"v=spf1 ip4:1.2.3.4/08",
		"v=spf1 ip6:1.2.3.4",
		"v=spf1 ip4:::1",
		"v=spf1 include",
		"v=spf1 include:",
		"v=spf1 redirect=a.test redirect=b.test",
		"v=spf1 exists:%{z}.x.test",
		"v=spf1 exists:%{d0}.x.test",
		"v=spf1 exists:%",
		"v=spf1 a:x.test/",
		"v=spf1 bogus",
		"v=spf1 a:x.",
		"v=spf2",
		"v=spf1x",
	}
	for _, s := range good {
		if _, err := parseSPF(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range bad {
		if _, err := parseSPF(s); err == nil {
			t.Errorf("%q: accepted", s)
		}
	}
}

func FuzzParseSPF(f *testing.F) {
	for _, s := range []string{"v=spf1 -all", "v=spf1 ip4:1.2.3.4/24 a:%{d2r}.x//64 redirect=y", "v=spf1 exists:%{ir}.%{l1r-}.x ~all"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := parseSPF(s)
		if err != nil {
			return
		}
		// Every parsed record must evaluate without panicking and with a
		// valid result, against an empty DNS.
		c := &spfCheck{ctx: context.Background(), res: &StaticResolver{TXT: map[string][]string{"x.test": {s}}},
			ip: net.ParseIP("192.0.2.1"), local: "a", senderDomain: "x.test", helo: "h"}
		_ = rec
		got, _ := c.checkHost("x.test")
		switch got {
		case SPFNone, SPFNeutral, SPFPass, SPFFail, SPFSoftfail, SPFTemperror, SPFPermerror:
		default:
			t.Fatalf("bad result %q", got)
		}
		if c.lookups > spfMaxLookups+1 {
			t.Fatalf("%d lookups", c.lookups)
		}
	})
}

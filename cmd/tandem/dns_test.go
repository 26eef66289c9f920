package main

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestListFlag(t *testing.T) {
	var got []string
	f := listFlag(&got)
	for _, v := range []string{"0.0.0.0:53,[::]:53", " 10.0.0.0/8 ", ",,"} {
		if err := f(v); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"0.0.0.0:53", "[::]:53", "10.0.0.0/8"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseInterleaved(t *testing.T) {
	for _, c := range []struct {
		args    []string
		pos     []string
		ttl     uint
		wantErr bool
	}{
		{[]string{"example.com", "www", "A", "192.0.2.1", "--ttl", "60"}, []string{"example.com", "www", "A", "192.0.2.1"}, 60, false},
		{[]string{"--ttl=5", "example.com", "@", "MX", "10", "mail"}, []string{"example.com", "@", "MX", "10", "mail"}, 5, false},
		{[]string{"example.com", "t", "TXT", "--", "-all"}, []string{"example.com", "t", "TXT", "-all"}, 0, false},
		{[]string{"example.com", "--ttl", "x"}, nil, 0, true},
		{[]string{"example.com", "--bogus"}, nil, 0, true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		ttl := fs.Uint("ttl", 0, "")
		pos, err := parseInterleaved(fs, c.args)
		if c.wantErr {
			if err == nil {
				t.Errorf("%q: no error", c.args)
			}
			continue
		}
		if err != nil || !slices.Equal(pos, c.pos) || *ttl != c.ttl {
			t.Errorf("%q: %q ttl %d err %v; want %q ttl %d", c.args, pos, *ttl, err, c.pos, c.ttl)
		}
	}
}

func TestShorten(t *testing.T) {
	if s := shorten("short"); s != "short" {
		t.Errorf("short value changed: %q", s)
	}
	long := strings.Repeat("a", 100) + "END"
	s := shorten(long)
	if len(s) > 72 || !strings.HasSuffix(s, "END") || !strings.Contains(s, " .. ") {
		t.Errorf("shorten = %q (%d bytes)", s, len(s))
	}
}

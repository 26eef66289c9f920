package outbound

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in    string
		code  int
		enh   [3]int
		lines []string
		err   bool
	}{
		{"220 mx.test ESMTP\r\n", 220, [3]int{}, []string{"mx.test ESMTP"}, false},
		{"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 250, [3]int{}, []string{"mx.test", "PIPELINING", "SIZE 1000"}, false},
		{"550 5.1.1 no such user\r\n", 550, [3]int{5, 1, 1}, []string{"no such user"}, false},
		{"451-4.7.1 greylisted\r\n451 4.7.1 see you\r\n", 451, [3]int{4, 7, 1}, []string{"greylisted", "see you"}, false},
		{"250\r\n", 250, [3]int{}, []string{""}, false},
		{"250 ok\n", 250, [3]int{}, []string{"ok"}, false},                           // bare LF tolerated on input
		{"550 4.1.1 mismatch\r\n", 550, [3]int{}, []string{"4.1.1 mismatch"}, false}, // class differs: not an enhanced code
		{"250 2.0.0\r\n", 250, [3]int{2, 0, 0}, []string{""}, false},
		{"250 2.0.1000 x\r\n", 250, [3]int{}, []string{"2.0.1000 x"}, false},
		{"25\r\n", 0, [3]int{}, nil, true},
		{"abc ok\r\n", 0, [3]int{}, nil, true},
		{"650 ok\r\n", 0, [3]int{}, nil, true},
		{"260 ok\r\n", 0, [3]int{}, nil, true},
		{"250xok\r\n", 0, [3]int{}, nil, true},
		{"250-a\r\n251 b\r\n", 0, [3]int{}, nil, true},
		{"250-a\r\n", 0, [3]int{}, nil, true}, // EOF inside a reply
		{"250 " + strings.Repeat("x", 2000) + "\r\n", 0, [3]int{}, nil, true},
		{strings.Repeat("250-x\r\n", 200) + "250 x\r\n", 0, [3]int{}, nil, true},
	} {
		var seen []string
		r, err := readReplyFrom(bufio.NewReader(strings.NewReader(tc.in)), func(s string) { seen = append(seen, s) })
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if err != nil {
			continue
		}
		if r.Code != tc.code || r.Enh != tc.enh || strings.Join(r.Lines, "|") != strings.Join(tc.lines, "|") {
			t.Errorf("%q: got %d %v %q", tc.in, r.Code, r.Enh, r.Lines)
		}
		if len(seen) != len(tc.lines) {
			t.Errorf("%q: %d lines recorded", tc.in, len(seen))
		}
	}
}

func TestDataWriter(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"", ".\r\n"},
		{"a", "a\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a\nb\n", "a\r\nb\r\n.\r\n"},
		{"a\rb\r", "a\r\nb\r\n.\r\n"},
		{"a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"},
		{".", "..\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{"a\r\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\n.\nMAIL FROM:<x>\n", "a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"},
		{"x\r\n..y\r\n", "x\r\n...y\r\n.\r\n"},
		{"a.b\r\n", "a.b\r\n.\r\n"},
	} {
		// Byte by byte too: a CR at the end of one write and its LF in
		// the next make one line ending.
		for _, chunk := range []int{len(tc.in) + 1, 1} {
			var buf bytes.Buffer
			bw := bufio.NewWriter(&buf)
			dw := newDataWriter(bw)
			for i := 0; i < len(tc.in); i += chunk {
				dw.Write([]byte(tc.in[i:min(i+chunk, len(tc.in))]))
			}
			dw.Close()
			if buf.String() != tc.out {
				t.Errorf("%q (chunks of %d): %q, want %q", tc.in, chunk, buf.String(), tc.out)
			}
		}
	}
}

func TestBackoff(t *testing.T) {
	e := New(Config{})
	want := []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 4 * time.Hour}
	for i, w := range want {
		if got := e.backoff(i + 1); got != w {
			t.Errorf("attempt %d: %v, want %v", i+1, got, w)
		}
	}
	if e.cfg.Expiry != 5*24*time.Hour || e.cfg.DelayWarning != 4*time.Hour || e.cfg.Timeouts.DataEnd != 10*time.Minute {
		t.Fatalf("defaults %+v", e.cfg)
	}
}

func TestHostnameValidation(t *testing.T) {
	for _, tc := range []struct {
		in, out string
	}{
		{"mail.example.com", "mail.example.com"},
		{"bad\r\nMAIL FROM:<x>", "localhost"}, // RELIABILITY #20
		{"with space", "localhost"},
		{"", "localhost"},
	} {
		if got := New(Config{Hostname: tc.in}).cfg.Hostname; got != tc.out {
			t.Errorf("%q: %q", tc.in, got)
		}
	}
}

func TestRoute(t *testing.T) {
	e := New(Config{Smarthosts: map[string]Smarthost{
		"corp.test": {Host: "relay.corp.test"},
		"":          {Host: "10.0.0.1", TLS: TLSImplicit},
	}})
	if d := e.route("corp.test"); d.Smart == nil || d.Name != "smarthost relay.corp.test:587" || d.Smart.TLS != TLSStartTLS {
		t.Fatalf("corp %+v", d)
	}
	if d := e.route("far.test"); d.Smart == nil || d.Name != "smarthost 10.0.0.1:465" {
		t.Fatalf("far %+v", d)
	}
	if d := New(Config{}).route("far.test"); d.Smart != nil || d.Name != "far.test" {
		t.Fatalf("mx %+v", d)
	}
}

func TestPrintableAndRedact(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		"a\r\nS 250 fake": `a\u000d\u000aS 250 fake`,
		"\x1b[31mred":     `\u001b[31mred`,
		"bad\xffutf8":     `bad\xffutf8`,
		`back\slash`:      `back\\slash`,
		"héllo":           "héllo",
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"AUTH PLAIN AHVzZXIAcGFzcw==": "AUTH PLAIN [credentials hidden]",
		"AUTH LOGIN dXNlcg==":         "AUTH LOGIN [credentials hidden]",
		"AUTH LOGIN":                  "AUTH LOGIN",
		"cGFzcw==":                    "[credentials hidden]",
		"":                            "[credentials hidden]",
	} {
		if got := redactAuth(in); got != want {
			t.Errorf("redactAuth(%q) = %q, want %q", in, got, want)
		}
	}
}

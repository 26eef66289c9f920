package outbound

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzReadReply: whatever a remote sends, the reply reader neither panics
// nor returns an out-of-range code, and its memory stays bounded.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"220 mx ESMTP\r\n", "250-a\r\n250-PIPELINING\r\n250 SIZE 10\r\n",
		"550 5.1.1 x\r\n", "451-4.7.1 a\r\n451 4.7.1 b\r\n", "250\r\n", "2\r\n", "250-\r\n", "999 x\r\n", "250 5.5.5.5 x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		for i := 0; i < 10; i++ {
			n := 0
			r, err := readReplyFrom(br, func(string) { n++ })
			if err != nil {
				return
			}
			if r.Code < 200 || r.Code > 559 || len(r.Lines) == 0 || len(r.Lines) > maxReplyLines || n != len(r.Lines) {
				t.Fatalf("reply %+v from %q", r, in)
			}
			if r.Enh[0] != 0 && r.Enh[0] != r.Code/100 {
				t.Fatalf("enhanced code %v for %d", r.Enh, r.Code)
			}
			for _, l := range r.Lines {
				if len(l) > maxReplyLine {
					t.Fatal("line over the limit")
				}
			}
		}
	})
}

// FuzzDataWriter: any stored message becomes a DATA stream of CRLF lines
// with no line "." before the end, which unstuffs to the message with
// normalised line endings (RELIABILITY #13/#14).
func FuzzDataWriter(f *testing.F) {
	for _, s := range []string{"", "a\r\n.\r\nb", "\n.\n", "\r.\r", "\r\n.\r", "\r\r\n.\r\r\n", "..\r\n", "x"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		dw := newDataWriter(bw)
		step := int(chunk%16) + 1
		for i := 0; i < len(in); i += step {
			dw.Write(in[i:min(i+step, len(in))])
		}
		dw.Close()
		out := buf.String()
		if !strings.HasSuffix(out, ".\r\n") {
			t.Fatalf("no terminator: %q", out)
		}
		body := out[:len(out)-3]
		if strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\r") || strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\n") {
			t.Fatalf("bare CR or LF in %q", out)
		}
		if body != "" && !strings.HasSuffix(body, "\r\n") {
			t.Fatalf("last line not ended: %q", out)
		}
		lines := strings.Split(body, "\r\n")
		var unstuffed []string
		for _, l := range lines[:max(len(lines)-1, 0)] {
			if l == "." {
				t.Fatalf("end-of-data line inside the body: %q", out)
			}
			if strings.HasPrefix(l, ".") {
				if !strings.HasPrefix(l, "..") {
					t.Fatalf("unstuffed dot line %q", l)
				}
				l = l[1:]
			}
			unstuffed = append(unstuffed, l)
		}
		norm := strings.ReplaceAll(string(in), "\r\n", "\n")
		norm = strings.ReplaceAll(norm, "\r", "\n")
		norm = strings.TrimSuffix(norm, "\n")
		if len(in) > 0 && strings.Join(unstuffed, "\n") != norm {
			t.Fatalf("content changed: %q → %q", in, out)
		}
	})
}

// FuzzTranscriptRender: text from the network cannot add lines to a
// rendered transcript or smuggle control characters into it.
func FuzzTranscriptRender(f *testing.F) {
	f.Add("250 ok", "mx.test", "AUTH PLAIN AGEAYg==")
	f.Add("250 ok\r\nS 250 forged", "a\x1b[2Jb", "\xff\xfe")
	f.Add("\u2028x\u0085", "\\x0a", "AUTH")
	f.Fuzz(func(t *testing.T, server, host, clientLine string) {
		now := time.Unix(0, 0)
		tr := Transcript{QueueID: host, Destination: host, TLS: server, Outcome: server,
			DNS:       []DNSExchange{{Question: host, Answers: []string{server}, Error: server}},
			Addresses: []AddressTry{{Host: host, Addr: host, Error: server}},
			Lines: []Line{{Dir: "S", Text: server, Time: now}, {Dir: "C", Text: redactAuth(clientLine), Time: now},
				{Dir: "C", Text: clientLine, Time: now}}}
		out := tr.Render()
		if n := strings.Count(out, "\n"); n != 9 {
			t.Fatalf("%d lines:\n%s", n, out)
		}
		for _, r := range strings.TrimSuffix(out, "\n") {
			if r == '\n' {
				continue
			}
			if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0x2028 || r == 0x2029 || r == 0xfffd && !strings.ContainsRune(server+host+clientLine, 0xfffd) {
				t.Fatalf("control character %U in %q", r, out)
			}
		}
		// A redacted AUTH line keeps no credential.
		if f := strings.Fields(clientLine); len(f) >= 3 && strings.EqualFold(f[0], "AUTH") {
			if red := redactAuth(clientLine); strings.Contains(red, f[2]) && !strings.Contains("AUTH "+printable(f[1])+" [credentials hidden]", f[2]) {
				t.Fatalf("credential %q kept in %q", f[2], red)
			}
		}
	})
}

package filter

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestHeaderScan(t *testing.T) {
	rcv := func(n int) string { return strings.Repeat("Received: from x by y; date\r\n", n) }
	for _, tc := range []struct {
		name string
		msg  string
		code int // 0: passes
		from []string
	}{
		{"plain", "From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n", 0, []string{"a@b.example"}},
		{"50 hops", rcv(50) + "\r\nbody", 0, []string{}},
		{"51 hops", rcv(51) + "\r\nbody", 554, nil},
		{"received in body", "Subject: x\r\n\r\n" + rcv(100), 0, []string{}},
		{"lower-case, WSP before colon", strings.Repeat("received : x\r\n", 51), 554, nil},
		{"bare LF lines", strings.Repeat("Received: x\n", 51), 554, nil},
		{"folded from", "From: A\r\n <a@b.example>,\r\n\tc@d.example\r\n\r\n", 0, []string{"A <a@b.example>, c@d.example"}},
		{"two from fields", "From: a@b.example\r\nfrom: c@d.example\r\n\r\n", 0, []string{"a@b.example", "c@d.example"}},
		{"no body", "From: a@b.example", 0, []string{"a@b.example"}},
		{"non-field line ends header", "From: a@b.example\r\nnot a header\r\nFrom: c@d.example\r\n", 0, []string{"a@b.example"}},
		{"header too big", "X: " + strings.Repeat("y", 2000) + "\r\n\r\n", 552, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			h := newHeaderScan(iotest.OneByteReader(strings.NewReader(tc.msg)), 1000, 50, func(f []string) *Reject {
				got = f
				return nil
			})
			if tc.name != "header too big" {
				h.maxBytes = 1 << 20
			}
			out, err := io.ReadAll(h)
			if tc.code != 0 {
				r, ok := AsReject(err)
				if !ok || r.Code != tc.code {
					t.Fatalf("err %v, want %d", err, tc.code)
				}
				return
			}
			if err != nil || string(out) != tc.msg {
				t.Fatalf("passed %q, %v", out, err)
			}
			if strings.Join(got, "|") != strings.Join(tc.from, "|") || got == nil {
				t.Fatalf("From fields %q, want %q", got, tc.from)
			}
		})
	}
}

func TestParseHeaderAddresses(t *testing.T) {
	got, err := parseHeaderAddresses(`"Doe, J" <j@x.example>, =?koi8-r?b?4s/C?= <b@y.example>, c@z.example`)
	if err != nil || strings.Join(got, " ") != "j@x.example b@y.example c@z.example" {
		t.Fatalf("%q %v", got, err)
	}
}

// FuzzHeaderScan: no panic, the bytes pass through unchanged whenever no
// limit is hit, whatever the chunking.
func FuzzHeaderScan(f *testing.F) {
	f.Add([]byte("From: a@b\r\nReceived: x\r\n\r\nbody"), uint8(3))
	f.Add([]byte("Received: x\nReceived: y\n\n"), uint8(1))
	f.Add([]byte(" folded first\r\nFrom:\r\n\t<a@b>\r\n"), uint8(7))
	f.Fuzz(func(t *testing.T, msg []byte, chunk uint8) {
		n := int(chunk)%16 + 1
		h := newHeaderScan(&chunker{b: msg, n: n}, 512, 5, func([]string) *Reject { return nil })
		out, err := io.ReadAll(h)
		if err != nil {
			if _, ok := AsReject(err); !ok {
				t.Fatalf("non-reject error %v", err)
			}
			return
		}
		if !bytes.Equal(out, msg) {
			t.Fatalf("changed the message")
		}
	})
}

type chunker struct {
	b []byte
	n int
}

func (c *chunker) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(c.n, len(p), len(c.b))
	copy(p, c.b[:k])
	c.b = c.b[k:]
	return k, nil
}

package smtpd

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"io"
	"strings"
)

var errSmuggling = errors.New("bare LF followed by a dot (SMTP smuggling)")

// smuggleCheck watches a message as go-smtp hands it over (dot-unstuffed,
// ended only by CRLF.CRLF) for a line holding a lone dot next to a bare LF:
// "\n.\n", "\n.\r\n" after a bare LF, "\r\n.\n". Another MTA may take such a
// line for the end of data, so storing and later relaying it would let a
// sender smuggle a second message past that MTA (CVE-2023-51764/5/6,
// RFC 5321 §2.3.8). go-smtp itself never ends DATA on them.
//
// go-smtp removes the dot of a raw "\r\n.\n" (it starts a dot-stuffed line),
// so that raw form reaches us as a harmless "\r\n\n" and is stored without
// any dot; only its stuffed form "\r\n..\n" is seen and refused here.
type smuggleCheck struct {
	hist uint64 // the last bytes seen, newest in the low byte
}

// newSmuggleCheck starts as if after a CRLF: data begins at a line start.
func newSmuggleCheck() smuggleCheck { return smuggleCheck{hist: '\r'<<8 | '\n'} }

// scan returns the offset just past the byte that completes a bare-LF-dot
// line, or -1.
func (c *smuggleCheck) scan(b []byte) int {
	h := c.hist
	for i, x := range b {
		h = h<<8 | uint64(x)
		if x != '\n' {
			continue
		}
		if h&0xffffff == '\n'<<16|'.'<<8|'\n' || // "\n.\n", the first LF bare or not
			h&0xffffffff == '\n'<<24|'.'<<16|'\r'<<8|'\n' && h>>32&0xff != '\r' { // bare "\n.\r\n"
			c.hist = h
			return i + 1
		}
	}
	c.hist = h
	return -1
}

// messageReader passes the message from go-smtp to the filter, refusing
// smuggling and remembering the client's read error.
type messageReader struct {
	r       io.Reader
	check   smuggleCheck
	started bool
	n       int64
	err     error
}

func (m *messageReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if !m.started {
		m.started = true
		m.check = newSmuggleCheck()
	}
	n, err := m.r.Read(p)
	if n > 0 {
		if i := m.check.scan(p[:n]); i >= 0 {
			m.err = errSmuggling
			return 0, m.err
		}
		m.n += int64(n)
	}
	if err != nil && err != io.EOF {
		m.err = err
	}
	return n, err
}

// newID makes a message ID: 128 random bits as 26 base32 characters.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

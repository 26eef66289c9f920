package smtpd

import (
	"fmt"
	"strings"
	"testing"
)

// RELIABILITY #13: the SMTP smuggling matrix. Each separator is followed by
// a complete second transaction; whatever happens, at most one message may
// come out, and the smuggled commands must never be executed.
func TestSmugglingMatrix(t *testing.T) {
	te := newTestEnv(t)
	cases := []struct {
		name, sep string
		refused   bool   // 550 5.5.2 instead of 250
		stored    string // for accepted ones: how the separator is stored
	}{
		{"LF.LF", "\n.\n", true, ""},
		{"LF.CRLF", "\n.\r\n", true, ""},
		{"CRLF..LF", "\r\n..\n", true, ""},
		// go-smtp unstuffs the dot of "\r\n.\n" (a line starting with a
		// dot); no dot is left to smuggle with.
		{"CRLF.LF", "\r\n.\n", false, "\r\n\n"},
		{"CR.CR", "\r.\r", false, "\r.\r"},
		// go-smtp drops ".\r" not followed by LF at a line start.
		{"CRLF.CR", "\r\n.\r", false, "\r\n"},
		{"CRCRLF.CRCRLF", "\r\r\n.\r\r\n", false, "\r\r\n.\r\r\n"},
		{"LF.", "\n.", false, "\n."},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(te.inbox(te.bob))
			c := dialRaw(t, te.mxAddr)
			c.greet()
			expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
			expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
			expect(t, c.cmd("DATA"), "354 ")
			first := fmt.Sprintf("Subject: first %d\r\n\r\nhello", i)
			smuggled := "MAIL FROM:<admin@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n" +
				"From: admin@example.org\r\nSubject: smuggled\r\n\r\nevil\r\n"
			c.send(first + tc.sep + smuggled + ".\r\n")
			r := c.reply()
			if tc.refused {
				expect(t, r, "550 5.5.2 ")
			} else {
				expect(t, r, "250 ")
			}
			// The next reply belongs to our NOOP: nothing else was executed.
			expect(t, c.cmd("NOOP"), "250 2.0.0 ")
			expect(t, c.cmd("QUIT"), "221 ")
			if n := len(te.inbox(te.alice)); n != 0 {
				t.Fatalf("smuggled message reached alice (%d)", n)
			}
			msgs := te.inbox(te.bob)
			want := before
			if !tc.refused {
				want++
			}
			if len(msgs) != want {
				t.Fatalf("bob has %d messages, want %d", len(msgs), want)
			}
			if !tc.refused {
				_, rest := splitStored(t, msgs[len(msgs)-1])
				if exp := first + tc.stored + smuggled; rest != exp {
					t.Fatalf("stored %q\nwant   %q", rest, exp)
				}
			}
		})
	}
}

// BDAT has no dot handling; the content is checked the same way.
func TestSmugglingBDAT(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.mxAddr)
	c.greet()
	for _, tc := range []struct {
		body string
		want string
	}{
		{"Subject: b\r\n\r\nx\n.\nMAIL FROM:<a@b>\r\n", "550 5.5.2 "},
		{"Subject: b\r\n\r\nx\r\n.\r\nliteral end marker is fine in BDAT\r\n", "250 "},
	} {
		expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
		expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
		half := len(tc.body) / 2
		c.send(fmt.Sprintf("BDAT %d\r\n%s", half, tc.body[:half]))
		expect(t, c.reply(), "250 ")
		c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(tc.body)-half, tc.body[half:]))
		expect(t, c.reply(), tc.want)
	}
	msgs := te.inbox(te.bob)
	if len(msgs) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(msgs))
	}
	if _, rest := splitStored(t, msgs[0]); !strings.Contains(rest, "\r\n.\r\nliteral") {
		t.Fatalf("BDAT content not stored verbatim: %q", rest)
	}
}

func TestSmuggleCheckUnit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"a\r\nb\r\n", false},
		{".\r\nleading stuffed dot line", false},
		{".\n", true},
		{"a\n.\nb", true},
		{"a\r\n.\nb", true},
		{"a\n.\r\nb", true},
		{"a\r\n.\r\nb", false}, // cannot reach us from DATA; fine inside BDAT
		{"a\n..\nb", false},
		{"a\r.\rb", false},
		{"a\n.b\n", false},
		{"\n\n.\n", true},
	} {
		for split := 0; split <= len(tc.in); split++ {
			c := newSmuggleCheck()
			got := c.scan([]byte(tc.in[:split])) >= 0 || c.scan([]byte(tc.in[split:])) >= 0
			if got != tc.want {
				t.Errorf("%q split at %d: smuggling=%v, want %v", tc.in, split, got, tc.want)
			}
		}
	}
}

// go-smtp runs Data for BDAT in its own goroutine and RSET resets the
// session while it runs (found by FuzzSession): no panic, nothing stored
// for the abandoned message, the next transaction works.
func TestBDATThenReset(t *testing.T) {
	if raceEnabled {
		// go-smtp v0.25.1 writes Conn.dataResult in handleBdat while the
		// previous BDAT goroutine may read it: the race detector reports
		// the library, not us. Reset waiting for Data keeps it harmless.
		t.Skip("go-smtp BDAT data race (upstream)")
	}
	te := newTestEnv(t)
	c := dialRaw(t, te.mxAddr)
	c.greet()
	for i := 0; i < 20; i++ {
		expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
		expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
		c.send("BDAT 10\r\nSubject: x")
		expect(t, c.reply(), "250 ")
		expect(t, c.cmd("RSET"), "250 ")
	}
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
	c.send("BDAT 17 LAST\r\nSubject: y\r\n\r\nok\r\n")
	expect(t, c.reply(), "250 ")
	if n := len(te.inbox(te.bob)); n != 1 {
		t.Fatalf("bob has %d messages, want 1", n)
	}
	if te.mx.Panics() != 0 {
		t.Fatal("panic")
	}
}

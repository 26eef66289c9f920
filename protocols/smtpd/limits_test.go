package smtpd

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// RELIABILITY #17/#18: size limits, with and without SIZE; the oversize
// body is drained and the connection stays usable.
func TestSizeLimits(t *testing.T) {
	te := newTestEnv(t, func(c *Config) { c.MaxMessageBytes = 100_000 })
	c := dialRaw(t, te.mxAddr)
	if ehlo := c.greet(); !strings.Contains(ehlo, "SIZE 100000") {
		t.Fatalf("EHLO lacks SIZE 100000:\n%s", ehlo)
	}
	expect(t, c.cmd("MAIL FROM:<a@remote.example> SIZE=200000"), "552 5.3.4 ")
	expect(t, c.cmd("MAIL FROM:<a@remote.example> SIZE=90000"), "250 ")
	expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
	expect(t, c.cmd("DATA"), "354 ")
	line := strings.Repeat("x", 998) + "\r\n"
	c.send("Subject: big\r\n\r\n")
	for i := 0; i < 300; i++ { // ~300 KB, no SIZE lie detection needed
		c.send(line)
	}
	c.send(".\r\n")
	expect(t, c.reply(), "552 5.3.4 ")
	expect(t, c.cmd("NOOP"), "250 ")
	if n := len(te.inbox(te.bob)); n != 0 {
		t.Fatalf("oversize message stored (%d)", n)
	}
	if n := te.blobFiles(); n != 0 {
		t.Fatalf("%d blob files left behind", n)
	}
	// The same connection still delivers a normal message.
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
	expect(t, c.cmd("DATA"), "354 ")
	c.send("Subject: small\r\n\r\nok\r\n.\r\n")
	expect(t, c.reply(), "250 ")
}

func TestMaxRecipients(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.mxAddr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	var b strings.Builder
	for i := 0; i < 1001; i++ {
		fmt.Fprintf(&b, "RCPT TO:<bob+%d@example.org>\r\n", i)
	}
	c.send(b.String()) // PIPELINING: legal
	for i := 0; i < 1000; i++ {
		expect(t, c.reply(), "250 ")
	}
	expect(t, c.reply(), "452 4.5.3 ")
	expect(t, c.cmd("DATA"), "354 ")
	c.send("Subject: many\r\n\r\nhi\r\n.\r\n")
	expect(t, c.reply(), "250 ")
	if n := len(te.inbox(te.bob)); n != 1 {
		t.Fatalf("bob has %d messages, want 1 (one per account)", n)
	}
}

// RELIABILITY #45: after MaxErrors rejected commands, 421 4.7.0 and close.
func TestTooManyErrors(t *testing.T) {
	_, addr, _, _ := startFake(t, Config{})
	c := dialRaw(t, addr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	for i := 1; i < 20; i++ {
		expect(t, c.cmd("RCPT TO:<bad%d@example.org>", i), "550 5.1.1 ")
	}
	expect(t, c.cmd("RCPT TO:<bad20@example.org>"), "421 4.7.0 ")
	if _, err := c.tryReply(); err != io.EOF {
		t.Fatalf("connection still open after 421: %v", err)
	}
}

func TestLineAndAddressLimits(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.mxAddr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	expect(t, c.cmd("RCPT TO:<%s@example.org>", strings.Repeat("a", 65)), "501 5.1.3 ")
	expect(t, c.cmd("RCPT TO:<a@%s.example.org>", strings.Repeat("b", 250)), "501 5.1.3 ")
	expect(t, c.cmd("RCPT TO:<%s@example.org>", strings.Repeat("c", 590)), "501 5.1.3 ") // ~600-byte command
	// A 10 KB line: go-smtp answers 500 5.4.0 and closes (MaxLineLength).
	expect(t, c.cmd("NOOP %s", strings.Repeat("x", 10_000)), "500 5.4.0 ")
	if _, err := c.tryReply(); err == nil {
		t.Fatal("connection open after an over-long line")
	}
}

// RELIABILITY #30: header size limit and hop count.
func TestHeaderLimits(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.mxAddr)
	c.greet()
	send := func(msg string) string {
		expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
		expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
		expect(t, c.cmd("DATA"), "354 ")
		c.send(msg + ".\r\n")
		return c.reply()
	}
	hops := func(n int) string {
		return strings.Repeat("Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n", n) + "Subject: hops\r\n\r\nbody\r\n"
	}
	expect(t, send(hops(51)), "554 5.4.6 ")
	expect(t, send(hops(50)), "250 ")
	big := "Subject: big\r\nX-Big: " + strings.Repeat("y", 900) + strings.Repeat("\r\n "+strings.Repeat("z", 900), 2500) + "\r\n\r\nbody\r\n"
	expect(t, send(big), "552 5.3.4 ")
	if n := len(te.inbox(te.bob)); n != 1 {
		t.Fatalf("bob has %d messages, want 1", n)
	}
}

func TestVRFYAndEXPN(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.mxAddr)
	c.greet()
	expect(t, c.cmd("VRFY alice@example.org"), "252 ")
	expect(t, c.cmd("VRFY nobody@example.org"), "252 ")
	expect(t, c.cmd("EXPN sales@example.org"), "502 ")
}

// RFC 5321 §4.5.3.2: idle clients are dropped with 421.
func TestTimeouts(t *testing.T) {
	_, addr, fd, _ := startFake(t, Config{Timeout: 500 * time.Millisecond})
	c := dialRaw(t, addr)
	c.greet()
	start := time.Now()
	expect(t, c.reply(), "421 4.4.2 ")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("idle timeout took %v", d)
	}

	// Inside DATA the timeout is per block: a slow but steady sender
	// survives longer than one timeout, a stalled one is dropped.
	c = dialRaw(t, addr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
	expect(t, c.cmd("DATA"), "354 ")
	c.send("Subject: slow\r\n\r\n")
	for i := 0; i < 6; i++ {
		time.Sleep(300 * time.Millisecond)
		c.send("line\r\n")
	}
	c.send(".\r\n")
	expect(t, c.reply(), "250 ")
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
	expect(t, c.cmd("DATA"), "354 ")
	c.send("Subject: stalled\r\n\r\npartial")
	expect(t, c.reply(), "421 4.4.2 ")
	if n := len(fd.messages()); n != 1 {
		t.Fatalf("%d messages, want only the slow one", n)
	}
}

// A client that disconnects mid-DATA stores nothing.
func TestDisconnectMidData(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.mxAddr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
	expect(t, c.cmd("DATA"), "354 ")
	c.send("Subject: cut\r\n\r\n" + strings.Repeat("partial body\r\n", 5000))
	c.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for te.blobFiles() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := te.blobFiles(); n != 0 {
		t.Fatalf("%d blob files after a cut DATA", n)
	}
	if n := len(te.inbox(te.bob)); n != 0 {
		t.Fatalf("cut message stored (%d)", n)
	}
}

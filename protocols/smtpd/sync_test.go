package smtpd

import (
	"io"
	"strings"
	"testing"
	"time"
)

// RELIABILITY #19: a client that talks before the greeting is refused.
func TestEarlyTalker(t *testing.T) {
	_, addr, fd, _ := startFake(t, Config{GreetDelay: 300 * time.Millisecond})
	c := dialRaw(t, addr)
	c.send("EHLO early.example.com\r\nMAIL FROM:<a@b.example>\r\n")
	expect(t, c.reply(), "554 5.5.0 ")
	if _, err := c.tryReply(); err != io.EOF {
		t.Fatalf("early talker not disconnected: %v", err)
	}
	// A patient client is served.
	c = dialRaw(t, addr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
	if len(fd.messages()) != 0 {
		t.Fatal("unexpected message")
	}
}

// RFC 2920: PIPELINING allows MAIL/RCPT/DATA in one group, but the message
// must wait for the 354 reply. A client that sends it early is a bot
// ("protocol synchronization", Postfix smtpd_forbid_unauth_pipelining).
func TestPipelining(t *testing.T) {
	_, addr, fd, _ := startFake(t, Config{})
	c := dialRaw(t, addr)
	if ehlo := c.greet(); !strings.Contains(ehlo, "PIPELINING") {
		t.Fatalf("no PIPELINING:\n%s", ehlo)
	}
	c.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<bad@example.org>\r\nDATA\r\n")
	expect(t, c.reply(), "250 ")
	expect(t, c.reply(), "250 ")
	expect(t, c.reply(), "550 ")
	expect(t, c.reply(), "354 ")
	// The message and the next transaction's commands may be pipelined.
	c.send("Subject: legal\r\n\r\nok\r\n.\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
	expect(t, c.reply(), "250 ")
	expect(t, c.reply(), "250 ")
	expect(t, c.reply(), "250 ")
	expect(t, c.reply(), "354 ")
	c.send("Subject: legal 2\r\n\r\nDATA\r\n.\r\n")
	expect(t, c.reply(), "250 ")
	if n := len(fd.messages()); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}

	// The message before the 354: refused and disconnected.
	c = dialRaw(t, addr)
	c.greet()
	c.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: bot\r\n\r\nspam\r\n.\r\nQUIT\r\n")
	expect(t, c.reply(), "250 ")
	expect(t, c.reply(), "250 ")
	expect(t, c.reply(), "354 ")
	expect(t, c.reply(), "554 5.5.0 ")
	if _, err := c.tryReply(); err != io.EOF {
		t.Fatalf("not disconnected: %v", err)
	}
	if n := len(fd.messages()); n != 2 {
		t.Fatalf("%d messages, want still 2", n)
	}
}

func TestDataLineEnd(t *testing.T) {
	for _, tc := range []struct {
		chunk string
		want  int
	}{
		{"DATA\r\n", 6},
		{"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\ndata\r\n", 38},
		{"TA\r\n", 4},                    // DATA line began in the previous chunk
		{"DATA\r\nbody\r\nDATA\r\n", 18}, // the last DATA line counts
		{"x\r\n.\r\nMAIL FROM:<a@b>\r\nDATA\n", 28},
	} {
		if got := dataLineEnd([]byte(tc.chunk)); got != tc.want {
			t.Errorf("dataLineEnd(%q) = %d, want %d", tc.chunk, got, tc.want)
		}
	}
}

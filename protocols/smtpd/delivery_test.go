package smtpd

import (
	"strings"
	"testing"
)

// A message as a client sends it (dot-stuffed) and as it must be stored.
const (
	wireMsg = "From: Sender <sender@remote.example>\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\n" +
		"first line\r\n..leading dot\r\n\r\nlast line\r\n"
	storedMsg = "From: Sender <sender@remote.example>\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\n" +
		"first line\r\n.leading dot\r\n\r\nlast line\r\n"
)

// sendRaw runs one transaction on a fresh MX connection and returns the
// reply to the end of data (or the first failing reply).
func sendRaw(t *testing.T, addr, from string, rcpts []string, body string) string {
	t.Helper()
	c := dialRaw(t, addr)
	c.greet()
	if r := c.cmd("MAIL FROM:<%s>", from); !strings.HasPrefix(r, "250") {
		return r
	}
	ok := 0
	var last string
	for _, rc := range rcpts {
		last = c.cmd("RCPT TO:<%s>", rc)
		if strings.HasPrefix(last, "250") {
			ok++
		}
	}
	if ok == 0 {
		return last
	}
	expect(t, c.cmd("DATA"), "354 ")
	c.send(body + ".\r\n")
	r := c.reply()
	expect(t, c.cmd("QUIT"), "221 ")
	return r
}

func TestLocalDelivery(t *testing.T) {
	te := newTestEnv(t)
	r := sendRaw(t, te.mxAddr, "sender@remote.example", []string{"alice@example.org"}, wireMsg)
	expect(t, r, "250 2.0.0 OK queued as ")
	id := strings.TrimPrefix(r, "250 2.0.0 OK queued as ")
	if len(id) != 26 {
		t.Errorf("message id %q: want 26 characters", id)
	}
	msgs := te.inbox(te.alice)
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	rcv, rest := splitStored(t, msgs[0])
	if rest != storedMsg {
		t.Errorf("stored body differs:\n got %q\nwant %q", rest, storedMsg)
	}
	for _, want := range []string{"from client.example.com ([127.0.0.1])", "by mx.example.org (Tandem) with ESMTP\r\n",
		"id " + id, "for <alice@example.org>;"} {
		if !strings.Contains(rcv, want) {
			t.Errorf("Received field %q lacks %q", rcv, want)
		}
	}
	if n := len(te.inbox(te.bob)); n != 0 {
		t.Errorf("bob got %d messages", n)
	}
}

func TestAliasesAndCatchAll(t *testing.T) {
	te := newTestEnv(t)
	cases := []struct {
		rcpts []string
		alice int
		bob   int
		carol int
	}{
		{[]string{"sales@example.org"}, 1, 1, 0},                     // alias with two targets
		{[]string{"info@example.org"}, 1, 0, 0},                      // alias with one target
		{[]string{"whoever@example.net"}, 0, 0, 1},                   // catch-all
		{[]string{"Alice+news@Example.ORG"}, 1, 0, 0},                // sub-address, case
		{[]string{"alice@example.org", "info@example.org"}, 1, 0, 0}, // one copy per account
	}
	var a, b, c int
	for _, tc := range cases {
		r := sendRaw(t, te.mxAddr, "sender@remote.example", tc.rcpts, "Subject: x\r\n\r\nhi\r\n")
		expect(t, r, "250 ")
		a, b, c = a+tc.alice, b+tc.bob, c+tc.carol
		if got := [3]int{len(te.inbox(te.alice)), len(te.inbox(te.bob)), len(te.inbox(te.carol))}; got != [3]int{a, b, c} {
			t.Fatalf("after %v: inbox counts %v, want %v", tc.rcpts, got, [3]int{a, b, c})
		}
	}
}

func TestUnknownRecipient(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.mxAddr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<sender@remote.example>"), "250 ")
	expect(t, c.cmd("RCPT TO:<nobody@example.org>"), "550 5.1.1 ")
	expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
	expect(t, c.cmd("DATA"), "354 ")
	c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
	expect(t, c.reply(), "250 ")
	if len(te.inbox(te.bob)) != 1 {
		t.Fatal("bob did not get the message")
	}
}

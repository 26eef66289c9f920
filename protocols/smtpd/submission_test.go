package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"strings"
	"testing"
)

func TestSubmissionNeedsTLSThenAuth(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.subAddr)
	ehlo := c.greet()
	if !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
		t.Fatalf("EHLO before TLS: want STARTTLS and no AUTH:\n%s", ehlo)
	}
	expect(t, c.cmd("MAIL FROM:<alice@example.org>"), "530 5.7.0 Must issue STARTTLS first")
	// AUTH before TLS never checks a password.
	r := c.cmd("AUTH PLAIN %s", plainAuth("alice@example.org", "alice-pw"))
	if strings.HasPrefix(r, "235") {
		t.Fatalf("AUTH over plaintext succeeded: %q", r)
	}
	c.startTLS()
	full := c.ehlo()
	if !strings.Contains(full, "AUTH PLAIN LOGIN") || strings.Contains(full, "STARTTLS") {
		t.Fatalf("EHLO after TLS: want AUTH PLAIN LOGIN and no STARTTLS:\n%s", full)
	}
	expect(t, c.cmd("MAIL FROM:<alice@example.org>"), "530 5.7.0 Authentication required")
	expect(t, c.cmd("AUTH PLAIN %s", plainAuth("alice@example.org", "alice-pw")), "235 2.0.0 ")
	expect(t, c.cmd("MAIL FROM:<alice@example.org>"), "250 ")
	expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
	expect(t, c.cmd("DATA"), "354 ")
	c.send("From: alice@example.org\r\nSubject: s\r\n\r\nbody\r\n.\r\n")
	expect(t, c.reply(), "250 ")
	msgs := te.inbox(te.bob)
	if len(msgs) != 1 {
		t.Fatalf("bob has %d messages", len(msgs))
	}
	rcv, rest := splitStored(t, msgs[0])
	if !strings.Contains(rcv, "with ESMTPSA (TLS1.3 TLS_") {
		t.Errorf("Received lacks TLS/auth info: %q", rcv)
	}
	if rest != "From: alice@example.org\r\nSubject: s\r\n\r\nbody\r\n" {
		t.Errorf("stored %q", rest)
	}
}

func TestAuthLoginAndFailures(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.subAddr)
	c.greet()
	c.startTLS()
	c.ehlo()
	// Wrong password and unknown user: byte-identical replies.
	bad := c.cmd("AUTH PLAIN %s", plainAuth("alice@example.org", "wrong"))
	unknown := c.cmd("AUTH PLAIN %s", plainAuth("nobody@example.org", "wrong"))
	if bad != unknown || bad != "535 5.7.8 Authentication failed" {
		t.Fatalf("bad password %q vs unknown user %q: want identical 535 5.7.8", bad, unknown)
	}
	// authzid other than the user is refused the same way.
	expect(t, c.cmd("AUTH PLAIN %s", b64("bob@example.org\x00alice@example.org\x00alice-pw")), "535 5.7.8 ")
	// LOGIN, without and with an initial response.
	expect(t, c.cmd("AUTH LOGIN"), "334 "+b64("Username:"))
	expect(t, c.cmd("%s", b64("alice@example.org")), "334 "+b64("Password:"))
	expect(t, c.cmd("%s", b64("wrong")), "535 5.7.8 Authentication failed")
	expect(t, c.cmd("AUTH LOGIN %s", b64("alice@example.org")), "334 "+b64("Password:"))
	expect(t, c.cmd("%s", b64("alice-pw")), "235 ")
	expect(t, c.cmd("AUTH PLAIN %s", plainAuth("alice@example.org", "alice-pw")), "503 ")
}

func TestSenderSpoofing(t *testing.T) {
	te := newTestEnv(t)
	login := func() *rawClient {
		c := dialRaw(t, te.subAddr)
		c.greet()
		c.startTLS()
		c.ehlo()
		expect(t, c.cmd("AUTH PLAIN %s", plainAuth("alice@example.org", "alice-pw")), "235 ")
		return c
	}
	c := login()
	for _, tc := range []struct {
		from string
		want string
	}{
		{"bob@example.org", "553 5.7.1 "},        // another user
		{"carol@example.net", "553 5.7.1 "},      // another domain's user
		{"someone@remote.example", "553 5.7.1 "}, // not ours at all
		{"BOB@EXAMPLE.ORG", "553 5.7.1 "},
		{"info@example.org", "250 "},  // alias that delivers to alice
		{"sales@example.org", "250 "}, // alias with alice among its targets
		{"Alice@Example.org", "250 "},
		{"", "250 "}, // null reverse-path
	} {
		r := c.cmd("MAIL FROM:<%s>", tc.from)
		expect(t, r, tc.want)
		if strings.HasPrefix(r, "250") {
			expect(t, c.cmd("RSET"), "250 ")
		}
	}
	// The From header field is checked too, before anything is stored.
	for _, tc := range []struct {
		from string
		want string
	}{
		{"Bob <bob@example.org>", "550 5.7.1 "},
		{"alice@example.org, bob@example.org", "550 5.7.1 "},
		{"=?utf-8?q?Al=C3=AFce?= <alice@example.org>", "250 "},
		{"Info <info@example.org>", "250 "},
	} {
		expect(t, c.cmd("MAIL FROM:<alice@example.org>"), "250 ")
		expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
		expect(t, c.cmd("DATA"), "354 ")
		c.send("From: " + tc.from + "\r\nSubject: s\r\n\r\nbody\r\n.\r\n")
		expect(t, c.reply(), tc.want)
	}
	if n := len(te.inbox(te.bob)); n != 2 {
		t.Fatalf("bob has %d messages, want the 2 legitimate ones", n)
	}
}

func TestImplicitTLS(t *testing.T) {
	te := newTestEnv(t)
	tc, err := tls.Dial("tcp", te.tlsAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &rawClient{t: t, c: tc, br: bufio.NewReader(tc)}
	ehlo := c.greet()
	if strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("STARTTLS offered inside TLS:\n%s", ehlo)
	}
	if full := c.ehlo(); !strings.Contains(full, "AUTH PLAIN LOGIN") {
		t.Fatalf("no AUTH on 465:\n%s", full)
	}
	expect(t, c.cmd("MAIL FROM:<carol@example.net>"), "530 5.7.0 Authentication required")
	expect(t, c.cmd("AUTH PLAIN %s", plainAuth("carol@example.net", "carol-pw")), "235 ")
	expect(t, c.cmd("MAIL FROM:<carol@example.net>"), "250 ")
	expect(t, c.cmd("RCPT TO:<alice@example.org>"), "250 ")
	expect(t, c.cmd("DATA"), "354 ")
	c.send("Subject: s\r\n\r\nbody\r\n.\r\n")
	expect(t, c.reply(), "250 ")
	if len(te.inbox(te.alice)) != 1 {
		t.Fatal("not delivered")
	}
}

// Port 25 offers AUTH only after STARTTLS, never requires it, and an
// authenticated session there follows the sender rules.
func TestMXAuth(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.mxAddr)
	c.send("EHLO client.example.com\r\n")
	expect(t, c.reply(), "220 ")
	if full := c.reply(); strings.Contains(full, "AUTH") || !strings.Contains(full, "STARTTLS") {
		t.Fatalf("EHLO on 25 before TLS:\n%s", full)
	}
	c.startTLS()
	full := c.ehlo()
	for _, want := range []string{"AUTH PLAIN LOGIN", "PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 52428800"} {
		if !strings.Contains(full, want) {
			t.Errorf("EHLO after TLS lacks %q:\n%s", want, full)
		}
	}
	expect(t, c.cmd("AUTH PLAIN %s", plainAuth("bob@example.org", "bob-pw")), "235 ")
	expect(t, c.cmd("MAIL FROM:<alice@example.org>"), "553 5.7.1 ")
	expect(t, c.cmd("MAIL FROM:<bob@example.org>"), "250 ")
	expect(t, c.cmd("RCPT TO:<someone@remote.example>"), "451 4.3.2 ")
}

// RELIABILITY #16: commands pipelined behind STARTTLS are discarded, and
// TLS resets the session (a new EHLO is needed).
func TestStartTLSInjection(t *testing.T) {
	te := newTestEnv(t)
	for _, addr := range []string{te.mxAddr, te.subAddr} {
		c := dialRaw(t, addr)
		c.greet()
		c.send("STARTTLS\r\nRSET\r\n")
		expect(t, c.reply(), "220 ")
		tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c.c, c.br = tc, bufio.NewReader(tc)
		// Had RSET run, its "250 … reset" would be the next reply.
		expect(t, c.cmd("MAIL FROM:<x@remote.example>"), "502 5.5.1 ")
		c.send("EHLO client.example.com\r\n")
		expect(t, c.reply(), "250-")
	}
}

// AllowInsecureAuth (tests, trusted loopback): AUTH offered and accepted
// without TLS on submission.
func TestAllowInsecureAuth(t *testing.T) {
	auth := AuthFunc(func(_ context.Context, user, pw string) (uint64, error) {
		if user == "alice@example.org" && pw == "pw" {
			return 7, nil
		}
		return 0, ErrAuthFailed
	})
	_, addr, fd, _ := startFake(t, Config{Mode: ModeSubmission, AllowInsecureAuth: true, Auth: auth})
	c := dialRaw(t, addr)
	if ehlo := c.greet(); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("no AUTH with AllowInsecureAuth:\n%s", ehlo)
	}
	expect(t, c.cmd("MAIL FROM:<alice@example.org>"), "530 5.7.0 Authentication required")
	expect(t, c.cmd("AUTH PLAIN %s", plainAuth("alice@example.org", "bad")), "535 5.7.8 ")
	expect(t, c.cmd("AUTH PLAIN %s", plainAuth("alice@example.org", "pw")), "235 ")
	expect(t, c.cmd("MAIL FROM:<alice@example.org> SMTPUTF8 BODY=8BITMIME"), "250 ")
	expect(t, c.cmd("RCPT TO:<jörg@example.org>"), "250 ")
	expect(t, c.cmd("DATA"), "354 ")
	c.send("Subject: ü\r\n\r\nbody\r\n.\r\n")
	expect(t, c.reply(), "250 ")
	m := fd.messages()
	if len(m) != 1 || m[0].env.AuthAccountID != 7 || !m[0].env.SMTPUTF8 || !m[0].env.Body8BIT || m[0].env.TLS {
		t.Fatalf("envelope %+v", m)
	}
	if !strings.Contains(m[0].env.Trace, "with UTF8SMTPA\r\n") || !strings.Contains(m[0].env.Trace, "for <jörg@example.org>") {
		t.Fatalf("trace %q", m[0].env.Trace)
	}
	if !strings.HasSuffix(m[0].body, "Subject: ü\r\n\r\nbody\r\n") || strings.Contains(m[0].body, "Received") {
		t.Fatalf("body %q", m[0].body)
	}
}

package pop3d

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestUserPass(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain)
	c.cmd("USER "+testUser, "+OK")
	wrong := c.cmd("PASS wrong", "-ERR [AUTH] ")
	c.cmd("PASS "+testPassword, "-ERR send USER first") // a failed PASS forgets USER
	c.cmd("USER nobody@example.test", "+OK")
	unknown := c.cmd("PASS "+testPassword, "-ERR [AUTH] ")
	// RELIABILITY #23: unknown user and wrong password look the same.
	if wrong != unknown {
		t.Errorf("replies differ: wrong password %q, unknown user %q", wrong, unknown)
	}
	c.cmd("USER bob@example.test", "+OK")
	c.cmd("USER "+testUser, "+OK") // the last USER counts
	c.cmd("PASS "+testPassword, "+OK maildrop has 3 messages")

	// RELIABILITY #28, RFC 3206 §4: a second session gets [IN-USE] while
	// the first holds the maildrop, and in after it leaves.
	c2 := dial(t, ts.plain)
	c2.cmd("USER "+testUser, "+OK")
	c2.cmd("PASS "+testPassword, "-ERR [IN-USE] ")
	c2.cmd("AUTH PLAIN "+plain("", testUser, testPassword), "-ERR [IN-USE] ")
	c.cmd("QUIT", "+OK")
	c.closed()
	c2.login(testUser, testPassword)
}

// TestPlaintextRefused: no password is taken, or even checked, over an
// unencrypted connection unless configured (RFC 2595 §2.2, RELIABILITY #24).
func TestPlaintextRefused(t *testing.T) {
	ts := startServer(t, func(cfg *Config) { cfg.AllowInsecureAuth = false })
	c := dial(t, ts.plain)
	c.cmd("CAPA", "+OK")
	caps := strings.Join(c.multi(), "|")
	if strings.Contains(caps, "USER") || strings.Contains(caps, "SASL") || !strings.Contains(caps, "STLS") {
		t.Errorf("CAPA before TLS: %s", caps)
	}
	for _, cmd := range []string{"USER " + testUser, "PASS " + testPassword, "AUTH PLAIN", "AUTH PLAIN " + plain("", testUser, testPassword)} {
		c.cmd(cmd, "-ERR [AUTH] plaintext authentication is disabled on unencrypted connections; issue STLS first")
	}
	if n := ts.fake.loginCalls(); n != 0 {
		t.Fatalf("backend asked %d times before TLS", n)
	}
	c.starttls("")
	c.cmd("CAPA", "+OK")
	caps = strings.Join(c.multi(), "|")
	if !strings.Contains(caps, "USER") || !strings.Contains(caps, "SASL PLAIN") || strings.Contains(caps, "STLS") {
		t.Errorf("CAPA after TLS: %s", caps)
	}
	c.login(testUser, testPassword)

	// Without any TLS, the reply points to the POP3S port instead.
	ts = startServer(t, func(cfg *Config) { cfg.AllowInsecureAuth, cfg.TLSConfig = false, nil })
	c = dial(t, ts.plain)
	c.cmd("USER "+testUser, "-ERR [AUTH] plaintext authentication is disabled on unencrypted connections; use the POP3S port")
	c.cmd("STLS", "-ERR STLS is not available")
	c.cmd("CAPA", "+OK")
	if caps := strings.Join(c.multi(), "|"); strings.Contains(caps, "STLS") || strings.Contains(caps, "USER") {
		t.Errorf("CAPA without TLS: %s", caps)
	}
}

// TestAuthPlain covers RFC 5034 AUTH PLAIN and its edge cases
// (RELIABILITY #24).
func TestAuthPlain(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain)
	c.cmd("AUTH", "+OK")
	if got := c.multi(); len(got) != 1 || got[0] != "PLAIN" {
		t.Errorf("AUTH mechanism list: %q", got)
	}
	c.cmd("AUTH LOGIN", "-ERR unsupported authentication mechanism")
	c.cmd("AUTH CRAM-MD5 abc", "-ERR unsupported authentication mechanism")
	c.cmd("AUTH PLAIN !!!", "-ERR invalid base64")
	c.cmd("AUTH PLAIN "+plain("", testUser, "wrong"), "-ERR [AUTH] invalid user name or password")
	c.cmd("AUTH PLAIN AAA=", "-ERR malformed PLAIN response") // NUL NUL: no authcid
	c.cmd("AUTH PLAIN =", "-ERR malformed PLAIN response")    // empty initial response
	c.cmd("AUTH PLAIN "+plain("", testUser, "a\x00b"), "-ERR malformed PLAIN response")
	before := ts.fake.loginCalls()
	c.cmd("AUTH PLAIN "+plain("bob@example.test", testUser, testPassword), "-ERR [AUTH] authorization identity")
	if ts.fake.loginCalls() != before {
		t.Error("backend asked although the authzid was refused")
	}
	// 20 KB initial response: over the 255-octet command limit (RFC 5034 §4).
	c.cmd("AUTH PLAIN "+strings.Repeat("QUFB", 5<<10), "-ERR command line too long")
	// Continuation: "*" cancels.
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd("*", "-ERR authentication cancelled")
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd("not base64!", "-ERR invalid base64")
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd(strings.Repeat("QUFB", 5<<10), "-ERR authentication response too long")
	c.cmd("NOOP", "-ERR NOOP is only valid after login") // still in AUTHORIZATION, in sync
	// A continuation response may be longer than a command line.
	longPassword := strings.Repeat("p", 300)
	ts.fake.mu.Lock()
	ts.fake.users["long@example.test"] = longPassword
	ts.fake.mu.Unlock()
	c2 := dial(t, ts.plain)
	c2.cmd("auth plain", "+ ")
	c2.cmd(plain("", "long@example.test", longPassword), "+OK maildrop has 0 messages")
	// Success with the initial response and a matching authzid.
	c.cmd("AUTH PLAIN "+plain(testUser, testUser, testPassword), "+OK maildrop has 3 messages")
	c.cmd("STAT", "+OK 3 ")
}

// TestAuthFailureDelay: failed logins are answered late, the same for an
// unknown user and a wrong password (RELIABILITY #23).
func TestAuthFailureDelay(t *testing.T) {
	const delay = 150 * time.Millisecond
	ts := startServer(t, func(cfg *Config) { cfg.AuthFailureDelay = delay })
	c := dial(t, ts.plain)
	for _, cmd := range []string{
		"AUTH PLAIN " + plain("", testUser, "wrong"),
		"AUTH PLAIN " + plain("", "nobody@example.test", "wrong"),
	} {
		start := time.Now()
		c.cmd(cmd, "-ERR [AUTH] invalid user name or password")
		if d := time.Since(start); d < delay {
			t.Errorf("%s answered after %v, want at least %v", cmd, d, delay)
		}
	}
	start := time.Now()
	c.login(testUser, testPassword)
	if d := time.Since(start); d > delay {
		t.Errorf("a good login took %v", d)
	}
}

// TestBackendErrors: backend failures map to RFC 3206 codes, and the
// maildrop lock is never left behind.
func TestBackendErrors(t *testing.T) {
	ts := startServer(t, nil)
	f := ts.fake
	set := func(fn func()) {
		f.mu.Lock()
		fn()
		f.mu.Unlock()
	}
	c := dial(t, ts.plain)

	set(func() { f.loginErr = errors.New("raft: not the leader") })
	c.cmd("USER "+testUser, "+OK")
	c.cmd("PASS "+testPassword, "-ERR [SYS/TEMP] cannot open the maildrop now")
	set(func() { f.loginErr = fmt.Errorf("account disabled: %w", ErrPermanent) })
	c.cmd("AUTH PLAIN "+plain("", testUser, testPassword), "-ERR [SYS/PERM] ")
	set(func() { f.loginErr, f.messagesErr = nil, errors.New("bbolt: timeout") })
	c.cmd("AUTH PLAIN "+plain("", testUser, testPassword), "-ERR [SYS/TEMP] cannot read the maildrop now")
	if f.isLocked(testUser) {
		t.Fatal("maildrop left locked after Messages failed")
	}
	set(func() { f.messagesErr, f.openErr = nil, errors.New("blob missing") })
	c.login(testUser, testPassword)
	c.cmd("RETR 1", "-ERR [SYS/TEMP] cannot read the message now")
	c.cmd("TOP 1 1", "-ERR [SYS/TEMP] ")
	set(func() { f.openErr = nil })
	c.cmd("RETR 1", "+OK")
	c.multi()
	c.cmd("DELE 1", "+OK")
	set(func() { f.deleteErr = errors.New("quorum lost") })
	c.cmd("QUIT", "-ERR [SYS/TEMP] some deleted messages not removed")
	c.closed()
	if f.count(testUser) != 3 || f.isLocked(testUser) {
		t.Fatal("after a failed UPDATE: messages gone or lock kept")
	}

	// A reader that fails mid-message: the reply is cut off without the
	// terminating dot, so the client cannot mistake it for the message.
	set(func() { f.deleteErr = nil })
	f.add(testUser, bodyReadErr)
	c = dial(t, ts.plain)
	c.login(testUser, testPassword)
	c.write("RETR 4\r\n")
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			break
		}
		if l == ".\r\n" {
			t.Fatal("a message that failed to read was terminated as if complete")
		}
	}
	if f.isLocked(testUser) {
		t.Fatal("lock kept after the session broke")
	}
}

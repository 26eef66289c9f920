package pop3d

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// TestImplicitTLS: the POP3S listener (RFC 8314) speaks TLS first and
// takes passwords even with AllowInsecureAuth off.
func TestImplicitTLS(t *testing.T) {
	ts := startServer(t, func(cfg *Config) { cfg.AllowInsecureAuth = false })
	c := dialTLS(t, ts.tls)
	c.cmd("CAPA", "+OK")
	if caps := strings.Join(c.multi(), "|"); strings.Contains(caps, "STLS") || !strings.Contains(caps, "SASL PLAIN") {
		t.Errorf("CAPA on POP3S: %s", caps)
	}
	c.cmd("STLS", "-ERR already using TLS")
	c.cmd("AUTH PLAIN "+plain("", testUser, testPassword), "+OK")
	c.cmd("RETR 2", "+OK")
	if got := c.multi(); len(got) != 6 {
		t.Errorf("RETR over TLS: %q", got)
	}
	c.cmd("QUIT", "+OK")

	// A client that speaks plaintext to the TLS port gets nothing useful
	// and no crash.
	raw, err := net.Dial("tcp", ts.tls)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte("USER " + testUser + "\r\n"))
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := raw.Read(buf)
	if strings.Contains(string(buf[:n]), "+OK") {
		t.Errorf("plaintext answered on the TLS port: %q", buf[:n])
	}
}

// TestSTLS: the upgrade works, resets the state, and is refused where RFC
// 2595 §4 says so.
func TestSTLS(t *testing.T) {
	ts := startServer(t, func(cfg *Config) { cfg.AllowInsecureAuth = false })
	c := dial(t, ts.plain)
	c.cmd("STLS extra", "-ERR too many arguments")
	c.starttls("")
	c.cmd("STLS", "-ERR already using TLS")
	c.login(testUser, testPassword)
	c.cmd("STAT", "+OK 3 ")

	// The session keeps the TLS state it negotiated.
	if tc, ok := c.conn.(*tls.Conn); !ok || tc.ConnectionState().Version < tls.VersionTLS12 {
		t.Errorf("not TLS 1.2+ after STLS")
	}
}

// TestSTLSInjection: commands pipelined after STLS in the same packet are
// discarded, never run inside TLS (CVE-2011-0411, RELIABILITY #16).
func TestSTLSInjection(t *testing.T) {
	ts := startServer(t, func(cfg *Config) { cfg.AllowInsecureAuth = false })

	c := dial(t, ts.plain)
	c.starttls("CAPA\r\n")
	// If CAPA had been kept, its answer would come before this one.
	c.cmd("NOOP", "-ERR NOOP is only valid after login")

	// A USER injected by a man in the middle must not be remembered: the
	// PASS that follows inside TLS has no USER to go with.
	c = dial(t, ts.plain)
	c.starttls("USER " + testUser + "\r\n")
	c.cmd("PASS "+testPassword, "-ERR send USER first")

	// USER before STLS (allowed with AllowInsecureAuth) is forgotten too.
	ts = startServer(t, nil)
	c = dial(t, ts.plain)
	c.cmd("USER "+testUser, "+OK")
	c.starttls("")
	c.cmd("PASS "+testPassword, "-ERR send USER first")
}

// TestSTLSDiscardLogged: the discarded bytes are logged, so an injection
// attempt leaves a trace.
func TestSTLSDiscardLogged(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain)
	c.starttls("USER mallory\r\nPASS x\r\n")
	c.cmd("NOOP", "-ERR")
	if !strings.Contains(ts.logs.String(), "pop3 discarding data pipelined after STLS") {
		t.Errorf("no log line for the discarded bytes:\n%s", ts.logs)
	}
}

package outbound

import (
	"crypto/tls"
	"encoding/base64"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// A strict-TLS domain whose MX offers no STARTTLS is deferred, never sent
// in clear; with a valid certificate it is delivered; with an invalid one
// it is deferred too (no plain-text fallback).
func TestStrictTLS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		tls       bool
		certName  string
		delivered bool
		wantTLS   string
	}{
		{"no STARTTLS", false, "", false, "STARTTLS required but not offered"},
		{"valid certificate", true, "mx1.far.test", true, "verified=true"},
		{"wrong name", true, "other.test", false, "failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newEnv(t)
			port, ls := listenSame(t, "127.0.0.2")
			cfg := te.config(port)
			mxTLS, pool := testCA(t, "mx1.far.test")
			if tc.certName != "mx1.far.test" {
				mxTLS, _ = testCA(t, "other.test")
			}
			if !tc.tls {
				mxTLS = nil
			}
			cfg.RootCAs = pool
			cfg.StrictTLSDomains = []string{"FAR.test"}
			cfg.Backoff = []time.Duration{time.Hour}
			mx := newMXServer(t, mxTLS, ls...)
			te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
			e, _ := te.start(cfg)
			id := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
			waitFor(t, "the attempt", 10*time.Second, func() bool { return len(te.sink.Transcripts(id)) == 1 })
			tr := te.sink.Transcripts(id)[0]
			if !strings.Contains(tr.TLS, tc.wantTLS) {
				t.Fatalf("TLS %q", tr.TLS)
			}
			got := mx.received()
			if tc.delivered {
				if len(got) != 1 || !got[0].TLS {
					t.Fatalf("received %+v", got)
				}
				te.waitQueueEmpty(5 * time.Second)
				return
			}
			if len(got) != 0 || strings.Contains(tr.Render(), "C MAIL") {
				t.Fatalf("sent without TLS:\n%s", tr.Render())
			}
			waitFor(t, "recorded attempt", 5*time.Second, func() bool {
				qe, _ := te.entry(id)
				return qe.Rcpts[0].Attempts == 1
			})
			qe, _ := te.entry(id)
			if r := qe.Rcpts[0]; r.Status != storage.RcptPending || !strings.Contains(r.LastError, "4.7.") {
				t.Fatalf("recipient %+v", r)
			}
			if mx.connCount() > 1 {
				t.Fatalf("%d connections: plain-text fallback for a strict domain", mx.connCount())
			}
		})
	}
}

// A global smarthost with AUTH over STARTTLS; the credentials never reach
// the transcript.
func TestSmarthostWithAuth(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.6")
	tlsCfg, pool := testCA(t, "smart.test")
	mx := newMXServerWith(t, tlsCfg, func(m *mxServer) { m.authUser, m.authPass = "relayuser", "s3cret-pw" }, ls...)
	te.dns.add(t, "smart.test. A 127.0.0.6")
	cfg := te.config(1) // the MX port is not used
	cfg.RootCAs = pool
	cfg.Smarthosts = map[string]Smarthost{"": {Host: "smart.test", Port: port, Username: "relayuser", Password: "s3cret-pw"}}
	e, _ := te.start(cfg)
	id := te.submit(e, "alice@here.test", []string{"bob@elsewhere.test", "carl@far.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	got := mx.received()
	if len(got) != 1 || got[0].User != "relayuser" || !got[0].TLS || len(got[0].Rcpts) != 2 {
		t.Fatalf("received %+v", got)
	}
	tr := te.sink.Transcripts(id)
	if len(tr) != 1 {
		t.Fatalf("%d transcripts: one connection should carry both domains", len(tr))
	}
	r := tr[0].Render()
	plain := base64.StdEncoding.EncodeToString([]byte("\x00relayuser\x00s3cret-pw"))
	if !strings.Contains(r, "C AUTH PLAIN [credentials hidden]") || strings.Contains(r, "s3cret") || strings.Contains(r, plain) {
		t.Fatalf("transcript:\n%s", r)
	}
	if !strings.Contains(tr[0].TLS, "verified=true") || !strings.HasPrefix(tr[0].Destination, "smarthost smart.test:") {
		t.Fatalf("transcript %+v", tr[0])
	}
}

// A per-domain smarthost takes that domain; others go by MX. Credentials
// are never sent without TLS.
func TestSmarthostPerDomainAndNoPlainAuth(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2", "127.0.0.7")
	mx := newMXServer(t, nil, ls[0])
	smart := newMXServerWith(t, nil, func(m *mxServer) {
		m.authUser, m.authPass = "u", "p"
		m.srv.AllowInsecureAuth = true
	}, ls[1])
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	cfg := te.config(port)
	cfg.Backoff = []time.Duration{time.Hour}
	cfg.Smarthosts = map[string]Smarthost{"corp.test": {Host: "127.0.0.7", Port: port, TLS: TLSNone, Username: "u", Password: "p"}}
	e, _ := te.start(cfg)
	id := te.submit(e, "alice@here.test", []string{"bob@far.test", "x@corp.test"}, testBody)
	waitFor(t, "the attempt", 10*time.Second, func() bool {
		qe, _ := te.entry(id)
		return qe.Rcpts[1].Attempts == 1
	})
	if len(mx.received()) != 1 || len(smart.received()) != 0 {
		t.Fatalf("mx %d, smarthost %d", len(mx.received()), len(smart.received()))
	}
	qe, _ := te.entry(id)
	if r := qe.Rcpts[1]; r.Status != storage.RcptPending || !strings.Contains(r.LastError, "without TLS") {
		t.Fatalf("corp recipient %+v", r)
	}
	if strings.Contains(te.rendered(id), "C AUTH") {
		t.Fatal("AUTH sent in clear")
	}
}

// RELIABILITY #16, client side: a fake MX answers STARTTLS with
// "220 ready\r\n250 injected\r\n". The extra reply is never taken for the
// answer to a command: the connection is dropped (bytes in one segment) or
// the handshake fails (bytes later); then opportunistic TLS retries in
// plain text, where the remote's 451 defers the message.
func TestSTARTTLSInjection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		split bool
		note  string
	}{
		{"same segment", false, "after the STARTTLS reply discarded"},
		{"later segment", true, "TLS handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newEnv(t)
			port, ls := listenSame(t, "127.0.0.2")
			raw := newRawMX(t, ls[0], func(c *rawConn) {
				c.send("220 evil.test ESMTP\r\n")
				for {
					l, ok := c.line()
					if !ok {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(l)); {
					case strings.HasPrefix(cmd, "EHLO"):
						c.send("250-evil.test\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n")
					case cmd == "STARTTLS":
						if tc.split {
							c.send("220 ready\r\n")
							time.Sleep(100 * time.Millisecond)
							c.send("250 injected\r\n")
						} else {
							c.send("220 ready\r\n250 injected\r\n")
						}
					case strings.HasPrefix(cmd, "MAIL"):
						c.send("451 4.3.0 not now\r\n")
					case cmd == "QUIT":
						c.send("221 bye\r\n")
						return
					default:
						c.send("250 ok\r\n")
					}
				}
			})
			te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
			cfg := te.config(port)
			cfg.Backoff = []time.Duration{time.Hour}
			e, _ := te.start(cfg)
			id := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
			waitFor(t, "the attempt", 10*time.Second, func() bool { return len(te.sink.Transcripts(id)) == 1 })
			tr := te.sink.Transcripts(id)[0]
			r := tr.Render()
			for _, l := range tr.Lines {
				if l.Dir == "S" && strings.Contains(l.Text, "injected") {
					t.Fatalf("injected reply was read as a reply:\n%s", r)
				}
			}
			if !strings.Contains(r, tc.note) || !strings.Contains(tr.TLS, "failed") {
				t.Fatalf("transcript:\n%s", r)
			}
			// Connection 1 ends at STARTTLS: nothing was sent after it in
			// clear. Connection 2 is the plain-text retry, without STARTTLS.
			var c1, c2 []string
			for _, l := range raw.lines() {
				switch {
				case strings.HasPrefix(l, "1:"):
					c1 = append(c1, l[2:])
				case strings.HasPrefix(l, "2:"):
					c2 = append(c2, l[2:])
				}
			}
			if len(c1) < 2 || c1[1] != "STARTTLS" || !tc.split && len(c1) != 2 {
				t.Fatalf("connection 1 got %q", c1)
			}
			for _, l := range c1[2:] { // only the TLS ClientHello may follow
				if !strings.HasPrefix(l, "\x16\x03") && smtpVerb(l) {
					t.Fatalf("plain-text command after STARTTLS: %q", l)
				}
			}
			if len(c2) < 2 || !strings.HasPrefix(c2[1], "MAIL FROM") || strings.Contains(strings.Join(c2, "|"), "STARTTLS") {
				t.Fatalf("connection 2 got %q", c2)
			}
			waitFor(t, "recorded attempt", 5*time.Second, func() bool {
				qe, _ := te.entry(id)
				return qe.Rcpts[0].Attempts == 1
			})
			if qe, _ := te.entry(id); qe.Rcpts[0].Status != storage.RcptPending || qe.Rcpts[0].LastCode != 451 {
				t.Fatalf("recipient %+v", qe.Rcpts[0])
			}
		})
	}
}

// RELIABILITY #14: whatever line endings and dots the stored message has,
// the wire carries canonical CRLF, dot-stuffed, one transaction.
func TestCanonicalDataOnTheWire(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	raw := newRawMX(t, ls[0], simpleSMTP("PIPELINING", "8BITMIME"))
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e, _ := te.start(te.config(port))
	body := "Subject: s\n\nline1\n.\nline2\r.\r\nline3\n.\r\nMAIL FROM:<evil@x>\r\n\r\n.\r\nRCPT TO:<victim@x>\rlast"
	te.submit(e, "alice@here.test", []string{"bob@far.test"}, body)
	te.waitQueueEmpty(10 * time.Second)
	want := "Subject: s\r\n\r\nline1\r\n..\r\nline2\r\n..\r\nline3\r\n..\r\nMAIL FROM:<evil@x>\r\n\r\n..\r\nRCPT TO:<victim@x>\r\nlast\r\n.\r\n"
	d := raw.datas()
	if len(d) != 1 || string(d[0]) != want {
		t.Fatalf("wire data %q\nwant %q", d, want)
	}
	mails := 0
	for _, l := range raw.lines() {
		if strings.Contains(l, "MAIL FROM") {
			mails++
		}
	}
	if mails != 1 {
		t.Fatalf("%d MAIL commands", mails)
	}
}

// RFC 2920: with PIPELINING, MAIL, RCPTs and DATA leave in one write;
// without it, each command waits for its reply.
func TestPipelining(t *testing.T) {
	t.Parallel()
	for _, offer := range []bool{true, false} {
		te := newEnv(t)
		port, ls := listenSame(t, "127.0.0.2")
		var together atomic.Bool
		var early atomic.Bool
		newRawMX(t, ls[0], func(c *rawConn) {
			c.send("220 raw.test ESMTP\r\n")
			c.line()
			if offer {
				c.send("250-raw.test\r\n250 PIPELINING\r\n")
			} else {
				c.send("250-raw.test\r\n250 8BITMIME\r\n")
			}
			c.line() // MAIL
			time.Sleep(100 * time.Millisecond)
			buffered := c.br.Buffered()
			if offer {
				peek, _ := c.br.Peek(buffered)
				together.Store(strings.Count(string(peek), "RCPT TO") == 2 && strings.HasSuffix(string(peek), "DATA\r\n"))
				c.send("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
				c.line()
				c.line()
				c.line()
			} else {
				early.Store(buffered > 0)
				c.send("250 ok\r\n")
				for i := 0; i < 3; i++ {
					c.line()
					time.Sleep(30 * time.Millisecond)
					early.Store(early.Load() || c.br.Buffered() > 0)
					if i < 2 {
						c.send("250 ok\r\n")
					} else {
						c.send("354 go\r\n")
					}
				}
			}
			c.readData()
			c.send("250 queued\r\n")
			c.line()
			c.send("221 bye\r\n")
		})
		te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
		e, _ := te.start(te.config(port))
		te.submit(e, "alice@here.test", []string{"a@far.test", "b@far.test"}, testBody)
		te.waitQueueEmpty(10 * time.Second)
		if offer && !together.Load() {
			t.Error("PIPELINING offered but commands not sent in one group")
		}
		if !offer && early.Load() {
			t.Error("commands sent before their replies without PIPELINING")
		}
	}
}

// RFC 1870: a message over the remote's SIZE fails at once, before MAIL.
// RFC 6531: non-ASCII addresses need SMTPUTF8 at the remote; the DSN is
// then an RFC 6533 global one.
func TestRemoteLimits(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServerWith(t, nil, func(m *mxServer) {
		m.srv.MaxMessageBytes = 50
		m.srv.EnableSMTPUTF8 = false
	}, ls...)
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e, _ := te.start(te.config(port))
	big := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	te.submit(e, "alice@here.test", []string{"bøb@far.test"}, "Subject: x\r\n\r\nhi\r\n")
	te.waitQueueEmpty(10 * time.Second)
	in := te.inbox(te.alice)
	if len(in) != 2 {
		t.Fatalf("%d DSNs", len(in))
	}
	statuses := map[string]string{}
	for _, m := range in {
		d := parseDSN(t, m)
		for a, r := range d.recipients {
			statuses[a] = r.Status + " " + d.statusType
		}
	}
	if statuses["bob@far.test"] != "5.3.4 message/delivery-status" || statuses["bøb@far.test"] != "5.6.7 message/global-delivery-status" {
		t.Fatalf("statuses %v", statuses)
	}
	if strings.Contains(te.rendered(big), "MAIL FROM") || len(mx.received()) != 0 {
		t.Fatal("oversized message was offered")
	}
}

// RFC 5321 §4.5.3.2: a remote that never greets is given up after the
// greeting timeout and the next MX is tried; a connection dropped in the
// middle of DATA defers the message, which arrives once on retry.
func TestTimeoutsAndDrops(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2", "127.0.0.3")
	newRawMX(t, ls[0], func(c *rawConn) { time.Sleep(2 * time.Second) })
	var n atomic.Int32
	good := simpleSMTP("8BITMIME")
	raw := newRawMX(t, ls[1], func(c *rawConn) {
		if n.Add(1) > 1 {
			good(c)
			return
		}
		c.send("220 flaky.test\r\n")
		for {
			l, ok := c.line()
			if !ok {
				return
			}
			if strings.TrimSpace(l) == "DATA" {
				c.send("354 go\r\n")
				c.br.ReadString('\n') // one line of the body, then hang up
				return
			}
			c.send("250 ok\r\n")
		}
	})
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "far.test. MX 20 mx2.far.test.",
		"mx1.far.test. A 127.0.0.2", "mx2.far.test. A 127.0.0.3")
	cfg := te.config(port)
	cfg.Timeouts.Greeting = 300 * time.Millisecond
	e, _ := te.start(cfg)
	id := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	te.waitQueueEmpty(15 * time.Second)
	if d := raw.datas(); len(d) != 1 {
		t.Fatalf("%d complete copies", len(d))
	}
	tr := te.sink.Transcripts(id)
	if len(tr) != 2 {
		t.Fatalf("%d transcripts:\n%s", len(tr), te.rendered(id))
	}
	if a := tr[0].Addresses; len(a) != 2 || !strings.Contains(a[0].Error, "greeting") || !strings.Contains(tr[0].Outcome, "deferred") {
		t.Fatalf("attempt 1 %+v / %s", a, tr[0].Outcome)
	}
	if len(te.inbox(te.alice)) != 0 {
		t.Fatal("DSN for a delivered message")
	}
}

// Only the leader delivers.
func TestOnlyLeaderDelivers(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	var leader atomic.Bool
	cfg := te.config(port)
	cfg.IsLeader = leader.Load
	e, _ := te.start(cfg)
	id := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	time.Sleep(500 * time.Millisecond)
	if qe, _ := te.entry(id); len(mx.received()) != 0 || qe.Rcpts[0].Attempts != 0 {
		t.Fatal("a follower delivered")
	}
	leader.Store(true)
	te.waitQueueEmpty(5 * time.Second)
	if len(mx.received()) != 1 {
		t.Fatal("not delivered after becoming leader")
	}
}

func smtpVerb(l string) bool {
	for _, v := range []string{"EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "AUTH", "QUIT"} {
		if strings.HasPrefix(strings.ToUpper(l), v) {
			return true
		}
	}
	return false
}

// RELIABILITY #20: an envelope address carrying CR, LF or angle brackets
// never reaches the wire as a command or a MAIL/RCPT parameter.
func TestHostileEnvelopeNeverOnTheWire(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	raw := newRawMX(t, ls[0], simpleSMTP("PIPELINING"))
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e, _ := te.start(te.config(port))
	te.submit(e, "x@here.test> RET=FULL", []string{"bob@far.test"}, testBody)
	te.submit(e, "alice@here.test", []string{"bob@far.test>\r\nRSET", "eve@far.test\r\nDATA"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	for _, l := range raw.lines() {
		if strings.Contains(l, "RET=FULL") || strings.HasSuffix(l, ":RSET") || strings.HasSuffix(l, ":DATA") || strings.Contains(l, "bob@far.test>") {
			t.Fatalf("hostile envelope on the wire: %q", raw.lines())
		}
	}
	if n := len(raw.datas()); n != 0 {
		t.Fatalf("%d messages sent", n)
	}
	// alice is told about both recipients; the bad sender gets nothing.
	in := te.inbox(te.alice)
	if len(in) != 1 || len(parseDSN(t, in[0]).recipients) != 2 {
		t.Fatalf("%d DSNs", len(in))
	}
}

// A smarthost on implicit TLS (RFC 8314 §3.3, port 465).
func TestSmarthostImplicitTLS(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.6")
	tlsCfg, pool := testCA(t, "smart.test")
	mx := newMXServerWith(t, nil, func(m *mxServer) {
		m.authUser, m.authPass = "relayuser", "pw"
		m.srv.AllowInsecureAuth = true // the listener itself is TLS
	}, tls.NewListener(ls[0], tlsCfg))
	te.dns.add(t, "smart.test. A 127.0.0.6")
	cfg := te.config(1)
	cfg.RootCAs = pool
	cfg.Smarthosts = map[string]Smarthost{"": {Host: "smart.test", Port: port, TLS: TLSImplicit, Username: "relayuser", Password: "pw"}}
	e, _ := te.start(cfg)
	id := te.submit(e, "alice@here.test", []string{"bob@elsewhere.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	if got := mx.received(); len(got) != 1 || got[0].User != "relayuser" {
		t.Fatalf("received %+v", got)
	}
	tr := te.sink.Transcripts(id)[0]
	if !strings.HasPrefix(tr.TLS, "TLS1.3 ") || !strings.Contains(tr.TLS, "verified=true") || strings.Contains(tr.Render(), "STARTTLS") {
		t.Fatalf("transcript:\n%s", tr.Render())
	}
}

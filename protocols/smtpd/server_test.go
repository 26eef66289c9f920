package smtpd

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// A panic in a session is contained: 421 to that client, counted, and the
// server goes on serving.
func TestPanicRecovery(t *testing.T) {
	s, addr, _, _ := startFake(t, Config{})
	c := dialRaw(t, addr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	expect(t, c.cmd("RCPT TO:<panic@example.org>"), "421 4.3.0 ")
	if _, err := c.tryReply(); err != io.EOF {
		t.Fatalf("connection open after a panic: %v", err)
	}
	if n := s.Panics(); n != 1 {
		t.Fatalf("Panics() = %d, want 1", n)
	}
	c = dialRaw(t, addr)
	c.greet()
	expect(t, c.cmd("NOOP"), "250 ")
}

// Close drops every connection (idle, mid-DATA, TLS) and leaves no
// goroutine behind.
func TestCloseNoLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	tlsConf := testCert(t)
	fd := &fakeDeliverer{}
	s := New(Config{Hostname: "mx.example.org", Deliverer: fd, TLSConfig: tlsConf})
	s2 := New(Config{Hostname: "mx.example.org", Deliverer: fd, TLSConfig: tlsConf, Mode: ModeSubmissions})
	_, addr, done := serveOn(t, s, false)
	_, addr2, done2 := serveOn(t, s2, true)

	idle := dialRaw(t, addr)
	idle.greet()
	mid := dialRaw(t, addr)
	mid.greet()
	expect(t, mid.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	expect(t, mid.cmd("RCPT TO:<bob@example.org>"), "250 ")
	expect(t, mid.cmd("DATA"), "354 ")
	mid.send("Subject: unfinished\r\n\r\nhalf")
	st := dialRaw(t, addr)
	st.greet()
	st.startTLS()
	tc, err := tls.Dial("tcp", addr2, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	imp := &rawClient{t: t, c: tc, br: bufio.NewReader(tc)}
	imp.greet()
	time.Sleep(50 * time.Millisecond)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []<-chan error{done, done2} {
		select {
		case err := <-d:
			if err != nil {
				t.Fatalf("Serve returned %v after Close", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return")
		}
	}
	for _, c := range []*rawClient{idle, mid, st, imp} {
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c.br); err != nil && !isClosedErr(err) {
			t.Fatalf("client read after Close: %v", err)
		}
		c.c.Close()
	}
	if len(fd.messages()) != 0 {
		t.Fatal("unfinished message delivered")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l); err != ErrServerClosed {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// Client-supplied HELO and recipient text cannot break the trace field.
func TestReceivedSanitizes(t *testing.T) {
	_, addr, fd, _ := startFake(t, Config{})
	c := dialRaw(t, addr)
	expect(t, c.reply(), "220 ")
	expect(t, c.cmd("EHLO evil\x0b(x)[y];\"z\"\\\x7f\xff"), "250")
	expect(t, c.cmd("MAIL FROM:<a@remote.example>"), "250 ")
	expect(t, c.cmd(`RCPT TO:<"we ird>;(x)"@example.org>`), "250 ")
	expect(t, c.cmd("DATA"), "354 ")
	c.send("Subject: s\r\n\r\nb\r\n.\r\n")
	expect(t, c.reply(), "250 ")
	tr := fd.messages()[0].env.Trace
	lines := strings.Split(strings.TrimSuffix(tr, "\r\n"), "\r\n")
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\n\x0b\x7f") || !utf8.ValidString(l) || i > 0 && !strings.HasPrefix(l, "\t") {
			t.Fatalf("bad trace line %q in %q", l, tr)
		}
	}
	if !strings.HasPrefix(tr, "Received: from evil__x__y___z____ ([127.0.0.1])") ||
		!strings.Contains(tr, "for <we_ird___x_@example.org>;") {
		t.Fatalf("trace %q", tr)
	}
}

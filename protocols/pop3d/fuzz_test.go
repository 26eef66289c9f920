package pop3d

import (
	"bufio"
	"bytes"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// FuzzCommand: the command parser never panics, and what it accepts has
// the shape the dispatcher relies on (RELIABILITY #41).
func FuzzCommand(f *testing.F) {
	for _, s := range []string{
		"CAPA", "USER alice@example.test", "PASS pass word", "AUTH", "AUTH PLAIN", "AUTH PLAIN AGFsaWNlAHB3",
		"AUTH PLAIN =", "*", "STLS", "STAT", "LIST", "LIST 1", "UIDL", "UIDL 2", "RETR 1", "TOP 1 10", "DELE 1",
		"RSET", "NOOP", "QUIT", "APOP alice c4c9334bac560ecc979e58001b3e22fb", "retr 99999999999", "TOP 1 -1",
		"RETR 0", "RETR +1", "", " ", "STAT ", "\x00", "RETR\t1", "ÜSER x", strings.Repeat("A", 300),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parseCommand(line)
		if err != nil {
			return
		}
		if cmd.name == "" || len(cmd.name) > maxKeyword || strings.ToUpper(cmd.name) != cmd.name || strings.ContainsAny(line, "\r\n\x00") {
			t.Fatalf("parseCommand(%q) accepted %+v", line, cmd)
		}
		if want := strings.ToUpper(line[:len(cmd.name)]); want != cmd.name {
			t.Fatalf("keyword %q from %q", cmd.name, line)
		}
		if len(line) > len(cmd.name) && line[len(cmd.name)+1:] != cmd.rest {
			t.Fatalf("rest %q from %q", cmd.rest, line)
		}
		if got := strings.Join(cmd.args, " "); got != strings.Join(strings.Fields(cmd.rest), " ") {
			t.Fatalf("args %q from %q", cmd.args, line)
		}
		if sp, ok := lookup(cmd.name); ok && sp.run == nil {
			t.Fatalf("%s has no handler", cmd.name)
		}
		for _, a := range cmd.args {
			if n, ok := parseDecimal(a); ok && n != ^uint64(0) && strconv.FormatUint(n, 10) != strings.TrimLeft(a, "0") && n != 0 {
				t.Fatalf("parseDecimal(%q) = %d", a, n)
			}
		}
	})
}

// FuzzSession feeds arbitrary client input to a live session over a pipe:
// no panic, no hang, no lock left behind, and no message deleted without
// QUIT (RELIABILITY #8, #41).
func FuzzSession(f *testing.F) {
	login := "USER " + testUser + "\r\nPASS " + testPassword + "\r\n"
	for _, s := range []string{
		login + "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nRSET\r\nDELE 2\r\nLIST 2\r\nNOOP\r\nQUIT\r\n",
		login + "DELE 1\r\nDELE 2\r\n",
		"AUTH PLAIN " + plain("", testUser, testPassword) + "\r\nRETR 3\r\nQUIT\r\n",
		"AUTH PLAIN\r\n" + plain("", testUser, testPassword) + "\r\nTOP 1 0\r\nQUIT\r\n",
		"CAPA\r\nAUTH\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN !!\r\nAUTH PLAIN AAA=\r\n",
		"STLS\r\nCAPA\r\n", "APOP a b\r\nRETR 1\r\nQUIT\r\n",
		login + "RETR 0\r\nRETR 99999999999\r\nTOP 1 -1\r\nRETR x\r\nLIST 9\r\n",
		"\x00\xff\r\n\n\n.\r\n", strings.Repeat("X", 300) + "\r\nNOOP\r\n", "QUIT\r\n",
	} {
		f.Add(s)
	}
	tlsConfig := testTLSConfig(f)
	f.Fuzz(func(t *testing.T, in string) {
		fake := newFake()
		srv := New(Config{Hostname: "fuzz", TLSConfig: tlsConfig, AllowInsecureAuth: true, Backend: fake,
			IdleTimeout: 2 * time.Second, AuthFailureDelay: -1, Logger: slog.New(slog.DiscardHandler)})
		conn := &scriptConn{script: strings.NewReader(in)}
		if !srv.addConn(conn) {
			t.Fatal("server closed")
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.handle(conn, false)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session did not end on input %q", in)
		}
		reply := conn.out.Bytes()
		srv.Close()
		if srv.Panics() != 0 {
			t.Fatalf("panic on input %q", in)
		}
		if fake.isLocked(testUser) {
			t.Fatalf("maildrop left locked by %q", in)
		}
		if len(fake.deleteCalls()) > 0 && !strings.Contains(strings.ToUpper(in), "QUIT") {
			t.Fatalf("messages deleted without QUIT: %q", in)
		}
		if !bytes.Contains(reply, []byte("begin TLS")) && bytes.Contains(bytes.ReplaceAll(reply, []byte("\r\n"), nil), []byte("\n")) {
			t.Fatalf("bare LF in replies to %q: %q", in, reply)
		}
	})
}

// FuzzWriteMessage: RETR and TOP output is CRLF-only, correctly stuffed,
// never terminated early, and un-stuffs to the normalised message.
func FuzzWriteMessage(f *testing.F) {
	for _, m := range append(testMessages, "", ".", "\r", "a\r\n.\r\nb", "\n.\n", "\r\n.\r", "x\r\r\n.\r\r\n") {
		f.Add(m, int8(-1))
		f.Add(m, int8(1))
	}
	f.Fuzz(func(t *testing.T, msg string, lines int8) {
		var out bytes.Buffer
		w := bufio.NewWriterSize(&out, 64)
		if err := writeMessage(w, iotest.HalfReader(strings.NewReader(msg)), int64(lines)); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		got := out.String()
		if lines < 0 {
			checkRendered(t, msg, got)
			return
		}
		if strings.Contains("\r\n"+got, "\r\n.\r\n") || strings.Contains(strings.ReplaceAll(got, "\r\n", ""), "\n") {
			t.Fatalf("TOP %d of %q: bad output %q", lines, msg, got)
		}
		back, ok := unstuff(got)
		if !ok || !strings.HasPrefix(normalizeCRLF(msg), back) {
			t.Fatalf("TOP %d of %q = %q, not a prefix of the message", lines, msg, got)
		}
	})
}

// scriptConn is the server end of a connection whose client sends a script
// and then closes its side; replies are collected. Deadlines never fire:
// every read returns at once.
type scriptConn struct {
	script *strings.Reader
	out    bytes.Buffer
	closed bool
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.script.Read(p)
}

func (c *scriptConn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.out.Write(p)
}

func (c *scriptConn) Close() error        { c.closed = true; return nil }
func (c *scriptConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 110} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

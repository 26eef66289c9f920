package pop3d

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// testTLSConfig makes a self-signed certificate for 127.0.0.1.
func testTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pop.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"pop.test", "localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type testServer struct {
	srv        *Server
	fake       *fakeBackend
	plain, tls string // listener addresses
	logs       *syncBuffer
	panicsOK   bool // the test provokes panics on purpose
}

// startServer runs a server with a plain (STLS) and an implicit-TLS
// listener on loopback. By default plaintext auth is allowed and failed
// logins are not delayed; edit adjusts the config.
func startServer(t *testing.T, edit func(*Config)) *testServer {
	t.Helper()
	ts := &testServer{fake: newFake(), logs: &syncBuffer{}}
	cfg := Config{Hostname: "pop.test", TLSConfig: testTLSConfig(t), AllowInsecureAuth: true,
		IdleTimeout: 10 * time.Second, AuthFailureDelay: -1, Backend: ts.fake,
		Logger: slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if edit != nil {
		edit(&cfg)
	}
	ts.srv = New(cfg)
	ts.plain = ts.listen(t, false)
	if cfg.TLSConfig != nil {
		ts.tls = ts.listen(t, true)
	}
	t.Cleanup(func() {
		ts.srv.Close()
		if n := ts.srv.Panics(); n != 0 && !ts.panicsOK {
			t.Errorf("%d session panics; log:\n%s", n, ts.logs)
		}
	})
	return ts
}

func (ts *testServer) listen(t *testing.T, implicitTLS bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		var err error
		if implicitTLS {
			err = ts.srv.ServeTLS(l)
		} else {
			err = ts.srv.Serve(l)
		}
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	return l.Addr().String()
}

// client speaks POP3 over a raw connection.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dial connects to a plain listener and reads the greeting.
func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, c)
	cl.expect("+OK ")
	return cl
}

// dialTLS connects to the implicit-TLS listener and reads the greeting.
func dialTLS(t *testing.T, addr string) *client {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, c)
	cl.expect("+OK ")
	return cl
}

func newClient(t *testing.T, c net.Conn) *client {
	c.SetDeadline(time.Now().Add(15 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// starttls sends STLS (plus any pipelined bytes) and completes the handshake.
func (c *client) starttls(pipelined string) {
	c.t.Helper()
	c.write("STLS\r\n" + pipelined)
	c.expect("+OK")
	if c.r.Buffered() != 0 {
		c.t.Fatalf("server sent %d bytes after the STLS +OK", c.r.Buffered())
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake after STLS: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	c.conn.SetDeadline(time.Now().Add(15 * time.Second))
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// line reads one reply line, which must end in CRLF.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("reply line without CRLF: %q", l)
	}
	if len(l) > 512 {
		c.t.Fatalf("reply line of %d octets, RFC 2449 §4 allows 512", len(l))
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

// cmd sends a command and checks the first reply line.
func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.expect(prefix)
}

// multi reads the body of a multi-line reply, un-stuffing dots.
func (c *client) multi() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if l == "." {
			return out
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		out = append(out, l)
	}
}

// multiRaw reads a multi-line reply body byte for byte, through ".\r\n".
func (c *client) multiRaw() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		b.WriteString(l)
		if l == ".\r\n" {
			return b.String()
		}
	}
}

// closed asserts that the server has closed the connection.
func (c *client) closed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("connection still open, got %q", l)
	}
}

func (c *client) login(user, password string) {
	c.t.Helper()
	c.cmd("USER "+user, "+OK")
	c.cmd("PASS "+password, "+OK")
}

func plain(authz, authc, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + authc + "\x00" + password))
}

// waitNoSessions fails if goroutines of this package outlive the servers
// (STYLE habit 6).
func waitNoSessions(t *testing.T) {
	t.Helper()
	var stacks string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "pop3d.(*Server)") && !strings.Contains(stacks, "pop3d.(*session)") {
			return
		}
	}
	t.Fatalf("pop3d goroutines still running:\n%s", stacks)
}

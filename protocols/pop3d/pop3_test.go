package pop3d

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/big"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend is an in-memory maildrop store.
type fakeBackend struct {
	mu      sync.Mutex
	users   map[string]string
	mail    map[string][]string // user → messages
	locked  map[string]bool
	deleted map[string][]uint32
}

func newFake() *fakeBackend {
	return &fakeBackend{
		users: map[string]string{"alice@example.test": "pw"},
		mail: map[string][]string{"alice@example.test": {
			"Subject: one\r\n\r\nfirst body\r\n.leading dot\r\n",
			"Subject: two\r\nX-A: b\r\n\r\nl1\r\nl2\r\nl3\r\n",
			"Subject: bare\n\nlf only\n..two dots\n",
		}},
		locked: map[string]bool{}, deleted: map[string][]uint32{},
	}
}

func (f *fakeBackend) Login(ctx context.Context, user, pw string, _ net.Addr) (Maildrop, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if want, ok := f.users[user]; !ok || want != pw {
		return nil, ErrAuthFailed
	}
	if f.locked[user] {
		return nil, ErrInUse
	}
	f.locked[user] = true
	return &fakeDrop{f: f, user: user}, nil
}

type fakeDrop struct {
	f    *fakeBackend
	user string
	once sync.Once
}

func (d *fakeDrop) Messages(context.Context) ([]MessageInfo, error) {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	var out []MessageInfo
	for i, m := range d.f.mail[d.user] {
		out = append(out, MessageInfo{ID: uint32(i + 1), UIDL: "uid" + string(rune('a'+i)), Size: int64(len(m))})
	}
	return out, nil
}

func (d *fakeDrop) Open(_ context.Context, m MessageInfo) (io.ReadCloser, error) {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	return io.NopCloser(strings.NewReader(d.f.mail[d.user][m.ID-1])), nil
}

func (d *fakeDrop) Delete(_ context.Context, msgs []MessageInfo) error {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	for _, m := range msgs {
		d.f.deleted[d.user] = append(d.f.deleted[d.user], m.ID)
	}
	return nil
}

func (d *fakeDrop) Close() error {
	d.once.Do(func() {
		d.f.mu.Lock()
		delete(d.f.locked, d.user)
		d.f.mu.Unlock()
	})
	return nil
}

func testCert(t testing.TB) *tls.Config {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

type testServer struct {
	srv          *Server
	plain, tlsLn string
	fake         *fakeBackend
}

func start(t *testing.T, insecure bool) *testServer {
	t.Helper()
	fake := newFake()
	s := New(Config{Hostname: "pop.test", TLSConfig: testCert(t), AllowInsecureAuth: insecure, Backend: fake, IdleTimeout: 5 * time.Second})
	l1, _ := net.Listen("tcp", "127.0.0.1:0")
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(l1)
	go s.ServeTLS(l2)
	t.Cleanup(func() {
		s.Close()
		if s.Panics() != 0 {
			t.Errorf("%d session panics", s.Panics())
		}
	})
	return &testServer{srv: s, plain: l1.Addr().String(), tlsLn: l2.Addr().String(), fake: fake}
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	cl.expect("+OK")
	return cl
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	io.WriteString(c.c, line+"\r\n")
	return c.expect(prefix)
}

func (c *client) multi() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if l == "." {
			return out
		}
		out = append(out, l)
	}
}

func TestSessionCommands(t *testing.T) {
	ts := start(t, true)
	c := dial(t, ts.plain)
	c.cmd("STAT", "-ERR")
	c.cmd("RETR 1", "-ERR")
	c.cmd("USER alice@example.test", "+OK")
	c.cmd("PASS wrong", "-ERR [AUTH]")
	c.cmd("PASS pw", "-ERR") // USER was consumed
	c.cmd("USER alice@example.test", "+OK")
	c.cmd("PASS pw", "+OK maildrop has 3")
	if got := c.cmd("STAT", "+OK"); !strings.HasPrefix(got, "+OK 3 ") {
		t.Errorf("STAT %q", got)
	}
	c.cmd("LIST", "+OK")
	if l := c.multi(); len(l) != 3 || !strings.HasPrefix(l[0], "1 ") {
		t.Errorf("LIST %q", l)
	}
	c.cmd("UIDL 2", "+OK 2 uidb")
	c.cmd("RETR 1", "+OK")
	body := c.multi()
	if strings.Join(body, "\n") != "Subject: one\n\nfirst body\n..leading dot" {
		t.Errorf("RETR 1 dot-stuffing: %q", body)
	}
	c.cmd("RETR 3", "+OK")
	if got := strings.Join(c.multi(), "\n"); got != "Subject: bare\n\nlf only\n...two dots" {
		t.Errorf("RETR bare LF: %q", got)
	}
	c.cmd("TOP 2 1", "+OK")
	if got := strings.Join(c.multi(), "\n"); got != "Subject: two\nX-A: b\n\nl1" {
		t.Errorf("TOP 2 1: %q", got)
	}
	c.cmd("TOP 2 0", "+OK")
	if got := c.multi(); len(got) != 3 {
		t.Errorf("TOP 2 0: %q", got)
	}
	for _, bad := range []string{"RETR 0", "RETR -1", "RETR 99999999999", "RETR x", "RETR 4", "TOP 1 -1", "TOP 1", "DELE", "FOO", "USER x", strings.Repeat("A", 300)} {
		c.cmd(bad, "-ERR")
	}
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 1", "-ERR")
	c.cmd("RETR 1", "-ERR")
	c.cmd("STAT", "+OK 2 ")
	c.cmd("RSET", "+OK")
	c.cmd("DELE 2", "+OK")
	c.cmd("NOOP", "+OK")
	// A second session on the same maildrop is refused while this one holds it.
	c2 := dial(t, ts.plain)
	c2.cmd("USER alice@example.test", "+OK")
	c2.cmd("PASS pw", "-ERR [IN-USE]")
	c.cmd("QUIT", "+OK")
	ts.fake.mu.Lock()
	del := ts.fake.deleted["alice@example.test"]
	ts.fake.mu.Unlock()
	if len(del) != 1 || del[0] != 2 {
		t.Fatalf("deleted at QUIT: %v", del)
	}
}

// RELIABILITY #8: a session that dies before QUIT deletes nothing.
func TestNoDeleteWithoutQuit(t *testing.T) {
	ts := start(t, true)
	c := dial(t, ts.plain)
	c.cmd("USER alice@example.test", "+OK")
	c.cmd("PASS pw", "+OK")
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 2", "+OK")
	c.c.Close()
	time.Sleep(100 * time.Millisecond)
	c2 := dial(t, ts.plain) // the lock is released too
	c2.cmd("USER alice@example.test", "+OK")
	c2.cmd("PASS pw", "+OK maildrop has 3")
	ts.fake.mu.Lock()
	defer ts.fake.mu.Unlock()
	if len(ts.fake.deleted["alice@example.test"]) != 0 {
		t.Fatal("messages deleted without QUIT")
	}
}

func TestAuthPlainAndInsecure(t *testing.T) {
	ts := start(t, false)
	c := dial(t, ts.plain)
	c.cmd("USER alice@example.test", "-ERR [AUTH]")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice@example.test\x00pw")), "-ERR [AUTH]")
	io.WriteString(c.c, "CAPA\r\n")
	c.expect("+OK")
	if caps := strings.Join(c.multi(), " "); !strings.Contains(caps, "STLS") || strings.Contains(caps, "USER") {
		t.Errorf("CAPA before TLS: %s", caps)
	}
	// STLS with a pipelined command: the command must not run in TLS.
	io.WriteString(c.c, "STLS\r\nCAPA\r\n")
	c.expect("+OK")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = &client{t: t, c: tc, r: bufio.NewReader(tc)}
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	c.cmd("NOOP", "-ERR") // not logged in; and no stray CAPA answer before it
	plain := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	c.cmd("AUTH PLAIN !!!", "-ERR invalid base64")
	c.cmd("AUTH PLAIN "+plain("bob\x00alice@example.test\x00pw"), "-ERR [AUTH]")
	c.cmd("AUTH PLAIN", "+")
	c.cmd("*", "-ERR")
	c.cmd("AUTH PLAIN "+strings.Repeat("A", 20000), "-ERR")
	c.cmd("AUTH PLAIN", "+")
	c.cmd(plain("\x00alice@example.test\x00pw"), "+OK")
	c.cmd("QUIT", "+OK")

	// Implicit TLS listener.
	conn, err := tls.Dial("tcp", ts.tlsLn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c3 := &client{t: t, c: conn, r: bufio.NewReader(conn)}
	c3.expect("+OK")
	c3.cmd("USER alice@example.test", "+OK")
	c3.cmd("PASS pw", "+OK")
}

func TestErrorLimitAndClose(t *testing.T) {
	ts := start(t, true)
	c := dial(t, ts.plain)
	for i := 0; i < 19; i++ {
		c.cmd("BOGUS", "-ERR")
	}
	io.WriteString(c.c, "BOGUS\r\n")
	c.expect("-ERR")
	c.expect("-ERR too many errors")
	if _, err := c.r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after the error limit")
	}
	// Close ends open sessions and leaves no goroutines behind.
	before := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		dial(t, ts.plain)
	}
	ts.srv.Close()
	time.Sleep(100 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("goroutines: %d before, %d after Close", before, after)
	}
}

func TestRealClients(t *testing.T) {
	ts := start(t, false)
	_, tport, _ := net.SplitHostPort(ts.tlsLn)
	_, pport, _ := net.SplitHostPort(ts.plain)
	if py, err := exec.LookPath("python3"); err == nil {
		out, err := exec.Command(py, "-c", `
import poplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = poplib.POP3("127.0.0.1", int(sys.argv[1])); c.stls(context=ctx)
c.user("alice@example.test"); c.pass_("pw")
print("stat", c.stat()); print("uidl", c.uidl()[1])
r, lines, n = c.retr(1); print("retr", lines)
r, lines, n = c.top(2, 1); print("top", lines)
c.dele(3); c.quit()
s = poplib.POP3_SSL("127.0.0.1", int(sys.argv[2]), context=ctx)
s.user("alice@example.test"); s.pass_("pw"); print("ssl", s.stat()); s.quit()
`, pport, tport).CombinedOutput()
		if err != nil {
			t.Fatalf("poplib: %v\n%s", err, out)
		}
		for _, want := range []string{"stat (3,", "b'2 uidb'", "b'.leading dot'", "top [b'Subject: two', b'X-A: b', b'', b'l1']", "ssl (3,"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("poplib output lacks %q:\n%s", want, out)
			}
		}
	}
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(curl, "-sSk", "pop3s://127.0.0.1:"+tport+"/2", "-u", "alice@example.test:pw").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Subject: two") {
			t.Errorf("curl RETR: %v %q", err, out)
		}
		out, err = exec.Command(curl, "-sSk", "--ssl-reqd", "pop3://127.0.0.1:"+pport+"/", "-u", "alice@example.test:pw").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "1 ") {
			t.Errorf("curl LIST: %v %q", err, out)
		}
		out, _ = exec.Command(curl, "-sSk", "--ssl-reqd", "pop3://127.0.0.1:"+pport+"/", "-u", "alice@example.test:nope").CombinedOutput()
		if !strings.Contains(string(out), "denied") && !strings.Contains(string(out), "Login") && !strings.Contains(string(out), "curl:") {
			t.Errorf("curl with a bad password: %q", out)
		}
	}
}

// FuzzSession feeds arbitrary client input to a live session.
func FuzzSession(f *testing.F) {
	for _, s := range []string{"USER alice@example.test\r\nPASS pw\r\nSTAT\r\nLIST\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nRSET\r\nUIDL\r\nQUIT\r\n",
		"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nRETR 3\r\nQUIT\r\n", "CAPA\r\nAUTH\r\nAUTH PLAIN\r\n*\r\n", "\x00\xff\r\n\n\n.\r\n"} {
		f.Add(s)
	}
	fake := newFake()
	srv := New(Config{Hostname: "fuzz", AllowInsecureAuth: true, Backend: fake, IdleTimeout: time.Second})
	f.Fuzz(func(t *testing.T, in string) {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.handle(a, false)
		}()
		go io.Copy(io.Discard, b)
		b.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(b, in)
		b.Close()
		<-done
		if srv.Panics() != 0 {
			t.Fatalf("panic on %q", in)
		}
	})
}

func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"1", "0", "-1", "999999999", "9999999999", "+1", " 1", "1x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseNumber(s)
		if ok && (n < 0 || len(s) > 9) {
			t.Fatalf("parseNumber(%q) = %d", s, n)
		}
	})
}

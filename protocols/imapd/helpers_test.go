package imapd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

const (
	testUser = "a@example.com"
	testPass = "secret-pw"
)

// env is a running IMAP server over a real single-node Raft store.
type env struct {
	t       testing.TB
	store   *storage.Store
	acct    storage.Account
	srv     *Server
	addr    string // plain (STARTTLS) listener
	tlsAddr string // implicit TLS listener
	tlsCfg  *tls.Config
}

type envOptions struct {
	secure      bool // AllowInsecureAuth false
	appendLimit uint32
	transferred func(ctx context.Context, accountID uint64, from, to storage.Mailbox, msgs []storage.Message)
}

func newEnv(t testing.TB, opts ...envOptions) *env {
	t.Helper()
	var o envOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	st := storetest.New(t)
	acct := storetest.AddAccount(t, st, testUser, testPass)
	e := &env{t: t, store: st, acct: acct, tlsCfg: selfSigned(t)}
	level := slog.LevelWarn
	if os.Getenv("IMAPD_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	e.srv = New(Config{Store: st, TLSConfig: e.tlsCfg, AllowInsecureAuth: !o.secure, Logger: log,
		AppendLimit: o.appendLimit, Transferred: o.transferred})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lt, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr, e.tlsAddr = l.Addr().String(), lt.Addr().String()
	done := make(chan error, 2)
	go func() { done <- e.srv.Serve(l) }()
	go func() { done <- e.srv.ServeTLS(lt) }()
	t.Cleanup(func() {
		if err := e.srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		for i := 0; i < 2; i++ {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve returned %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Serve did not return after Close")
			}
		}
		if n := e.srv.Panics(); n != 0 {
			t.Errorf("%d panics recovered", n)
		}
	})
	return e
}

// selfSigned makes a certificate for 127.0.0.1 and localhost.
func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// client logs in over the plain listener (AllowInsecureAuth).
func (e *env) client(opts ...*imapclient.Options) *imapclient.Client {
	e.t.Helper()
	var o *imapclient.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	c, err := imapclient.DialInsecure(e.addr, o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		e.t.Fatalf("login: %v", err)
	}
	return c
}

// deliver stores a message into the account's INBOX as SMTP would.
func (e *env) deliver(msg string) {
	e.t.Helper()
	b, err := e.store.PutBlob(strings.NewReader(msg))
	if err != nil {
		e.t.Fatal(err)
	}
	defer b.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.store.Deliver(ctx, b, []uint64{e.acct.ID}, time.Now()); err != nil {
		e.t.Fatal(err)
	}
}

// appendMsg appends through storage directly (test set-up).
func (e *env) appendMsg(mailbox, msg string, flags []string, date time.Time) storage.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, _, err := e.store.Append(ctx, e.acct.ID, mailbox, strings.NewReader(msg), flags, date)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// raw is a line-level client for hostile-input tests.
type raw struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (e *env) raw() *raw {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	r := &raw{t: e.t, c: c, br: bufio.NewReader(c)}
	r.expect("* OK")
	return r
}

func (r *raw) send(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatalf("write %q: %v", s, err)
	}
}

// line reads one response line.
func (r *raw) line() string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// expect reads lines until one starts with prefix; it returns all lines.
func (r *raw) expect(prefix string) []string {
	r.t.Helper()
	var lines []string
	for {
		l := r.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, prefix) {
			return lines
		}
	}
}

func (r *raw) login() {
	r.t.Helper()
	r.send("L1 LOGIN " + testUser + " " + testPass + "\r\n")
	if l := r.expect("L1 "); !strings.HasPrefix(l[len(l)-1], "L1 OK") {
		r.t.Fatalf("login: %v", l)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-smtp"
)

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:25", true},
		{"127.3.2.1:2525", true},
		{"[::1]:143", true},
		{"localhost:143", true},
		{"10.0.0.1:25", false},
		{"example.org:25", false},
		{"127.0.0.1", false},
	} {
		if err := checkLoopback(tc.addr); (err == nil) != tc.ok {
			t.Errorf("checkLoopback(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

func TestMessageShape(t *testing.T) {
	for _, size := range []int{1024, 10240, 102400} {
		ms := newMessageSet(size, "t", "a@b.example", 1)
		for i := 0; i < 40; i++ {
			m := ms.message(i, "user1@example.test")
			if d := len(m) - size; d < -size/5-100 || d > size/5+100 {
				t.Fatalf("size %d: message %d has %d bytes", size, i, len(m))
			}
			if !bytes.HasSuffix(m, []byte("\r\n")) || bytes.Contains(bytes.ReplaceAll(m, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatalf("size %d: message %d has bare LF or no final CRLF", size, i)
			}
			for _, l := range strings.Split(string(m), "\r\n") {
				if len(l) > 78 {
					t.Fatalf("line longer than 78: %q", l)
				}
			}
		}
	}
}

// mailSystem is an in-memory IMAP server plus an SMTP server that delivers
// into it, every deliverEvery-th message only if drop is set.
type mailSystem struct {
	smtpAddr, imapAddr string
	delivered          atomic.Int64
}

type literal struct {
	*bytes.Reader
}

func (l literal) Size() int64 { return l.Reader.Size() }

type smtpSession struct {
	sys   *mailSystem
	users map[string]*imapmemserver.User
	rcpt  []string
	drop  bool
}

func (s *smtpSession) Reset()                               { s.rcpt = nil }
func (s *smtpSession) Logout() error                        { return nil }
func (s *smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if _, ok := s.users[to]; !ok {
		return &smtp.SMTPError{Code: 550, Message: "no such user"}
	}
	s.rcpt = append(s.rcpt, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	for _, to := range s.rcpt {
		if s.drop && s.sys.delivered.Load()%2 == 1 {
			s.sys.delivered.Add(1)
			continue // accepted but lost
		}
		if _, err := s.users[to].Append("INBOX", literal{bytes.NewReader(b)}, &imap.AppendOptions{}); err != nil {
			return err
		}
		s.sys.delivered.Add(1)
	}
	return nil
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// startMailSystem starts both servers on 127.0.0.1:0 with users user1..userN.
// With tlsOnly, IMAP refuses LOGIN before STARTTLS (LOGINDISABLED).
func startMailSystem(t *testing.T, n int, tlsOnly, drop bool) *mailSystem {
	t.Helper()
	sys := &mailSystem{}
	mem := imapmemserver.New()
	users := map[string]*imapmemserver.User{}
	for i := 1; i <= n; i++ {
		name := "user" + itoa(i) + "@example.test"
		u := imapmemserver.NewUser(name, "pw")
		if err := u.Create("INBOX", nil); err != nil {
			t.Fatal(err)
		}
		mem.AddUser(u)
		users[name] = u
	}
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		InsecureAuth: !tlsOnly,
		Logger:       log.New(io.Discard, "", 0),
	}
	if tlsOnly {
		opts.TLSConfig = selfSigned(t)
	}
	is := imapserver.New(opts)
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go is.Serve(iln)
	t.Cleanup(func() { is.Close() })

	ss := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &smtpSession{sys: sys, users: users, drop: drop}, nil
	}))
	ss.Domain = "localhost"
	ss.ErrorLog = log.New(io.Discard, "", 0)
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ss.Serve(sln)
	t.Cleanup(func() { ss.Close() })
	sys.smtpAddr, sys.imapAddr = sln.Addr().String(), iln.Addr().String()
	return sys
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

func runOK(t *testing.T, args ...string) []record {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code := run(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("loadgen %v: exit %d\nstdout: %s\nstderr: %s", args, code, out.String(), errb.String())
	}
	if errb.Len() > 0 {
		t.Logf("loadgen %v stderr: %s", args[0], errb.String())
	}
	recs, err := parseResults(&out)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestSMTPThenIMAP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tlsOnly bool
	}{{"plaintext", false}, {"starttls-required", true}} {
		t.Run(tc.name, func(t *testing.T) {
			sys := startMailSystem(t, 5, tc.tlsOnly, false)
			recs := runOK(t, "smtp", "-name", "mem", "-addr", sys.smtpAddr, "-imap-addr", sys.imapAddr,
				"-users", "5", "-conns", "4", "-messages", "60", "-size", "2048", "-per-conn", "3", "-timeout", "20s")
			if len(recs) != 1 {
				t.Fatalf("want 1 RESULT, got %v", recs)
			}
			r := recs[0]
			if r["status"] != "ok" || r["accepted"] != "60" || r["delivered"] != "60" || r["e2e_rate"] == "NA" {
				t.Fatalf("smtp result %v", r) // see stderr of runOK
			}
			if got := sys.delivered.Load(); got != 60 {
				t.Fatalf("server got %d messages, want 60", got)
			}
			recs = runOK(t, "imap", "-name", "mem", "-addr", sys.imapAddr, "-users", "5", "-conns", "5",
				"-duration", "300ms", "-page", "5")
			if len(recs) != 4 {
				t.Fatalf("want 4 RESULT lines, got %v", recs)
			}
			hits := 0.0
			for _, r := range recs {
				if r["status"] != "ok" || r["ops"] == "0" || r["mailbox_msgs"] != "60" {
					t.Errorf("imap result %v", r)
				}
				if v, ok := median([]record{r}, "avg_hits"); ok {
					hits += v
				}
			}
			if hits == 0 {
				t.Errorf("no search found anything: %v", recs)
			}
		})
	}
}

// A server that accepts every message but stores only half must not be
// reported as delivering: the run ends by its timeout with status
// delivery-timeout.
func TestSMTPLostMessagesDetected(t *testing.T) {
	sys := startMailSystem(t, 3, false, true)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"smtp", "-addr", sys.smtpAddr, "-imap-addr", sys.imapAddr,
		"-users", "3", "-messages", "20", "-size", "500", "-timeout", "1500ms", "-poll", "50ms"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	recs, _ := parseResults(&out)
	if len(recs) != 1 || recs[0]["status"] != "delivery-timeout" || recs[0]["delivered"] != "10" || recs[0]["e2e_rate"] != "NA" {
		t.Fatalf("want delivery-timeout with 10 delivered, got %v", recs)
	}
}

func TestIMAPEmptyMailboxRefused(t *testing.T) {
	sys := startMailSystem(t, 2, false, false)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"imap", "-addr", sys.imapAddr, "-users", "2", "-duration", "100ms"}, &out, &errb); code == 0 {
		t.Fatalf("imap bench on empty mailboxes succeeded: %s", out.String())
	}
}

func TestFlagsRejected(t *testing.T) {
	for _, args := range [][]string{
		{"smtp", "-addr", "192.0.2.1:25"},
		{"smtp", "-addr", "127.0.0.1:25", "-conns", "0"},
		{"smtp", "-addr", "127.0.0.1:25", "-messages", "0"},
		{"imap", "-addr", "127.0.0.1:143", "-ops", "fetch-everything"},
		{"bogus"},
		{},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code == 0 {
			t.Errorf("run(%v) succeeded", args)
		}
	}
}

func TestReport(t *testing.T) {
	in := strings.Join([]string{
		"noise",
		"RESULT mode=smtp name=tandem size=1024 conns=10 e2e_rate=300.0 accept_rate=310.0 status=ok",
		"RESULT mode=smtp name=tandem size=1024 conns=10 e2e_rate=500.0 accept_rate=510.0 status=ok",
		"RESULT mode=smtp name=tandem size=1024 conns=10 e2e_rate=400.0 accept_rate=410.0 status=ok",
		"RESULT mode=smtp name=postfix+dovecot size=1024 conns=10 e2e_rate=200.0 accept_rate=250.0 status=ok",
		"RESULT mode=smtp name=maddy size=1024 conns=10 e2e_rate=NA accept_rate=900.0 status=delivery-timeout",
		"RESULT mode=fsync name=tandem messages=500 fsync=500 fdatasync=1000 other=0 per_msg=3.00",
		"RESULT mode=imap name=tandem op=search-body conns=10 ops_rate=50.0 avg_hits=3.0 status=ok",
		"RESULT mode=imap name=dovecot op=search-body conns=10 ops_rate=100.0 avg_hits=3.0 status=ok",
	}, "\n")
	recs, err := parseResults(strings.NewReader(in))
	if err != nil || len(recs) != 8 {
		t.Fatalf("parse: %v %d", err, len(recs))
	}
	var b bytes.Buffer
	writeSMTPTable(&b, table{recs}, []string{"tandem", "postfix+dovecot", "maddy"})
	writeFsyncTable(&b, table{recs}, []string{"tandem", "postfix+dovecot"})
	writeIMAPTable(&b, table{recs}, []string{"tandem", "dovecot", "maddy"})
	got := b.String()
	for _, want := range []string{
		"| 1 KB | 10 | 400 (410) | 200 (250) | failed (delivery-timeout) (900) | 2.00× | – |",
		"| tandem | 500 | 500 | 1000 | 0 | 3.00 |",
		"| postfix+dovecot | not measured |",
		"| search-body | 10 | 50.0 (3.0 hits) | 100 (3.0 hits) | not measured | 0.50× | – |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

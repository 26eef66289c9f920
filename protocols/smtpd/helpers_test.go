package smtpd

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

// testCert makes a self-signed certificate for 127.0.0.1 / localhost.
func testCert(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.example.org"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "mx.example.org"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// testEnv is a real store with accounts, a filter pipeline and servers for
// the three modes on 127.0.0.1.
type testEnv struct {
	t       testing.TB
	dir     string
	st      *storage.Store
	alice   storage.Account // alice@example.org, password "alice-pw"
	bob     storage.Account // bob@example.org
	carol   storage.Account // carol@example.net (second domain)
	mx      *Server
	sub     *Server
	subs    *Server
	mxAddr  string
	subAddr string
	tlsAddr string
}

type envOption func(*Config)

func newTestEnv(t testing.TB, opts ...envOption) *testEnv {
	t.Helper()
	dir := t.TempDir()
	e := storetest.Open(t, dir)
	t.Cleanup(e.Close)
	st := e.Store
	te := &testEnv{t: t, dir: dir, st: st}
	te.alice = storetest.AddAccount(t, st, "alice@example.org", "alice-pw")
	te.bob = storetest.AddAccount(t, st, "bob@example.org", "bob-pw")
	te.carol = storetest.AddAccount(t, st, "carol@example.net", "carol-pw")
	ctx := t.Context()
	if err := st.AddAlias(ctx, "sales@example.org", "alice@example.org", "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAlias(ctx, "info@example.org", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := st.SetCatchAll(ctx, "example.net", "carol@example.net"); err != nil {
		t.Fatal(err)
	}
	pipe := filter.New(filter.Config{Store: st})
	tlsConf := testCert(t)
	mk := func(mode Mode) (*Server, string) {
		cfg := Config{
			Hostname:  "mx.example.org",
			TLSConfig: tlsConf,
			Mode:      mode,
			Deliverer: pipe,
			Auth:      StoreAuth(st),
			Timeout:   20 * time.Second,
		}
		for _, o := range opts {
			o(&cfg)
		}
		s := New(cfg)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			var err error
			if mode == ModeSubmissions {
				err = s.ServeTLS(l)
			} else {
				err = s.Serve(l)
			}
			if err != nil {
				t.Errorf("serve %v: %v", mode, err)
			}
		}()
		t.Cleanup(func() { s.Close() })
		return s, l.Addr().String()
	}
	te.mx, te.mxAddr = mk(ModeMX)
	te.sub, te.subAddr = mk(ModeSubmission)
	te.subs, te.tlsAddr = mk(ModeSubmissions)
	return te
}

// inbox returns the stored messages of the account's INBOX, oldest first.
func (te *testEnv) inbox(a storage.Account) [][]byte {
	te.t.Helper()
	return te.mailbox(a, "INBOX")
}

func (te *testEnv) mailbox(a storage.Account, name string) [][]byte {
	te.t.Helper()
	mb, err := te.st.Mailbox(a.ID, name)
	if err != nil {
		te.t.Fatal(err)
	}
	msgs, err := te.st.Messages(mb.ID)
	if err != nil {
		te.t.Fatal(err)
	}
	var out [][]byte
	for _, m := range msgs {
		f, err := te.st.OpenBlob(m.Blob)
		if err != nil {
			te.t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			te.t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// blobFiles counts message files in the blob store (tmp included).
func (te *testEnv) blobFiles() int {
	te.t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(te.dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// splitStored separates our Received field from the rest of a stored
// message.
func splitStored(t testing.TB, b []byte) (received, rest string) {
	t.Helper()
	s := string(b)
	if !strings.HasPrefix(s, "Received: from ") {
		t.Fatalf("stored message does not start with our Received field: %.200q", s)
	}
	i := strings.Index(s, "\r\n")
	for i >= 0 && i+2 < len(s) && s[i+2] == '\t' {
		j := strings.Index(s[i+2:], "\r\n")
		if j < 0 {
			break
		}
		i = i + 2 + j
	}
	return s[:i+2], s[i+2:]
}

// rawClient speaks SMTP over a plain socket, for what real clients refuse
// to send.
type rawClient struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (r *rawClient) reply() string {
	r.t.Helper()
	var all []string
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("read reply: %v (so far %q)", err, all)
		}
		all = append(all, strings.TrimRight(line, "\r\n"))
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(all, "\n")
		}
	}
}

// tryReply is reply that reports EOF instead of failing.
func (r *rawClient) tryReply() (string, error) {
	line, err := r.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	for len(line) >= 4 && line[3] == '-' {
		next, err := r.br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = next
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (r *rawClient) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// cmd sends one command and returns the last line of its reply.
func (r *rawClient) cmd(format string, args ...any) string {
	r.t.Helper()
	r.send(fmt.Sprintf(format, args...) + "\r\n")
	return lastLine(r.reply())
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// expect fails unless got starts with want.
func expect(t testing.TB, got, want string) {
	t.Helper()
	if !strings.HasPrefix(got, want) {
		t.Fatalf("got reply %q, want %q…", got, want)
	}
}

// greet reads the banner and says EHLO; it returns the whole EHLO reply.
func (r *rawClient) greet() string {
	r.t.Helper()
	expect(r.t, r.reply(), "220 ")
	return r.ehlo()
}

// ehlo says EHLO and returns the whole reply.
func (r *rawClient) ehlo() string {
	r.t.Helper()
	r.send("EHLO client.example.com\r\n")
	full := r.reply()
	expect(r.t, full, "250")
	return full
}

// startTLS upgrades the connection and says EHLO again.
func (r *rawClient) startTLS() {
	r.t.Helper()
	expect(r.t, r.cmd("STARTTLS"), "220 ")
	tc := tls.Client(r.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.c = tc
	r.br = bufio.NewReader(tc)
}

func plainAuth(user, pw string) string {
	return b64("\x00" + user + "\x00" + pw)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

package outbound

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

// ---- DNS ----

// testDNS is an authoritative-looking recursive server on loopback that
// answers from a table.
type testDNS struct {
	addr     string
	mu       sync.Mutex
	rrs      map[string][]dns.RR // "name.|TYPE"
	names    map[string]bool     // names that exist (NODATA rather than NXDOMAIN)
	servfail map[string]bool
	queries  []string
}

func newTestDNS(t *testing.T) *testDNS {
	t.Helper()
	d := &testDNS{rrs: map[string][]dns.RR{}, names: map[string]bool{}, servfail: map[string]bool{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve)}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return d
}

// add takes records in zone-file syntax: "far.test. MX 10 mx1.far.test.".
func (d *testDNS) add(t *testing.T, records ...string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad record %q: %v", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		k := name + "|" + dns.TypeToString[rr.Header().Rrtype]
		d.rrs[k] = append(d.rrs[k], rr)
		d.names[name] = true
	}
}

// fail makes the server answer SERVFAIL for name.
func (d *testDNS) fail(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.servfail[name] = true
	d.names[name] = true
}

func (d *testDNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		d.mu.Lock()
		d.queries = append(d.queries, name+"|"+dns.TypeToString[q.Qtype])
		switch {
		case d.servfail[name]:
			m.Rcode = dns.RcodeServerFailure
		case !d.names[name]:
			m.Rcode = dns.RcodeNameError
		default:
			m.Answer = append(m.Answer, d.rrs[name+"|"+dns.TypeToString[q.Qtype]]...)
		}
		d.mu.Unlock()
	}
	w.WriteMsg(m)
}

// ---- certificates ----

// testCA makes a CA and a server certificate for names, signed by it.
func testCA(t *testing.T, names ...string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: names}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// ---- listeners ----

// listenSame listens on the same port on each IP (the engine dials one
// configured port on every MX address).
func listenSame(t *testing.T, ips ...string) (int, []net.Listener) {
	t.Helper()
	for try := 0; try < 20; try++ {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		ls := []net.Listener{first}
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		if ok {
			return port, ls
		}
		for _, l := range ls {
			l.Close()
		}
	}
	t.Fatal("no common free port")
	return 0, nil
}

// freePortOn finds a port on ip nobody listens on, to be refused.
func freePortOn(t *testing.T, ip string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("%s:%d is in use", ip, port)
	}
	l.Close()
}

// ---- receiving SMTP server (go-smtp) ----

type received struct {
	From  string
	Rcpts []string
	Data  []byte
	TLS   bool
	User  string
	Addr  string // the local address the message came in on
}

// mxServer is a receiving MTA. Its hooks decide replies; nil hooks accept.
type mxServer struct {
	mu       sync.Mutex
	msgs     []received
	conns    int             // sessions (go-smtp starts a new one after STARTTLS)
	remotes  map[string]bool // distinct TCP connections
	rcptHook func(to string) error
	dataHook func(data []byte) error
	readHook func(r io.Reader) ([]byte, error) // replaces reading the whole body
	authUser string
	authPass string
	srv      *smtp.Server
}

func newMXServer(t *testing.T, tlsCfg *tls.Config, ls ...net.Listener) *mxServer {
	t.Helper()
	return newMXServerWith(t, tlsCfg, nil, ls...)
}

// newMXServerWith lets setup change the server before it serves.
func newMXServerWith(t *testing.T, tlsCfg *tls.Config, setup func(*mxServer), ls ...net.Listener) *mxServer {
	t.Helper()
	m := &mxServer{}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		m.mu.Lock()
		m.conns++
		if m.remotes == nil {
			m.remotes = map[string]bool{}
		}
		m.remotes[c.Conn().RemoteAddr().String()] = true
		m.mu.Unlock()
		return &mxSession{m: m, c: c}, nil
	}))
	s.Domain = "mx.test"
	s.TLSConfig = tlsCfg
	s.EnableSMTPUTF8 = true
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	s.ErrorLog = nopLogger{}
	m.srv = s
	if setup != nil {
		setup(m)
	}
	for _, l := range ls {
		go s.Serve(l)
	}
	t.Cleanup(func() { s.Close() })
	return m
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

func (m *mxServer) received() []received {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]received(nil), m.msgs...)
}

func (m *mxServer) connCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.conns
}

func (m *mxServer) tcpCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.remotes)
}

type mxSession struct {
	m     *mxServer
	c     *smtp.Conn
	from  string
	rcpts []string
	user  string
}

func (s *mxSession) AuthMechanisms() []string {
	if s.m.authUser == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *mxSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != s.m.authUser || pass != s.m.authPass {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *mxSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.m.authUser != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if h := s.m.rcptHook; h != nil {
		if err := h(to); err != nil {
			return err
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *mxSession) Data(r io.Reader) error {
	read := io.ReadAll
	if s.m.readHook != nil {
		read = s.m.readHook
	}
	b, err := read(r)
	if err != nil {
		return err
	}
	if h := s.m.dataHook; h != nil {
		if err := h(b); err != nil {
			return err
		}
	}
	_, isTLS := s.c.TLSConnectionState()
	s.m.mu.Lock()
	s.m.msgs = append(s.m.msgs, received{From: s.from, Rcpts: append([]string(nil), s.rcpts...), Data: b,
		TLS: isTLS, User: s.user, Addr: s.c.Conn().LocalAddr().String()})
	s.m.mu.Unlock()
	return nil
}

func (s *mxSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *mxSession) Logout() error { return nil }

func smtpErr(code int, enh smtp.EnhancedCode, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// ---- the engine under test ----

type testEnv struct {
	t     *testing.T
	st    *storage.Store
	dns   *testDNS
	sink  *MemorySink
	alice storage.Account // local sender alice@here.test
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	st := storetest.New(t)
	te := &testEnv{t: t, st: st, dns: newTestDNS(t), sink: &MemorySink{}}
	te.alice = storetest.AddAccount(t, st, "alice@here.test", "alice-pw")
	return te
}

// config is a fast test configuration; tweak it before start.
func (te *testEnv) config(port int) Config {
	return Config{Store: te.st, Hostname: "tandem.test", Resolver: te.dns.addr, Port: port,
		Backoff: []time.Duration{150 * time.Millisecond}, Transcripts: te.sink, PollInterval: 100 * time.Millisecond,
		Timeouts: Timeouts{Connect: 2 * time.Second, Greeting: 5 * time.Second, Command: 5 * time.Second,
			DataInit: 5 * time.Second, DataBlock: 5 * time.Second, DataEnd: 5 * time.Second},
		Logger: testLogger()}
}

func testLogger() *slog.Logger {
	if os.Getenv("OUTBOUND_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start runs an engine until the test ends (or stop is called).
func (te *testEnv) start(cfg Config) (*Engine, func()) {
	e := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			e.Close()
		})
	}
	te.t.Cleanup(stop)
	return e, stop
}

var msgSeq struct {
	mu sync.Mutex
	n  int
}

// submit stores a message and queues it as the SMTP side would.
func (te *testEnv) submit(e *Engine, from string, rcpts []string, body string) string {
	te.t.Helper()
	msgSeq.mu.Lock()
	msgSeq.n++
	id := "Q" + strconv.Itoa(msgSeq.n) + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	msgSeq.mu.Unlock()
	b, err := te.st.PutBlob(strings.NewReader(body))
	if err != nil {
		te.t.Fatal(err)
	}
	defer b.Release()
	env := &filter.Envelope{ID: id, From: from, ClientIP: net.IPv4(192, 0, 2, 1), HELO: "client.test", AuthAccountID: te.alice.ID}
	if err := e.Enqueue(context.Background(), env, rcpts, b); err != nil {
		te.t.Fatal(err)
	}
	return id
}

// inbox reads the messages in an account's INBOX.
func (te *testEnv) inbox(acct storage.Account) []string {
	te.t.Helper()
	mb, err := te.st.Mailbox(acct.ID, "INBOX")
	if err != nil {
		te.t.Fatal(err)
	}
	msgs, err := te.st.Messages(mb.ID)
	if err != nil {
		te.t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		f, err := te.st.OpenBlob(m.Blob)
		if err != nil {
			te.t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out = append(out, string(b))
	}
	return out
}

func (te *testEnv) entry(id string) (storage.QueueEntry, bool) {
	qe, err := te.st.QueueEntry(id)
	if errors.Is(err, storage.ErrNoMessage) {
		return qe, false
	}
	if err != nil {
		te.t.Fatal(err)
	}
	return qe, true
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// queueEmpty waits until the queue holds nothing.
func (te *testEnv) waitQueueEmpty(timeout time.Duration) {
	te.t.Helper()
	waitFor(te.t, "an empty queue", timeout, func() bool {
		q, err := te.st.Queue()
		return err == nil && len(q) == 0
	})
}

// rendered joins every saved transcript of an entry.
func (te *testEnv) rendered(id string) string {
	var b strings.Builder
	for _, t := range te.sink.Transcripts(id) {
		b.WriteString(t.Render())
	}
	return b.String()
}

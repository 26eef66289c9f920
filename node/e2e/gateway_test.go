package e2e

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// backendMX is a company's own mail server behind the gateway: it knows
// its users and refuses others at RCPT.
type backendMX struct {
	users map[string]bool
	mu    sync.Mutex
	msgs  []backendMsg
	rcpts []string // every RCPT it was asked, callouts included
}

type backendMsg struct {
	from  string
	rcpts []string
	data  string
}

type backendSession struct {
	b     *backendMX
	from  string
	rcpts []string
}

func (b *backendMX) NewSession(*smtp.Conn) (smtp.Session, error) { return &backendSession{b: b}, nil }
func (s *backendSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *backendSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.b.mu.Lock()
	s.b.rcpts = append(s.b.rcpts, to)
	s.b.mu.Unlock()
	if !s.b.users[strings.ToLower(to)] {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *backendSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, backendMsg{s.from, append([]string(nil), s.rcpts...), string(b)})
	s.b.mu.Unlock()
	return nil
}
func (s *backendSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *backendSession) Logout() error { return nil }

func (b *backendMX) received() []backendMsg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]backendMsg(nil), b.msgs...)
}

func startBackend(t *testing.T, users ...string) (*backendMX, string) {
	t.Helper()
	b := &backendMX{users: map[string]bool{}}
	for _, u := range users {
		b.users[u] = true
	}
	srv := smtp.NewServer(b)
	srv.Domain = "backend.gw.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b, ln.Addr().String()
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// rcptCode opens an MX session, offers one recipient and returns the SMTP
// code of the reply (250 when accepted).
func rcptCode(t *testing.T, addr, rcpt string) int {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@client.example.org", nil); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt(rcpt, nil)
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return 250
	case errors.As(err, &se):
		return se.Code
	}
	t.Fatalf("RCPT %s: %v", rcpt, err)
	return 0
}

// SPEC M9 / issue 3: two backends, the first down; mail for the gateway
// domain is filtered, then arrives at the second; unknown recipients are
// refused at RCPT with a callout and with a static list; the mail log
// shows the relay.
func TestGatewayMode(t *testing.T) {
	backend, up := startBackend(t, "known@gw.test", "listed@gw.test")
	down := deadAddr(t)
	s := startServer(t, t.TempDir())

	// A gateway domain must be hosted here.
	if out, err := s.cli("domain", "gateway", "gw.test", "--backend", up); err == nil || !strings.Contains(out, "not hosted") {
		t.Fatalf("gateway for an unhosted domain: %v\n%s", err, out)
	}
	if out, err := s.cli("domain", "gateway", "gw.test", "--backend", "nohost"); err == nil || !strings.Contains(out, "HOST:PORT") {
		t.Fatalf("bad backend: %v\n%s", err, out)
	}
	s.mustCLI("domain", "add", "gw.test")
	out := s.mustCLI("domain", "gateway", "gw.test", "--backend", down, "--backend", up, "--verify", "callout")
	if !strings.Contains(out, "gateway domain") {
		t.Fatalf("gateway on: %s", out)
	}
	if l := s.mustCLI("domain", "list"); !strings.Contains(l, down+","+up+" (callout)") {
		t.Fatalf("domain list does not show the gateway:\n%s", l)
	}

	// Callout: the first backend is down, the second answers.
	if code := rcptCode(t, s.addr("smtp"), "ghost@gw.test"); code != 550 {
		t.Fatalf("unknown recipient by callout: %d", code)
	}
	c, err := smtp.Dial(s.addr("smtp"))
	if err != nil {
		t.Fatal(err)
	}
	body := "From: sender@client.example.org\r\nTo: known@gw.test\r\nSubject: through the gateway\r\nMessage-ID: <gw1@client.example.org>\r\n\r\nfiltered, then relayed\r\n"
	if err := c.SendMail("sender@client.example.org", []string{"known@gw.test"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitCond(t, "the second backend receives the mail", 20*time.Second, func() bool {
		got := backend.received()
		return len(got) == 1 && strings.Contains(got[0].data, "filtered, then relayed")
	})
	got := backend.received()[0]
	if got.from != "sender@client.example.org" || strings.Join(got.rcpts, ",") != "known@gw.test" {
		t.Fatalf("backend got %+v", got)
	}
	if !strings.Contains(got.data, "Received: ") {
		t.Fatalf("no trace header added by the gateway:\n%s", got.data)
	}
	var logOut string
	waitCond(t, "the mail log shows the relay", 10*time.Second, func() bool {
		logOut, _ = s.cli("log", "search", "--to", "known@gw.test")
		return strings.Contains(logOut, "gateway relay to "+down+", "+up) && strings.Contains(logOut, "delivered")
	})
	if strings.Contains(logOut, "deliver to mailbox") {
		t.Fatalf("gateway mail was stored locally:\n%s", logOut)
	}

	// Static list: only listed addresses pass; the backend is not asked.
	list := filepath.Join(t.TempDir(), "rcpts.txt")
	if err := os.WriteFile(list, []byte("# valid users\nlisted@gw.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.mustCLI("domain", "gateway", "gw.test", "--backend", down, "--backend", up, "--verify", "list", "--recipients", list)
	backend.mu.Lock()
	asked := len(backend.rcpts)
	backend.mu.Unlock()
	if code := rcptCode(t, s.addr("smtp"), "known@gw.test"); code != 550 {
		t.Fatalf("unlisted recipient: %d", code)
	}
	if code := rcptCode(t, s.addr("smtp"), "Listed@gw.test"); code != 250 {
		t.Fatalf("listed recipient: %d", code)
	}
	backend.mu.Lock()
	if len(backend.rcpts) != asked {
		t.Errorf("list mode asked the backend: %v", backend.rcpts[asked:])
	}
	backend.mu.Unlock()

	// Callout with no backend reachable: a temporary failure, never 550.
	s.mustCLI("domain", "gateway", "gw.test", "--backend", down)
	if code := rcptCode(t, s.addr("smtp"), "anyone@gw.test"); code != 451 {
		t.Fatalf("callout without a backend: %d", code)
	}
	if g := s.mustCLI("domain", "gateway", "gw.test"); !strings.Contains(g, "verify:     callout") {
		t.Fatalf("show:\n%s", g)
	}

	// Off: the domain is an ordinary hosted domain again.
	s.mustCLI("domain", "gateway", "gw.test", "--off")
	if code := rcptCode(t, s.addr("smtp"), "known@gw.test"); code != 550 {
		t.Fatalf("after --off: %d", code)
	}
	if out, err := s.cli("domain", "gateway", "gw.test", "--off"); err == nil || !strings.Contains(out, "not a gateway") {
		t.Fatalf("second --off: %v\n%s", err, out)
	}
}

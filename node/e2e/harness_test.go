// Package e2e starts the real tandem binary and talks to it with real
// clients: Python's smtplib/imaplib/poplib, curl, swaks and Go clients.
package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

var tandemBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-e2e-bin-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755)
	tandemBin = filepath.Join(dir, "tandem")
	build := exec.Command("go", "build", "-o", tandemBin, "github.com/tandemmail/tandem/cmd/tandem")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tandem:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running tandem process.
type server struct {
	t        testing.TB
	data     string
	cmd      *exec.Cmd
	addrs    map[string]string // service name → address
	password string            // first admin's password (first start only)
	mu       sync.Mutex
	out      bytes.Buffer
	exited   chan struct{}
}

var listenerLine = regexp.MustCompile(`^\s+(SMTP \(inbound MX\)|Submission \(STARTTLS\)|Submission \(TLS\)|IMAP \(STARTTLS\)|IMAP \(TLS\)|POP3 \(STLS\)|POP3 \(TLS\)|Web admin \(HTTP\)|Web admin \(HTTPS\))\s+(\S+)$`)

var serviceNames = map[string]string{
	"SMTP (inbound MX)": "smtp", "Submission (STARTTLS)": "submission", "Submission (TLS)": "submissions",
	"IMAP (STARTTLS)": "imap", "IMAP (TLS)": "imaps", "POP3 (STLS)": "pop3", "POP3 (TLS)": "pop3s", "Web admin (HTTP)": "http",
	"Web admin (HTTPS)": "https",
}

// startServer runs `tandem serve` on loopback with every listener on a
// free port and waits until it reports its listeners.
func startServer(t testing.TB, data string, extra ...string) *server {
	t.Helper()
	args := []string{"serve", "--data", data, "--domain", "example.test", "--hostname", "mail.example.test",
		"--smtp-addr", "127.0.0.1:0", "--submission-addr", "127.0.0.1:0", "--submissions-addr", "127.0.0.1:0",
		"--imap-addr", "127.0.0.1:0", "--imaps-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0",
		"--pop3s-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"}
	args = append(args, extra...)
	s := &server{t: t, data: data, addrs: map[string]string{}, exited: make(chan struct{})}
	s.cmd = exec.Command(tandemBin, args...)
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = &lockedWriter{s: s}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.out.WriteString(line + "\n")
			if m := listenerLine.FindStringSubmatch(line); m != nil {
				s.addrs[serviceNames[m[1]]] = m[2]
			}
			if pw, ok := strings.CutPrefix(strings.TrimSpace(line), "Password:"); ok {
				s.password = strings.TrimSpace(pw)
			}
			s.mu.Unlock()
			if strings.HasPrefix(line, "Stop it with") && !signalled {
				signalled = true
				close(ready)
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	select {
	case <-ready:
	case <-s.exited:
		t.Fatalf("tandem exited at start:\n%s", s.output())
	case <-time.After(30 * time.Second):
		s.kill()
		t.Fatalf("tandem did not start in 30 s:\n%s", s.output())
	}
	t.Cleanup(func() { s.stop() })
	return s
}

type lockedWriter struct{ s *server }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.out.Write(p)
}

func (s *server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func (s *server) addr(service string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.addrs[service]
	if !ok {
		s.t.Fatalf("no %s listener in:\n%s", service, s.out.String())
	}
	return a
}

func (s *server) port(service string) string {
	_, p, _ := net.SplitHostPort(s.addr(service))
	return p
}

// kill ends the process with SIGKILL, as a crash would.
func (s *server) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// stop ends the process with SIGTERM (a clean shutdown).
func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		// SIGQUIT makes the Go runtime print every goroutine: the log then
		// shows what the shutdown waits for.
		s.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			s.kill()
		}
		out := s.output()
		if len(out) > 200000 {
			out = out[len(out)-200000:]
		}
		s.t.Errorf("tandem did not stop on SIGTERM within 15 s; its output ends:\n%s", out)
	}
}

// cli runs an admin command against the server's data folder.
func (s *server) cli(args ...string) (string, error) {
	cmd := exec.Command(tandemBin, append([]string{"--data", s.data}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *server) mustCLI(args ...string) string {
	s.t.Helper()
	out, err := s.cli(args...)
	if err != nil {
		s.t.Fatalf("tandem %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// python runs a Python 3 script with arguments and returns its output.
func python(t testing.TB, script string, args ...string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	cmd := exec.Command(py, append([]string{"-c", script}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	return string(out)
}

// sendMX delivers count messages over one SMTP connection to the MX
// listener and reports each Message-ID that got "250".
func sendMX(addr string, conn, count int, rcpt string, acked func(id string)) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		return err
	}
	for i := 0; i < count; i++ {
		id := fmt.Sprintf("<c%02d-m%03d@client.example.org>", conn, i)
		body := fmt.Sprintf("From: sender@client.example.org\r\nTo: %s\r\nSubject: load %d/%d\r\nMessage-ID: %s\r\n\r\n%s\r\n",
			rcpt, conn, i, id, strings.Repeat("durable mail line\r\n", 20))
		if err := c.SendMail("sender@client.example.org", []string{rcpt}, strings.NewReader(body)); err != nil {
			return fmt.Errorf("message %s: %w", id, err)
		}
		acked(id)
	}
	return c.Quit()
}

// plainAuth is SASL PLAIN for the go-smtp client.
func plainAuth(user, pw string) sasl.Client { return sasl.NewPlainClient("", user, pw) }

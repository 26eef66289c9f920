package smtpd

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Python's smtplib against all three ports.
func TestPythonSMTPLib(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	te := newTestEnv(t)
	script, _ := filepath.Abs("testdata/client.py")
	py := func(mode, addr string) string {
		h, p := hostPort(t, addr)
		out, err := run(t, "python3", script, mode, h, p)
		if err != nil {
			t.Fatalf("python %s: %v\n%s", mode, err, out)
		}
		return strings.TrimSpace(out)
	}
	for _, tc := range []struct{ mode, addr, want string }{
		{"mx", te.mxAddr, "OK"},
		{"starttls-plain", te.subAddr, "OK"},
		{"starttls-login", te.subAddr, "OK"},
		{"ssl", te.tlsAddr, "OK"},
		{"badpw", te.subAddr, "CODE 535 5.7.8 Authentication failed\nCODE 535 5.7.8 Authentication failed"},
		{"spoof", te.subAddr, "CODE 553"},
		{"relay", te.mxAddr, "CODE 554"},
		{"noauth", te.subAddr, "CODE 530 5.7.0 Must issue STARTTLS first"},
	} {
		if got := py(tc.mode, tc.addr); got != tc.want {
			t.Errorf("python %s: got %q, want %q", tc.mode, got, tc.want)
		}
	}
	alice, bob := te.inbox(te.alice), te.inbox(te.bob)
	if len(alice) != 1 || len(bob) != 4 {
		t.Fatalf("alice %d (want 1), bob %d (want 4: sales alias + 3 submissions)", len(alice), len(bob))
	}
	_, rest := splitStored(t, alice[0])
	if !strings.HasSuffix(rest, "hello from smtplib\r\n.leading dot\r\n") {
		t.Errorf("stored %q", rest)
	}
}

func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	te := newTestEnv(t)
	eml := filepath.Join(t.TempDir(), "msg.eml")
	body := "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: curl\r\n\r\nhello from curl\r\n"
	if err := os.WriteFile(eml, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := func(args ...string) {
		t.Helper()
		if out, err := run(t, "curl", append([]string{"-sS", "--max-time", "20"}, args...)...); err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
	}
	fails := func(want string, args ...string) {
		t.Helper()
		out, err := run(t, "curl", append([]string{"-sS", "-v", "--max-time", "20"}, args...)...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("curl %v: want failure with %q, got %v\n%s", args, want, err, out)
		}
	}
	ok("smtp://"+te.mxAddr, "--mail-from", "sender@remote.example", "--mail-rcpt", "alice@example.org", "-T", eml)
	ok("smtp://"+te.subAddr, "--ssl-reqd", "-k", "-u", "alice@example.org:alice-pw",
		"--mail-from", "alice@example.org", "--mail-rcpt", "bob@example.org", "-T", eml)
	ok("smtps://"+te.tlsAddr, "-k", "-u", "alice@example.org:alice-pw",
		"--mail-from", "alice@example.org", "--mail-rcpt", "bob@example.org", "-T", eml)
	fails("554 5.7.1", "smtp://"+te.mxAddr, "--mail-from", "x@other.example", "--mail-rcpt", "y@other.example", "-T", eml)
	fails("550 5.1.1", "smtp://"+te.mxAddr, "--mail-from", "x@other.example", "--mail-rcpt", "nobody@example.org", "-T", eml)
	fails("530 5.7.0", "smtp://"+te.subAddr, "--mail-from", "alice@example.org", "--mail-rcpt", "bob@example.org", "-T", eml)
	fails("535 5.7.8", "smtps://"+te.tlsAddr, "-k", "-u", "alice@example.org:nope",
		"--mail-from", "alice@example.org", "--mail-rcpt", "bob@example.org", "-T", eml)
	fails("553 5.7.1", "smtps://"+te.tlsAddr, "-k", "-u", "alice@example.org:alice-pw",
		"--mail-from", "bob@example.org", "--mail-rcpt", "bob@example.org", "-T", eml)
	alice, bob := te.inbox(te.alice), te.inbox(te.bob)
	if len(alice) != 1 || len(bob) != 2 {
		t.Fatalf("alice %d (want 1), bob %d (want 2)", len(alice), len(bob))
	}
	if _, rest := splitStored(t, bob[1]); rest != body {
		t.Errorf("stored %q, want %q", rest, body)
	}
}

func TestSwaks(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Skip("swaks not installed (apt-get install swaks)")
	}
	te := newTestEnv(t)
	swaks := func(args ...string) (string, error) {
		return run(t, "swaks", append([]string{"--timeout", "20", "--helo", "client.example.com",
			"--data", "Subject: swaks\n\nhello from swaks\n"}, args...)...)
	}
	auth := []string{"--auth-user", "alice@example.org", "--auth-password", "alice-pw"}
	for _, tc := range []struct {
		name string
		args []string
		want string // substring of the transcript
		ok   bool
	}{
		{"mx", []string{"--server", te.mxAddr, "--from", "s@remote.example", "--to", "alice@example.org"}, "<-  250 2.0.0 OK queued as", true},
		{"mx pipeline", []string{"--server", te.mxAddr, "--pipeline", "--from", "s@remote.example", "--to", "alice@example.org"}, "250 2.0.0 OK queued as", true},
		{"starttls plain", append([]string{"--server", te.subAddr, "--tls", "--auth", "PLAIN", "--from", "alice@example.org", "--to", "bob@example.org"}, auth...), "250 2.0.0 OK queued as", true},
		{"starttls login", append([]string{"--server", te.subAddr, "--tls", "--auth", "LOGIN", "--from", "alice@example.org", "--to", "bob@example.org"}, auth...), "250 2.0.0 OK queued as", true},
		{"implicit tls", append([]string{"--server", te.tlsAddr, "--tls-on-connect", "--auth", "PLAIN", "--from", "alice@example.org", "--to", "bob@example.org"}, auth...), "250 2.0.0 OK queued as", true},
		{"relay", []string{"--server", te.mxAddr, "--from", "s@remote.example", "--to", "victim@other.example"}, "554 5.7.1", false},
		{"spoof", append([]string{"--server", te.subAddr, "--tls", "--auth", "PLAIN", "--from", "bob@example.org", "--to", "bob@example.org"}, auth...), "553 5.7.1", false},
		{"header spoof", append([]string{"--server", te.subAddr, "--tls", "--auth", "PLAIN", "--from", "alice@example.org", "--to", "bob@example.org",
			"--data", "From: bob@example.org\nSubject: x\n\nspoof\n"}, auth...), "550 5.7.1", false},
		{"no tls on submission", append([]string{"--server", te.subAddr, "--auth", "PLAIN", "--from", "alice@example.org", "--to", "bob@example.org"}, auth...), "", false},
	} {
		out, err := swaks(tc.args...)
		if (err == nil) != tc.ok || !strings.Contains(out, tc.want) {
			t.Errorf("swaks %s: err=%v, want ok=%v and %q in:\n%s", tc.name, err, tc.ok, tc.want, out)
		}
	}
	if a, b := len(te.inbox(te.alice)), len(te.inbox(te.bob)); a != 2 || b != 3 {
		t.Fatalf("alice %d (want 2), bob %d (want 3)", a, b)
	}
}

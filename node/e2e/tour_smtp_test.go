package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestTourSwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed")
	}
	s := startServer(t, t.TempDir())
	s.mustCLI("account", "add", "dave@example.test", "--password", "dave-pw")
	out, err := exec.Command(swaks, "--server", "127.0.0.1:"+s.port("submission"), "--tls", "--auth", "PLAIN",
		"--auth-user", "dave@example.test", "--auth-password", "dave-pw",
		"--from", "dave@example.test", "--to", "dave@example.test", "--header", "Subject: swaks test").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "250 ") {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	// An open-relay probe through the MX port is refused.
	out, _ = exec.Command(swaks, "--server", "127.0.0.1:"+s.port("smtp"), "--from", "a@outside.example",
		"--to", "b@elsewhere.example", "--quit-after", "RCPT").CombinedOutput()
	if !strings.Contains(string(out), "5.7.1") {
		t.Errorf("relay probe not refused with 5.7.1:\n%s", out)
	}
}

// A port in use or a privileged port names the flag to change.
func TestListenErrorsNameTheFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cmd := exec.Command(tandemBin, "serve", "--data", t.TempDir(), "--smtp-addr", l.Addr().String(),
		"--submission-addr", "", "--submissions-addr", "", "--imap-addr", "", "--imaps-addr", "",
		"--pop3-addr", "", "--pop3s-addr", "", "--http-addr", "")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--smtp-addr") || !strings.Contains(string(out), "already listens") {
		t.Errorf("port in use: err=%v\n%s", err, out)
	}
	if os.Geteuid() != 0 {
		return
	}
	// As an unprivileged user, port 25 cannot be bound.
	data := t.TempDir()
	os.Chmod(data, 0o777)
	os.Chmod(filepath.Dir(data), 0o755)
	cmd = exec.Command(tandemBin, "serve", "--data", data, "--smtp-addr", "127.0.0.1:25",
		"--submission-addr", "", "--submissions-addr", "", "--imap-addr", "", "--imaps-addr", "",
		"--pop3-addr", "", "--pop3s-addr", "", "--http-addr", "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "need root") || !strings.Contains(string(out), "--smtp-addr") {
		t.Errorf("privileged port as nobody: err=%v\n%s", err, out)
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The mail firewall through real clients: SMTP AUTH brute force from
// Python's smtplib blocks the client (even the right password is then
// refused, new connections get 421), the block shows in `tandem firewall
// list`, survives a restart and goes with `unblock`; IMAP and POP3
// failures count too; a dictionary attack (unknown recipients) blocks;
// the per-IP connection limit answers 421; the message rate answers 451.
func TestFirewallEndToEnd(t *testing.T) {
	data := t.TempDir()
	flags := []string{"--allow-insecure-auth", "--firewall-max-conn-ip", "4", "--firewall-bad-rcpts", "5", "--firewall-msg-rate", "5"}
	s := startServer(t, data, flags...)
	s.mustCLI("account", "add", "alice@example.test", "--password", "alice-pw")

	bruteSMTP := `
import smtplib, sys
port = int(sys.argv[1])
c = smtplib.SMTP("127.0.0.1", port, timeout=10)
c.ehlo("client.example")
def login(pw):
    # One AUTH PLAIN per attempt (login() would retry with LOGIN).
    c.user, c.password = "alice@example.test", pw
    c.auth("PLAIN", c.auth_plain)
for i in range(10):
    try:
        login("wrong-%d" % i)
        print("login", i, "succeeded?!")
    except smtplib.SMTPAuthenticationError as e:
        print("fail", e.smtp_code)
try:
    login("alice-pw")
    print("right password: accepted")
except smtplib.SMTPAuthenticationError as e:
    print("right password:", e.smtp_code, e.smtp_error.decode())
try:
    smtplib.SMTP("127.0.0.1", port, timeout=10)
    print("reconnect: accepted")
except smtplib.SMTPConnectError as e:
    print("reconnect:", e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPServerDisconnected as e:
    print("reconnect: disconnected", e)
`
	out := python(t, bruteSMTP, s.port("submission"))
	if strings.Count(out, "fail 535") != 10 || !strings.Contains(out, "right password: 454 4.7.0 Too many failed logins") ||
		!strings.Contains(out, "reconnect: 421 4.7.0 mail.example.test Client blocked by the mail firewall") {
		t.Fatalf("SMTP brute force:\n%s", out)
	}
	list := s.mustCLI("firewall", "list")
	if !strings.Contains(list, "127.0.0.1/32") || !strings.Contains(list, "10 failed logins") {
		t.Fatalf("firewall list after brute force:\n%s", list)
	}
	// An admin block, by CIDR and by account; bad targets are refused.
	s.mustCLI("firewall", "block", "192.0.2.0/24", "--reason", "test net", "--for", "2h")
	s.mustCLI("firewall", "block", "mallory@example.test")
	if out, err := s.cli("firewall", "block", "not-an-ip"); err == nil || !strings.Contains(out, "not an IP address or CIDR") {
		t.Errorf("bad block target: %v %s", err, out)
	}
	if out, err := s.cli("firewall", "unblock", "198.51.100.1"); err == nil || !strings.Contains(out, "no block for") {
		t.Errorf("unblock of nothing: %v %s", err, out)
	}

	// Blocks are replicated state: they survive a restart.
	s.stop()
	s = startServer(t, data, flags...)
	var bs []struct {
		Target, Kind, Reason string
	}
	if err := json.Unmarshal([]byte(s.mustCLI("firewall", "list", "--json")), &bs); err != nil || len(bs) != 3 {
		t.Fatalf("blocks after restart: %+v %v", bs, err)
	}
	imapLogin := `
import imaplib, sys
try:
    c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
except Exception as e:
    print("connect:", type(e).__name__, e); sys.exit(0)
for pw in sys.argv[2:]:
    try:
        c.login("alice@example.test", pw); print("login ok"); break
    except imaplib.IMAP4.error as e:
        print("login NO", e)
`
	if out := python(t, imapLogin, s.port("imap"), "alice-pw"); !strings.Contains(out, "[UNAVAILABLE] Client blocked") {
		t.Fatalf("IMAP from a blocked client after restart:\n%s", out)
	}
	if out := s.mustCLI("firewall", "unblock", "127.0.0.1"); !strings.Contains(out, "unblocked 127.0.0.1") {
		t.Fatal(out)
	}
	if out := python(t, imapLogin, s.port("imap"), "alice-pw"); !strings.Contains(out, "login ok") {
		t.Fatalf("IMAP after unblock:\n%s", out)
	}

	// IMAP failures count the same: 10 → the right password gets NO [UNAVAILABLE].
	pws := []string{}
	for i := 0; i < 10; i++ {
		pws = append(pws, "bad")
	}
	out = python(t, imapLogin, append([]string{s.port("imap")}, append(pws, "alice-pw")...)...)
	if strings.Count(out, "AUTHENTICATIONFAILED") != 10 || !strings.Contains(out, "[UNAVAILABLE] Too many failed logins") {
		t.Fatalf("IMAP brute force:\n%s", out)
	}
	s.mustCLI("firewall", "unblock", "127.0.0.1")

	// POP3 too, and an account block refuses even the right password.
	pop := `
import poplib, sys
c = poplib.POP3("127.0.0.1", int(sys.argv[1]))
c.user(sys.argv[2])
try:
    c.pass_(sys.argv[3]); print("pop ok")
except poplib.error_proto as e:
    print("pop", e)
`
	if out := python(t, pop, s.port("pop3"), "alice@example.test", "alice-pw"); !strings.Contains(out, "pop ok") {
		t.Fatalf("POP3 login: %s", out)
	}
	s.mustCLI("firewall", "block", "alice@example.test", "--for", "1h")
	if out := python(t, pop, s.port("pop3"), "alice@example.test", "alice-pw"); !strings.Contains(out, "-ERR [AUTH]") {
		t.Fatalf("POP3 login of a blocked account: %s", out)
	}
	s.mustCLI("firewall", "unblock", "alice@example.test")

	// Dictionary attack: 5 unknown recipients → blocked.
	dict := `
import smtplib, sys
c = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
c.ehlo("client.example")
c.mail("probe@outside.example")
for i in range(6):
    code, msg = c.rcpt("user%d@example.test" % i)
    print("rcpt", code)
c.quit()
try:
    smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
    print("reconnect: accepted")
except smtplib.SMTPConnectError as e:
    print("reconnect:", e.smtp_code)
`
	out = python(t, dict, s.port("smtp"))
	if strings.Count(out, "rcpt 550") != 6 || !strings.Contains(out, "reconnect: 421") {
		t.Fatalf("dictionary attack:\n%s", out)
	}
	if list := s.mustCLI("firewall", "list"); !strings.Contains(list, "dictionary attack") {
		t.Fatalf("list after the dictionary attack:\n%s", list)
	}
	s.mustCLI("firewall", "unblock", "127.0.0.1")

	// Connection limit: the 5th concurrent connection gets 421; once one
	// closes, a new one is served.
	conns := `
import socket, sys
port = int(sys.argv[1])
held = []
for i in range(5):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    print("conn", i, s.makefile("rb").readline().decode().strip())
    held.append(s)
held[0].close()
import time; time.sleep(0.3)
s = socket.create_connection(("127.0.0.1", port), timeout=10)
print("after close", s.makefile("rb").readline().decode().strip())
`
	out = python(t, conns, s.port("smtp"))
	if strings.Count(out, " 220 mail.example.test") != 5 || !strings.Contains(out, "conn 4 421 4.7.0 mail.example.test Too many connections") ||
		!strings.Contains(out, "after close 220") {
		t.Fatalf("connection limit:\n%s", out)
	}

	// Message rate: 5 per minute, then 451 4.7.1.
	rate := `
import smtplib, sys
c = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
for i in range(6):
    try:
        c.sendmail("x@outside.example", ["alice@example.test"], "Subject: %d\r\n\r\nhi\r\n" % i)
        print("sent", i)
    except smtplib.SMTPSenderRefused as e:
        print("refused", e.smtp_code, e.smtp_error.decode())
`
	out = python(t, rate, s.port("smtp"))
	// The dictionary attack's MAIL FROM took one of the 5 tokens; slow
	// CI may refill one (every 12 s), hence a range.
	if n := strings.Count(out, "sent"); n < 4 || n > 5 || !strings.Contains(out, "refused 451 4.7.1 Too many messages") {
		t.Fatalf("message rate:\n%s", out)
	}
}

// Blocks are replicated: a brute force through a follower (relayed to the
// leader, which counts) blocks the client on every node, and after the
// leader is killed the survivors still list and enforce the block.
func TestFirewallBlocksSurviveFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster drill")
	}
	var nodes []*server
	var dirs, caddrs []string
	for i := 0; i < 3; i++ {
		dirs = append(dirs, t.TempDir())
		caddrs = append(caddrs, freePort(t))
	}
	args := func(i int) []string {
		a := []string{"--allow-insecure-auth", "--firewall-auth-failures", "3",
			"--node-id", fmt.Sprintf("n%d", i+1), "--cluster-addr", caddrs[i], "--gossip-addr", freePort(t)}
		if i > 0 {
			secret, _ := os.ReadFile(filepath.Join(dirs[0], "cluster-secret"))
			a = append(a, "--join", caddrs[0], "--cluster-secret", strings.TrimSpace(string(secret)))
		}
		return a
	}
	for i := 0; i < 3; i++ {
		nodes = append(nodes, startServer(t, dirs[i], args(i)...))
	}
	nodes[0].mustCLI("account", "add", "alice@example.test", "--password", "alice-pw")
	waitCond(t, "three healthy members", 20*time.Second, func() bool {
		st, err := nodes[0].cli("cluster", "status")
		return err == nil && strings.Contains(st, "n3") && strings.Count(st, "ok") >= 3
	})
	brute := `
import smtplib, sys
port = int(sys.argv[1])
try:
    c = smtplib.SMTP("127.0.0.1", port, timeout=10)
except smtplib.SMTPConnectError as e:
    print("connect:", e.smtp_code); sys.exit(0)
except smtplib.SMTPServerDisconnected:
    print("disconnected"); sys.exit(0)
c.ehlo("client.example")
for pw in sys.argv[2:]:
    c.user, c.password = "alice@example.test", pw
    try:
        c.auth("PLAIN", c.auth_plain); print("ok")
    except smtplib.SMTPAuthenticationError as e:
        print("auth", e.smtp_code)
`
	out := python(t, brute, nodes[1].port("submission"), "a", "b", "c", "alice-pw")
	if strings.Count(out, "auth 535") != 3 || !strings.Contains(out, "auth 454") {
		t.Fatalf("brute force through a follower:\n%s", out)
	}
	for _, n := range nodes {
		n := n
		waitCond(t, "block replicated to "+n.data, 10*time.Second, func() bool {
			out, err := n.cli("firewall", "list")
			return err == nil && strings.Contains(out, "127.0.0.1/32")
		})
	}
	nodes[0].kill()
	waitCond(t, "a survivor leads and still lists the block", 30*time.Second, func() bool {
		out, err := nodes[1].cli("firewall", "list")
		return err == nil && strings.Contains(out, "127.0.0.1/32")
	})
	waitCond(t, "the survivors refuse the blocked client", 30*time.Second, func() bool {
		out := python(t, brute, nodes[2].port("submission"), "alice-pw")
		return strings.Contains(out, "connect: 421")
	})
	// Unblocking through a survivor lets the client in again.
	nodes[2].mustCLI("firewall", "unblock", "127.0.0.1")
	waitCond(t, "login after unblock", 20*time.Second, func() bool {
		return strings.Contains(python(t, brute, nodes[1].port("submission"), "alice-pw"), "ok")
	})
}

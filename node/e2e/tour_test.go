package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The README's tour, done by real clients against the real binary.
func TestTourPythonClients(t *testing.T) {
	s := startServer(t, t.TempDir())
	if s.password == "" {
		t.Fatalf("first start printed no admin password:\n%s", s.output())
	}
	s.mustCLI("account", "add", "alice@example.test", "--password", "alice-pw", "--name", "Alice")
	s.mustCLI("account", "add", "bob@example.test", "--password", "bob-pw")
	s.mustCLI("alias", "add", "team@example.test", "alice@example.test", "bob@example.test")

	// Inbound over the MX port, submission with STARTTLS+AUTH, and
	// submissions over implicit TLS, all with smtplib.
	out := python(t, `
import smtplib, ssl, sys
host = "127.0.0.1"
mx, sub, subs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
msg = "From: x@outside.example\r\nTo: team@example.test\r\nSubject: hello team\r\n\r\nfrom outside\r\n"
with smtplib.SMTP(host, mx) as c:
    c.sendmail("x@outside.example", ["team@example.test"], msg)
    try:
        c.sendmail("x@outside.example", ["victim@elsewhere.example"], msg)
        print("RELAYED")
    except smtplib.SMTPRecipientsRefused as e:
        print("relay refused", list(e.recipients.values())[0][0])
    try:
        c.sendmail("x@outside.example", ["nobody@example.test"], msg)
    except smtplib.SMTPRecipientsRefused as e:
        print("unknown refused", list(e.recipients.values())[0][0])
with smtplib.SMTP(host, sub) as c:
    c.ehlo(); c.starttls(context=ctx); c.ehlo()
    c.login("alice@example.test", "alice-pw")
    c.sendmail("alice@example.test", ["bob@example.test"], "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: via submission\r\n\r\nhi bob\r\n")
    try:
        c.sendmail("bob@example.test", ["alice@example.test"], "Subject: spoof\r\n\r\nx\r\n")
        print("SPOOFED")
    except smtplib.SMTPSenderRefused as e:
        print("spoof refused", e.smtp_code)
with smtplib.SMTP_SSL(host, subs, context=ctx) as c:
    c.login("bob@example.test", "bob-pw")
    c.sendmail("bob@example.test", ["alice@example.test"], "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: via smtps\r\n\r\nhi alice\r\n")
print("smtp ok")
`, s.port("smtp"), s.port("submission"), s.port("submissions"))
	for _, want := range []string{"relay refused 55", "unknown refused 550", "spoof refused 553", "smtp ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("smtp: want %q in:\n%s", want, out)
		}
	}

	// Alice reads with imaplib over STARTTLS and over implicit TLS.
	out = python(t, `
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
c.starttls(ssl_context=ctx)
c.login("alice@example.test", "alice-pw")
typ, data = c.select("INBOX")
print("exists", data[0].decode())
typ, data = c.uid("SEARCH", None, "SUBJECT", "team")
print("search", data[0].decode())
typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("subjects", sorted(p[1].decode().strip() for p in data if isinstance(p, tuple)))
c.create("Projects/2026")
typ, data = c.list()
print("list", [d.decode() for d in data])
c.logout()
c = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[2]), ssl_context=ctx)
c.login("alice@example.test", "alice-pw")
typ, data = c.status("INBOX", "(MESSAGES UNSEEN)")
print("status", data[0].decode())
c.logout()
`, s.port("imap"), s.port("imaps"))
	for _, want := range []string{"exists 2", "search 1", "Subject: hello team", "Subject: via smtps", `Projects/2026`, "MESSAGES 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("imap: want %q in:\n%s", want, out)
		}
	}

	// Bob reads with poplib over STLS, deletes one, and the delete happens at QUIT.
	out = python(t, `
import poplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = poplib.POP3("127.0.0.1", int(sys.argv[1]))
c.stls(context=ctx)
c.user("bob@example.test"); c.pass_("bob-pw")
print("stat", c.stat())
resp, lines, octets = c.retr(1)
print("retr", b"\n".join(lines).decode().count("Subject:"))
c.dele(1)
c.quit()
c = poplib.POP3_SSL("127.0.0.1", int(sys.argv[2]), context=ctx)
c.user("bob@example.test"); c.pass_("bob-pw")
print("after", c.stat()[0])
c.quit()
`, s.port("pop3"), s.port("pop3s"))
	for _, want := range []string{"stat (2,", "retr 1", "after 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("pop3: want %q in:\n%s", want, out)
		}
	}
}

func TestTourCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	s := startServer(t, t.TempDir())
	s.mustCLI("account", "add", "carol@example.test", "--password", "carol-pw")
	msg := filepath.Join(t.TempDir(), "m.eml")
	os.WriteFile(msg, []byte("From: carol@example.test\r\nTo: carol@example.test\r\nSubject: curl note\r\n\r\nsent by curl\r\n"), 0o644)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "-k"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("--ssl-reqd", "smtp://127.0.0.1:"+s.port("submission"), "-u", "carol@example.test:carol-pw",
		"--mail-from", "carol@example.test", "--mail-rcpt", "carol@example.test", "-T", msg)
	run("smtps://127.0.0.1:"+s.port("submissions"), "-u", "carol@example.test:carol-pw",
		"--mail-from", "carol@example.test", "--mail-rcpt", "carol@example.test", "-T", msg)
	if out := run("--ssl-reqd", "imap://127.0.0.1:"+s.port("imap")+"/INBOX", "-u", "carol@example.test:carol-pw", "-X", "UID SEARCH SUBJECT curl"); !strings.Contains(out, "SEARCH 1 2") {
		t.Errorf("imap search: %q", out)
	}
	if out := run("imaps://127.0.0.1:"+s.port("imaps")+"/INBOX;UID=1", "-u", "carol@example.test:carol-pw"); !strings.Contains(out, "sent by curl") {
		t.Errorf("imap fetch: %q", out)
	}
	if out := run("--ssl-reqd", "pop3://127.0.0.1:"+s.port("pop3")+"/1", "-u", "carol@example.test:carol-pw"); !strings.Contains(out, "Subject: curl note") {
		t.Errorf("pop3 retr: %q", out)
	}
	if out := run("pop3s://127.0.0.1:"+s.port("pop3s"), "-u", "carol@example.test:carol-pw"); !strings.HasPrefix(out, "1 ") || !strings.Contains(out, "\n2 ") {
		t.Errorf("pop3 list: %q", out)
	}
}

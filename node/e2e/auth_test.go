package e2e

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
)

// Inbound sender verification through the real binary: a test zone on
// loopback (--dns-resolver) publishes SPF, DKIM and DMARC records for
// sender domains; each message gets the right Authentication-Results in
// the delivered copy (read over IMAP), and DMARC p=reject is refused at
// DATA with 550 5.7.1.
func TestInboundSPFDKIMDMARC(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dkimTXT := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	z := startAuthZone(t, map[string][]string{
		"pass.test":                {"v=spf1 ip4:127.0.0.1 -all"},
		"_dmarc.pass.test":         {"v=DMARC1; p=reject"},
		"sel._domainkey.pass.test": {dkimTXT},
		"fail.test":                {"v=spf1 ip4:192.0.2.1 -all"},
		"soft.test":                {"v=spf1 ip4:192.0.2.1 ~all"},
		"perm.test":                {"v=spf1 ip4:127.0.0.1 frobnicate:x -all"},
		"other.test":               {"v=spf1 ip4:127.0.0.1 -all"},
		"align.test":               {"v=spf1 -all"},
		"_dmarc.align.test":        {"v=DMARC1; p=none"},
		"reject.test":              {"v=spf1 ip4:192.0.2.1 -all"},
		"_dmarc.reject.test":       {"v=DMARC1; p=reject"},
		"quar.test":                {"v=spf1 ip4:192.0.2.1 -all"},
		"_dmarc.quar.test":         {"v=DMARC1; p=quarantine"},
	})
	s := startServer(t, t.TempDir(), "--dns-resolver", z.addr())
	s.mustCLI("account", "add", "rcpt@example.test", "--password", "pw")

	sign := func(msg string) string {
		var b bytes.Buffer
		if err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{Domain: "pass.test", Selector: "sel", Signer: priv,
			Hash: crypto.SHA256, HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	msg := func(from, subject string) string {
		return fmt.Sprintf("From: %s\r\nTo: rcpt@example.test\r\nSubject: %s\r\nMessage-ID: <%s@x>\r\n\r\nbody of %s\r\n", from, subject, subject, subject)
	}
	arcMsg := arcSealed(t, z, msg("x@elsewhere.test", "case-arc"))
	cases := []struct {
		subject, mailFrom, body string
		want                    []string
	}{
		{"case-pass", "a@pass.test", sign(msg("a@pass.test", "case-pass")),
			[]string{"spf=pass smtp.mailfrom=a@pass.test", "dkim=pass header.d=pass.test header.s=sel", "dmarc=pass (p=reject) header.from=pass.test", "arc=none"}},
		{"case-dkim-tampered", "a@pass.test", strings.Replace(sign(msg("a@pass.test", "case-dkim-tampered")), "body of", "BODY OF", 1),
			[]string{"spf=pass", "dkim=fail header.d=pass.test", "dmarc=pass"}},
		{"case-fail", "a@fail.test", msg("a@fail.test", "case-fail"), []string{"spf=fail smtp.mailfrom=a@fail.test", "dkim=none", "dmarc=none"}},
		{"case-softfail", "a@soft.test", msg("a@soft.test", "case-softfail"), []string{"spf=softfail smtp.mailfrom=a@soft.test"}},
		{"case-none", "a@nothing.test", msg("a@nothing.test", "case-none"), []string{"spf=none smtp.mailfrom=a@nothing.test", "dmarc=none"}},
		{"case-permerror", "a@perm.test", msg("a@perm.test", "case-permerror"), []string{"spf=permerror smtp.mailfrom=a@perm.test"}},
		// Forwarded by a list that sealed it with ARC (made by dkimpy).
		{"case-arc", "bounce@lists.test", arcMsg, []string{"arc=pass (i=1 sealer lists.test)"}},
		// SPF passes for other.test, but the From domain is align.test:
		// not aligned, so DMARC fails (p=none: delivered and tagged).
		{"case-unaligned", "a@other.test", msg("boss@align.test", "case-unaligned"),
			[]string{"spf=pass smtp.mailfrom=a@other.test", "dmarc=fail (p=none) header.from=align.test"}},
	}
	c, err := smtp.Dial(s.addr("smtp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		if err := c.SendMail(tc.mailFrom, []string{"rcpt@example.test"}, strings.NewReader(tc.body)); err != nil {
			t.Fatalf("%s: %v", tc.subject, err)
		}
	}
	// DMARC p=quarantine: accepted, then held in Junk (by the spam stage's disposer).
	if err := c.SendMail("a@quar.test", []string{"rcpt@example.test"}, strings.NewReader(msg("a@quar.test", "case-quarantine"))); err != nil {
		t.Fatalf("quarantine: %v", err)
	}
	// DMARC p=reject with SPF failing and no signature: 550 5.7.1 at DATA.
	err = c.SendMail("a@reject.test", []string{"rcpt@example.test"}, strings.NewReader(msg("a@reject.test", "case-reject")))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(se.Message, "DMARC") {
		t.Errorf("p=reject: want 550 5.7.1 naming DMARC, got %v", err)
	}
	c.Quit()

	out := python(t, `
import imaplib, ssl, sys, time, email
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
c.starttls(ssl_context=ctx)
c.login("rcpt@example.test", "pw")
for i in range(50):
    typ, data = c.select("INBOX")
    if int(data[0]) >= int(sys.argv[2]): break
    time.sleep(0.2)
typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER])")
for p in data:
    if isinstance(p, tuple):
        m = email.message_from_bytes(p[1])
        ars = m.get_all("Authentication-Results") or []
        print("MSG", m["Subject"], "|", len(ars), "|", " ".join(ars))
for i in range(50):
    typ, data = c.select("Junk")
    if typ == "OK" and int(data[0]) >= 1: break
    time.sleep(0.2)
if typ == "OK":
    typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER])")
    for p in data:
        if isinstance(p, tuple):
            m = email.message_from_bytes(p[1])
            print("JUNK", m["Subject"], "|", " ".join(m.get_all("Authentication-Results") or []))
c.logout()
`, s.port("imap"), fmt.Sprint(len(cases)))
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.SplitN(strings.TrimPrefix(l, "MSG "), " | ", 2); strings.HasPrefix(l, "MSG ") && len(f) == 2 {
			lines[f[0]] = f[1]
		}
	}
	for _, tc := range cases {
		l, ok := lines[tc.subject]
		if !ok {
			t.Errorf("%s not delivered:\n%s", tc.subject, out)
			continue
		}
		// Ours comes first; the ARC case also keeps the list's own field.
		if !strings.HasPrefix(l, "1 | mail.example.test; ") && !(tc.subject == "case-arc" && strings.HasPrefix(l, "2 | mail.example.test; ")) {
			t.Errorf("%s: want one Authentication-Results by mail.example.test, got %s", tc.subject, l)
		}
		for _, w := range tc.want {
			if !strings.Contains(l, w) {
				t.Errorf("%s: want %q in %s", tc.subject, w, l)
			}
		}
	}
	if _, ok := lines["case-quarantine"]; ok {
		t.Error("the p=quarantine message is in INBOX")
	}
	if !regexp.MustCompile(`(?m)^JUNK .*case-quarantine \| mail\.example\.test; spf=fail`).MatchString(out) || !strings.Contains(out, "dmarc=fail (p=quarantine) header.from=quar.test") {
		t.Errorf("p=quarantine message not in Junk with its results:\n%s", out)
	}
	if _, ok := lines["case-reject"]; ok {
		t.Error("the p=reject message was delivered")
	}
	// The results are in the mail log too.
	logOut := s.mustCLI("log", "search", "--subject", "case-fail")
	if !strings.Contains(logOut, "spf=fail") {
		t.Errorf("mail log lacks the auth verdict:\n%s", logOut)
	}
}

// arcSealed seals msg as the list lists.test would, with Python's dkimpy
// (Debian python3-dkim), and publishes the list's key in the zone.
func arcSealed(t *testing.T, z *authZone, msg string) string {
	t.Helper()
	py := "/usr/bin/python3"
	if exec.Command(py, "-c", "import dkim, authres").Run() != nil {
		if os.Geteuid() == 0 {
			t.Fatal("python3-dkim and python3-authres are not installed (.ci/test.sh installs them)")
		}
		t.Skip("python3-dkim/python3-authres missing and not root")
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPath, msgPath := filepath.Join(dir, "k.pem"), filepath.Join(dir, "m.eml")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600)
	os.WriteFile(msgPath, []byte("Authentication-Results: lists.test; spf=pass smtp.mailfrom=x@elsewhere.test\r\n"+msg), 0o600)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	z.set("arc._domainkey.lists.test", "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der))
	out, err := exec.Command(py, "-c", `
import sys, dkim
msg = open(sys.argv[1], "rb").read()
hdrs = dkim.arc_sign(msg, b"arc", b"lists.test", open(sys.argv[2], "rb").read(), b"lists.test")
sys.stdout.buffer.write(b"".join(hdrs) + msg)
`, msgPath, keyPath).Output()
	if err != nil {
		t.Fatalf("dkimpy arc_sign: %v", err)
	}
	return string(out)
}

package e2e

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter/virus/clamdtest"
)

// sendScript sends each file with smtplib and prints one line per message:
// "ok" or the SMTP error code and text.
const sendScript = `
import smtplib, sys, time
for f in sys.argv[2:]:
    t = time.time()
    try:
        with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60) as c:
            c.sendmail("sender@outside.example", ["alice@example.test"], open(f, "rb").read())
        r = "ok"
    except smtplib.SMTPDataError as e:
        r = "%d %s" % (e.smtp_code, e.smtp_error.decode())
    except smtplib.SMTPResponseException as e:
        r = "%d %s" % (e.smtp_code, e.smtp_error.decode())
    print(f.split("/")[-1], r, "%.1fs" % (time.time() - t))
`

func writeMsgs(t *testing.T, msgs map[string]string) (dir string) {
	t.Helper()
	dir = t.TempDir()
	for name, m := range msgs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func attachment(name string, content []byte) string {
	enc := base64.StdEncoding.EncodeToString(content)
	var b strings.Builder
	b.WriteString("From: x@outside.example\r\nTo: alice@example.test\r\nSubject: " + name + "\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n")
	b.WriteString("--B\r\nContent-Type: application/octet-stream; name=\"" + name + "\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--B--\r\n")
	return b.String()
}

func zipFile(t *testing.T, name string, content []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content)
	zw.Close()
	return buf.Bytes()
}

// Real clamd behind real SMTP: EICAR inline, in a base64 attachment and in
// a zip is refused with the signature name, clean mail is delivered with
// X-Virus-Scanned, MIME bombs get an answer in bounded time, and with
// clamd stopped the policy holds: 451 by default, unscanned-but-marked
// delivery when the admin chose --clamd-policy accept.
func TestVirusEndToEnd(t *testing.T) {
	clamd := clamdtest.Start(t, clamdtest.Options{})
	data := t.TempDir()
	s := startServer(t, data, "--allow-insecure-auth", "--clamd", clamd.Addr())
	s.mustCLI("account", "add", "alice@example.test", "--password", "alice-pw")

	// Nested multiparts, thousands deep; a broken base64 part; a zip bomb
	// (a 50 MiB file of zeros deflates to ~50 KiB).
	var nested strings.Builder
	nested.WriteString("From: x@outside.example\r\nSubject: nested\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n")
	const depth = 3000
	for i := 0; i < depth; i++ {
		nested.WriteString("--b" + strconv.Itoa(i) + "\r\nContent-Type: multipart/mixed; boundary=\"b" + strconv.Itoa(i+1) + "\"\r\n\r\n")
	}
	for i := depth; i >= 0; i-- {
		nested.WriteString("--b" + strconv.Itoa(i) + "--\r\n")
	}
	var siblings strings.Builder // 20 000 sibling parts
	siblings.WriteString("From: x@outside.example\r\nSubject: siblings\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"s\"\r\n\r\n")
	for i := 0; i < 20000; i++ {
		siblings.WriteString("--s\r\nContent-Type: text/plain\r\n\r\npart " + strconv.Itoa(i) + "\r\n")
	}
	siblings.WriteString("--s--\r\n")
	rfc822 := "Subject: innermost\r\n\r\nhello\r\n" // message/rfc822 nested 1000 deep
	for i := 0; i < 1000; i++ {
		rfc822 = "Subject: level " + strconv.Itoa(i) + "\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" + rfc822
	}
	var bomb bytes.Buffer
	zw := zip.NewWriter(&bomb)
	w, _ := zw.Create("zeros.bin")
	zero := make([]byte, 1<<20)
	for i := 0; i < 50; i++ {
		w.Write(zero)
	}
	zw.Close()
	manyHeaders := "From: x@outside.example\r\nSubject: headers\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("a", 900)+"\r\n", 900) + "\r\nbody\r\n"

	dir := writeMsgs(t, map[string]string{
		"1-clean.eml":    "From: x@outside.example\r\nTo: alice@example.test\r\nSubject: clean\r\n\r\nHello Alice.\r\n",
		"2-inline.eml":   "From: x@outside.example\r\nTo: alice@example.test\r\nSubject: inline\r\n\r\n" + clamdtest.EICAR + "\r\n",
		"3-base64.eml":   attachment("eicar.com", []byte(clamdtest.EICAR)),
		"4-zip.eml":      attachment("eicar.zip", zipFile(t, "eicar.com", []byte(clamdtest.EICAR))),
		"5-nested.eml":   nested.String(),
		"6-badb64.eml":   strings.Replace(attachment("broken.bin", []byte(strings.Repeat("payload ", 5000))), "\r\n--B--", "!!@@##$$%%^^&&**\r\n====\r\n--B--", 1),
		"7-zipbomb.eml":  attachment("bomb.zip", bomb.Bytes()),
		"8-headers.eml":  manyHeaders,
		"5-siblings.eml": siblings.String(),
		"5-rfc822.eml":   "From: x@outside.example\r\n" + rfc822,
		"9-clean2.eml":   "From: x@outside.example\r\nTo: alice@example.test\r\nSubject: still serving\r\n\r\nok\r\n",
	})
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	start := time.Now()
	out := python(t, sendScript, append([]string{s.port("smtp")}, files...)...)
	t.Logf("SMTP results (%v):\n%s", time.Since(start), out)
	want := map[string]string{
		"1-clean.eml":    "ok",
		"2-inline.eml":   "550 5.7.1 Message contains a virus: " + clamdtest.Signature,
		"3-base64.eml":   "550 5.7.1 Message contains a virus: " + clamdtest.Signature,
		"4-zip.eml":      "550 5.7.1 Message contains a virus: " + clamdtest.Signature,
		"5-nested.eml":   "",
		"5-siblings.eml": "",
		"5-rfc822.eml":   "",
		"6-badb64.eml":   "ok",
		"7-zipbomb.eml":  "",
		"8-headers.eml":  "",
		"9-clean2.eml":   "ok",
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		name, rest, _ := strings.Cut(l, " ")
		lines[name] = rest
	}
	for name, w := range want {
		got, ok := lines[name]
		if !ok {
			t.Errorf("%s: no result", name)
			continue
		}
		if w != "" && !strings.HasPrefix(got, w+" ") {
			t.Errorf("%s: got %q, want %q", name, got, w)
		}
		// Whatever the verdict, it comes quickly (MIME bombs: bounded time)
		// and is never a tempfail from a crashed scanner.
		if strings.HasPrefix(got, "451") || strings.HasPrefix(got, "421") {
			t.Errorf("%s: %q: the scanner or the node failed on it", name, got)
		}
	}
	if time.Since(start) > 90*time.Second {
		t.Errorf("the messages took %v", time.Since(start))
	}

	imap := `
import imaplib, sys
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
c.login("alice@example.test", "alice-pw")
c.select("INBOX")
typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT X-VIRUS-SCANNED)])")
for p in data:
    if isinstance(p, tuple):
        print(" ".join(p[1].decode().split()))
`
	out = python(t, imap, s.port("imap"))
	if !strings.Contains(out, "Subject: clean X-Virus-Scanned: clamav") && !strings.Contains(out, "X-Virus-Scanned: clamav Subject: clean") {
		t.Errorf("clean mail not delivered with X-Virus-Scanned:\n%s", out)
	}
	if strings.Contains(out, "inline") || strings.Contains(out, "eicar") {
		t.Errorf("infected mail delivered:\n%s", out)
	}

	// clamd stopped: 451, even for clean mail.
	clamd.Stop()
	out = python(t, sendScript, s.port("smtp"), filepath.Join(dir, "1-clean.eml"))
	if !strings.Contains(out, "451 4.7.1 Virus scanner temporarily unavailable") {
		t.Fatalf("clamd down, default policy: %s", out)
	}
	s.stop()
	s = startServer(t, data, "--allow-insecure-auth", "--clamd", clamd.Addr(), "--clamd-policy", "accept")
	out = python(t, sendScript, s.port("smtp"), filepath.Join(dir, "9-clean2.eml"))
	if !strings.Contains(out, "9-clean2.eml ok") {
		t.Fatalf("clamd down, accept policy: %s", out)
	}
	out = python(t, imap, s.port("imap"))
	if !strings.Contains(out, "X-Virus-Scanned: unscanned (scanner unavailable)") {
		t.Fatalf("accepted unscanned mail is not marked:\n%s", out)
	}

	// --virus-action quarantine: inbound infected mail is accepted and held.
	clamd2 := clamdtest.Start(t, clamdtest.Options{})
	s.stop()
	s = startServer(t, data, "--allow-insecure-auth", "--clamd", clamd2.Addr(), "--virus-action", "quarantine")
	out = python(t, sendScript, s.port("smtp"), filepath.Join(dir, "4-zip.eml"))
	if !strings.Contains(out, "4-zip.eml ok") {
		t.Fatalf("quarantine action: %s", out)
	}
	if out := s.mustCLI("quarantine", "list"); !strings.Contains(out, "alice@example.test") {
		t.Fatalf("infected mail not in quarantine:\n%s", out)
	}
	out = python(t, imap, s.port("imap"))
	if strings.Contains(out, "eicar") {
		t.Fatalf("quarantined infected mail reached the INBOX:\n%s", out)
	}
}

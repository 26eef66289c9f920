package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/webui"
)

// TestSettingsExportImport: the configuration of one node, exported with
// the CLI, imported into a fresh node, exports the same again; an account
// made on the first node logs in on the second with its old password.
func TestSettingsExportImport(t *testing.T) {
	a := startServer(t, t.TempDir())
	a.mustCLI("domain", "add", "abc.example")
	a.mustCLI("account", "add", "tech@abc.example", "--password", "Secret-pw-1", "--name", "Tech Support", "--quota", "1G")
	a.mustCLI("account", "add", "sales@abc.example", "--password", "Secret-pw-2")
	a.mustCLI("alias", "add", "info@abc.example", "tech@abc.example", "sales@abc.example")
	a.mustCLI("domain", "catchall", "abc.example", "sales@abc.example")
	file := filepath.Join(t.TempDir(), "settings.json")
	a.mustCLI("settings", "export", file)
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", fi, err)
	}
	if _, err := a.cli("settings", "export", file); err == nil {
		t.Fatal("export overwrote an existing file")
	}

	b := startServer(t, t.TempDir())
	out := b.mustCLI("settings", "import", file)
	if !strings.Contains(out, "accounts") || !strings.Contains(out, "2 created") {
		t.Fatalf("import report:\n%s", out)
	}
	again := b.mustCLI("settings", "import", file)
	if strings.Contains(again, "created, ") && !strings.Contains(again, "0 created, 0 updated") {
		t.Fatalf("second import changed something:\n%s", again)
	}

	load := func(raw string) webui.Settings {
		var s webui.Settings
		if err := json.Unmarshal([]byte(raw), &s); err != nil {
			t.Fatalf("export: %v\n%.300s", err, raw)
		}
		s.Exported = time.Time{}
		return s
	}
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want, got := load(string(orig)), load(b.mustCLI("settings", "export"))
	if !reflect.DeepEqual(want.Domains, got.Domains) || !reflect.DeepEqual(want.Accounts, got.Accounts) ||
		!reflect.DeepEqual(want.Aliases, got.Aliases) {
		t.Fatalf("re-export differs:\nwant %+v\n got %+v", want, got)
	}
	// Every KV entry of the file is on the new node; a fresh node's own
	// first-start entries (such as its DKIM keys for the default domain)
	// are replaced when the file has the same key.
	have := map[string]webui.SettingsKV{}
	for _, e := range got.KV {
		have[e.NS+"/"+e.Key] = e
	}
	for _, e := range want.KV {
		if g, ok := have[e.NS+"/"+e.Key]; !ok || !reflect.DeepEqual(g, e) {
			t.Errorf("kv %s/%s: want %s%s, got %s%s", e.NS, e.Key, e.JSON, e.Base64, g.JSON, g.Base64)
		}
	}

	python(t, `
import imaplib, sys
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
c.starttls(__import__("ssl")._create_unverified_context())
c.login("tech@abc.example", "Secret-pw-1")
c.logout()
`, b.port("imap"))
}

// TestCertificateUploadServed: a certificate uploaded with the CLI is what
// STARTTLS presents from the next connection on; removing it brings back
// the self-signed one.
func TestCertificateUploadServed(t *testing.T) {
	s := startServer(t, t.TempDir())
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "mail.example.test"},
		DNSNames: []string{"mail.example.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(0, 1, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	sum := sha256.Sum256(der)
	want := hex.EncodeToString(sum[:])

	served := func() string {
		return strings.TrimSpace(python(t, `
import smtplib, ssl, sys, hashlib
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.starttls(context=ssl._create_unverified_context())
print(hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest())
s.quit()
`, s.port("submission")))
	}
	before := served()
	if before == want {
		t.Fatal("serving the test certificate before the upload")
	}
	// A key that does not match is refused with a message.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oder, _ := x509.MarshalECPrivateKey(other)
	badKey := filepath.Join(dir, "other.pem")
	os.WriteFile(badKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: oder}), 0o600)
	if out, err := s.cli("cert", "upload", certFile, badKey); err == nil || !strings.Contains(out, "do not belong together") {
		t.Fatalf("mismatched key: %v\n%s", err, out)
	}
	out := s.mustCLI("cert", "upload", certFile, keyFile)
	if !strings.Contains(out, `"source": "uploaded"`) {
		t.Fatalf("upload: %s", out)
	}
	if got := served(); got != want {
		t.Fatalf("STARTTLS serves %s, want the upload %s", got, want)
	}
	if out := s.mustCLI("cert", "show"); !strings.Contains(out, `"source": "uploaded"`) || !strings.Contains(out, "CN=mail.example.test") {
		t.Fatalf("cert show: %s", out)
	}
	s.mustCLI("cert", "remove")
	if got := served(); got != before {
		t.Fatalf("after remove STARTTLS serves %s, want the self-signed %s", got, before)
	}
}

// TestToolsCLI: the network tools through the CLI and the admin socket.
func TestToolsCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	out := s.mustCLI("tool", "tcp", "127.0.0.1", s.port("smtp"))
	if !strings.Contains(out, "open: connected") || !strings.Contains(out, "banner: 220 ") {
		t.Fatalf("tcp check of the node's own SMTP port:\n%s", out)
	}
	if out, err := s.cli("tool", "ping", "127.0.0.1;id"); err == nil || !strings.Contains(out, "not an IP address or a host name") {
		t.Fatalf("injection: %v\n%s", err, out)
	}
	if out := s.mustCLI("network", "show"); !strings.Contains(out, `"name": "lo"`) {
		t.Fatalf("network show:\n%s", out)
	}
	if out, err := s.cli("network", "apply", "lo", "127.0.0.9/8"); err == nil || !strings.Contains(out, "loopback") {
		t.Fatalf("apply a loopback address: %v\n%s", err, out)
	}
}

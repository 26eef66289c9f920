package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dkimpyPython finds a Python with dkimpy and authres (Debian
// python3-dkim, python3-authres): an independent ARC implementation to
// seal test messages with.
func dkimpyPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import dkim, authres").Run() == nil {
			return py
		}
	}
	if os.Geteuid() == 0 {
		t.Fatal("python3-dkim and python3-authres are not installed (.ci/test.sh installs them)")
	}
	t.Skip("python3-dkim/python3-authres missing and not root: cannot make ARC test messages with dkimpy")
	return ""
}

const arcSealScript = `
import sys, dkim
msg = open(sys.argv[1], "rb").read()
key = open(sys.argv[2], "rb").read()
hdrs = dkim.arc_sign(msg, sys.argv[3].encode(), sys.argv[4].encode(), key, sys.argv[4].encode(), timestamp=1795900000)
if not hdrs:
    sys.exit("no ARC set made")
sys.stdout.buffer.write(b"".join(hdrs) + msg)
`

// TestARCAgainstDkimpy: a message sealed twice by dkimpy (a list that
// changes the body, then a forwarder) validates; changes after the last
// seal, to the recorded results or to the chain's structure fail it.
func TestARCAgainstDkimpy(t *testing.T) {
	py := dkimpyPython(t)
	dir := t.TempDir()
	res := &StaticResolver{TXT: map[string][]string{}}
	keyFile := func(name, dnsName string) string {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600)
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		res.TXT[dnsName] = []string{"v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)}
		return p
	}
	k1 := keyFile("k1.pem", "s1._domainkey.lists.test")
	k2 := keyFile("k2.pem", "s2._domainkey.fwd.test")
	seal := func(msg, key, sel, domain string) string {
		in := filepath.Join(dir, "in.eml")
		os.WriteFile(in, []byte(msg), 0o600)
		out, err := exec.Command(py, "-c", arcSealScript, in, key, sel, domain).Output()
		if err != nil {
			t.Fatalf("dkimpy arc_sign: %v", err)
		}
		return string(out)
	}
	orig := "Authentication-Results: lists.test; spf=pass smtp.mailfrom=a@orig.test; dkim=pass header.d=orig.test\r\n" +
		"From: A <a@orig.test>\r\nTo: list@lists.test\r\nSubject: hello list\r\nDate: Sun, 29 Nov 2026 01:00:00 +0000\r\n" +
		"Message-ID: <arc1@orig.test>\r\n\r\nHello everyone.\r\n"
	hop1 := seal(orig, k1, "s1", "lists.test")
	// A later hop changes the body (a list footer) and then seals with
	// cv=pass: only its own AMS must match the message as it is now.
	changed := strings.Replace(hop1, "Hello everyone.\r\n", "Hello everyone.\r\n-- \r\nlist footer\r\n", 1)
	hop2 := seal("Authentication-Results: fwd.test; arc=pass\r\n"+changed, k2, "s2", "fwd.test")
	ctx := context.Background()
	check := func(msg string) ARCResult { return CheckARC(ctx, res, strings.NewReader(msg)) }

	if r := check(hop1); r.Result != ARCPass || r.Instances != 1 || r.Sealer != "lists.test" {
		t.Fatalf("one hop: %+v", r)
	}
	r := check(hop2)
	if r.Result != ARCPass || r.Instances != 2 || r.Sealer != "fwd.test" {
		t.Fatalf("two hops: %+v\n%s", r, hop2)
	}
	if r := check(orig); r.Result != ARCNone {
		t.Errorf("no ARC: %+v", r)
	}
	cases := map[string]string{
		"body changed after the last seal": strings.Replace(hop2, "list footer", "new footer", 1),
		"subject changed":                  strings.Replace(hop2, "Subject: hello list", "Subject: hello all", 1),
		"recorded results forged":          strings.Replace(hop2, "i=1; lists.test; spf=pass", "i=1; lists.test; spf=fail", 1),
		"first seal removed":               removeField(hop2, "ARC-Seal", "i=1"),
		"newest AAR removed":               removeField(hop2, "ARC-Authentication-Results", "i=2"),
	}
	for name, msg := range cases {
		if r := check(msg); r.Result != ARCFail || r.Err == nil {
			t.Errorf("%s: %+v", name, r)
		}
	}
	// A key the sealer did not sign with.
	res.TXT["s2._domainkey.fwd.test"] = res.TXT["s1._domainkey.lists.test"]
	if r := check(hop2); r.Result != ARCFail {
		t.Errorf("wrong key: %+v", r)
	}
}

// removeField drops the first field named name whose value contains marker.
func removeField(msg, name, marker string) string {
	lines := strings.SplitAfter(msg, "\r\n")
	var out []string
	skip, done := false, false
	for _, l := range lines {
		if skip && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) {
			continue
		}
		skip = false
		if !done && strings.HasPrefix(strings.ToLower(l), strings.ToLower(name)+":") && strings.Contains(l, marker) {
			skip, done = true, true
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

func TestARCStructure(t *testing.T) {
	res := &StaticResolver{}
	cases := []struct{ name, msg string }{
		{"bad instance", "ARC-Seal: i=0; a=rsa-sha256; cv=none; d=x.test; s=s; b=AA==\r\n\r\nx\r\n"},
		{"instance too high", "ARC-Seal: i=51; a=rsa-sha256; cv=none; d=x.test; s=s; b=AA==\r\n\r\nx\r\n"},
		{"incomplete set", "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.test; s=s; b=AA==\r\n\r\nx\r\n"},
		{"duplicate seal", "ARC-Seal: i=1; cv=none\r\nARC-Seal: i=1; cv=none\r\n\r\n"},
		{"bad tag", "ARC-Seal: i=1; _x=1\r\n\r\n"},
		{"empty tag", "ARC-Seal: i=1;; cv=none\r\n\r\n"},
		{"aar without i", "ARC-Authentication-Results: x.test; spf=pass\r\n\r\n"},
		{"cv=fail", "ARC-Authentication-Results: i=1; x\r\nARC-Message-Signature: i=1; a=rsa-sha256\r\nARC-Seal: i=1; cv=fail\r\n\r\n"},
		{"i=1 with cv=pass", "ARC-Authentication-Results: i=1; x\r\nARC-Message-Signature: i=1; a=rsa-sha256\r\nARC-Seal: i=1; cv=pass\r\n\r\n"},
		{"gap", "ARC-Authentication-Results: i=2; x\r\nARC-Message-Signature: i=2; a=rsa-sha256\r\nARC-Seal: i=2; cv=pass\r\n\r\n"},
	}
	for _, c := range cases {
		if r := CheckARC(context.Background(), res, strings.NewReader(c.msg)); r.Result != ARCFail || r.Err == nil {
			t.Errorf("%s: %+v", c.name, r)
		}
	}
}

func TestBodyHashCanonicalization(t *testing.T) {
	// RFC 6376 §3.4.5 example: both forms of " C \r\nD \t E\r\n\r\n\r\n".
	body := " C \r\nD \t E\r\n\r\n\r\n"
	simple, _ := bodyHash(strings.NewReader(body), "simple")
	relaxed, _ := bodyHash(strings.NewReader(body), "relaxed")
	wantSimple, _ := bodyHash(strings.NewReader(" C \r\nD \t E\r\n"), "simple")
	wantRelaxed, _ := bodyHash(strings.NewReader(" C\r\nD E\r\n"), "simple")
	if string(simple) != string(wantSimple) || string(relaxed) != string(wantRelaxed) {
		t.Error("body canonicalization differs from RFC 6376 §3.4.5")
	}
	// Empty bodies: simple is one CRLF, relaxed is empty (RFC 6376 errata 3192).
	e1, _ := bodyHash(strings.NewReader(""), "simple")
	e2, _ := bodyHash(strings.NewReader("\r\n"), "simple")
	e3, _ := bodyHash(strings.NewReader("\r\n\r\n"), "relaxed")
	empty, _ := bodyHash(strings.NewReader(""), "relaxed")
	if string(e1) != string(e2) || string(e3) != string(empty) || string(e1) == string(empty) {
		t.Error("empty body canonicalization")
	}
	if got := canonHeaderRelaxed("SubJect :  A \r\n\t b  \r\n"); got != "subject:A b\r\n" {
		t.Errorf("relaxed header %q", got)
	}
	if got := stripB("ARC-Seal: i=1; b=abc\r\n def; bh=x; cv=none\r\n"); got != "ARC-Seal: i=1; b=; bh=x; cv=none\r\n" {
		t.Errorf("stripB %q", got)
	}
}

// FuzzCheckARC: arbitrary headers never panic and never pass without keys.
func FuzzCheckARC(f *testing.F) {
	f.Add("ARC-Authentication-Results: i=1; x\r\nARC-Message-Signature: i=1; a=rsa-sha256; d=x; s=s; h=from; bh=AA==; b=AA==\r\nARC-Seal: i=1; cv=none; a=rsa-sha256; d=x; s=s; b=AA==\r\n\r\nbody\r\n")
	f.Add("ARC-Seal: i=1;; b=\r\n\r\n")
	f.Add("From: a\r\n\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		r := CheckARC(context.Background(), &StaticResolver{}, strings.NewReader(msg))
		if r.Result == ARCPass {
			t.Fatalf("pass without any key: %q", msg)
		}
	})
}

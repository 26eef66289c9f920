package dkimsign

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/storage/storetest"
)

const link = "https://mail.sign.test/v/abcdefghijklmnopqrstuvwxyz"

func TestStamp(t *testing.T) {
	cases := []struct {
		name, in   string
		footer     bool
		wantSuffix string
	}{
		{"plain", testMsg, true, "see you.\r\nVerify this message: " + link + "\r\n"},
		{"no final newline", "From: a@sign.test\r\n\r\nhi", true, "hi\r\nVerify this message: " + link + "\r\n"},
		{"bare LF", "From: a@sign.test\nSubject: x\n\nline\n", true, "line\nVerify this message: " + link + "\r\n"},
		{"utf-8 plain", "From: a@sign.test\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n你好\r\n", true, "你好\r\nVerify this message: " + link + "\r\n"},
		{"no body", "From: a@sign.test\r\nSubject: empty\r\n", true, "Subject: empty\r\n\r\nVerify this message: " + link + "\r\n"},
		{"base64", "From: a@sign.test\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n", false, "aGk=\r\n"},
		{"quoted-printable", "From: a@sign.test\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nhi=\r\n", false, "hi=\r\n"},
		{"multipart", "From: a@sign.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n", false, "--b--\r\n"},
		{"html", "From: a@sign.test\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n", false, "<p>x</p>\r\n"},
		{"utf-16", "From: a@sign.test\r\nContent-Type: text/plain; charset=utf-16\r\n\r\nxx\r\n", false, "xx\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := Stamp(&out, strings.NewReader(c.in), link)
			if err != nil {
				t.Fatal(err)
			}
			got := out.String()
			if !strings.HasPrefix(got, VerifyHeader+": "+link+"\r\n") {
				t.Errorf("no header field first:\n%q", got)
			}
			if res.Footer != c.footer || !strings.HasSuffix(got, c.wantSuffix) {
				t.Errorf("footer=%v, message:\n%q", res.Footer, got)
			}
			if res.From != "a@sign.test" && res.From != "alice@sign.test" || res.FromDomain != "sign.test" {
				t.Errorf("from %q %q", res.From, res.FromDomain)
			}
			// The recorded hash is the hash of the body as sent.
			_, body, _ := splitHeader(out.Bytes())
			if h, _ := BodyHash(bytes.NewReader(body)); h != res.BodySHA256 {
				t.Errorf("hash %s, body hashes to %s", res.BodySHA256, h)
			}
			rec := SignatureRecord{BodySHA256: res.BodySHA256}
			if !MatchMessage(rec, out.Bytes()) {
				t.Error("the message as sent does not match")
			}
		})
	}
	var out bytes.Buffer
	res, _ := Stamp(&out, strings.NewReader("From: x@y.test\r\nSubject: =?UTF-8?B?5L2g5aW9?=\r\n\r\nb\r\n"), link)
	if res.Subject != "你好" {
		t.Errorf("decoded subject %q", res.Subject)
	}
	if _, err := Stamp(&out, strings.NewReader("X: "+strings.Repeat("a", 2<<20)), link); err == nil {
		t.Error("2 MiB header accepted")
	}
}

func TestMatchMessage(t *testing.T) {
	var out bytes.Buffer
	res, err := Stamp(&out, strings.NewReader(testMsg), link)
	if err != nil {
		t.Fatal(err)
	}
	sent := out.String()
	rec := SignatureRecord{BodySHA256: res.BodySHA256}
	_, body, _ := splitHeader([]byte(sent))
	cases := []struct {
		name, pasted string
		match        bool
	}{
		{"as sent", sent, true},
		{"with relay headers", "Received: from x by y\r\nAuthentication-Results: y; dkim=pass\r\n" + sent, true},
		{"LF line ends (paste)", strings.ReplaceAll(sent, "\r\n", "\n"), true},
		{"trailing blank lines", sent + "\r\n\r\n", true},
		{"body only", string(body), true},
		{"altered body", strings.Replace(sent, "see you", "pay now", 1), false},
		{"added line", strings.Replace(sent, "see you.\r\n", "see you.\r\nP.S. new account\r\n", 1), false},
		{"empty", "", false},
	}
	for _, c := range cases {
		if got := MatchMessage(rec, []byte(c.pasted)); got != c.match {
			t.Errorf("%s: match=%v, want %v", c.name, got, c.match)
		}
	}
}

func TestTokens(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		tok := NewToken()
		if !ValidToken(tok) || seen[tok] {
			t.Fatalf("token %q", tok)
		}
		seen[tok] = true
	}
	for _, bad := range []string{"", "short", strings.Repeat("A", 26), strings.Repeat("a", 27), strings.Repeat("1", 26), "../../../etc/passwd/aaaaaaaa"} {
		if ValidToken(bad) {
			t.Errorf("ValidToken(%q)", bad)
		}
	}
}

func TestRecordsAndDomains(t *testing.T) {
	st := storetest.New(t)
	ctx := context.Background()
	st.AddDomain(ctx, "sign.test")
	now := time.Unix(1_800_000_000, 0)
	if SignatureEnabled(st, "sign.test") {
		t.Fatal("enabled by default")
	}
	if err := SetSignature(ctx, st, "Sign.Test", true, now); err != nil {
		t.Fatal(err)
	}
	if err := SetSignature(ctx, st, "other.test", true, now); !errors.Is(err, ErrNoDomain) {
		t.Errorf("unknown domain: %v", err)
	}
	if ds, _ := SignatureDomains(st); !SignatureEnabled(st, "sign.test") || len(ds) != 1 || ds[0].Domain != "sign.test" {
		t.Errorf("domains %+v", ds)
	}
	if err := SetSignature(ctx, st, "sign.test", false, now); err != nil || SignatureEnabled(st, "sign.test") {
		t.Errorf("off: %v", err)
	}

	live, old := NewToken(), NewToken()
	rec := SignatureRecord{Sender: "a@sign.test", Recipients: []string{"b@far.test"}, Time: now.Unix(), Subject: "s",
		BodySHA256: "00", Expires: now.Add(time.Hour).Unix()}
	if err := PutRecord(ctx, st, live, rec); err != nil {
		t.Fatal(err)
	}
	if err := PutRecord(ctx, st, live, rec); err == nil {
		t.Error("token overwritten")
	}
	rec.Expires = now.Add(-time.Second).Unix()
	PutRecord(ctx, st, old, rec)
	if got, ok := GetRecord(st, live, now); !ok || got.Sender != "a@sign.test" {
		t.Errorf("live record: %+v %v", got, ok)
	}
	for _, tok := range []string{old, NewToken(), "bad"} {
		if _, ok := GetRecord(st, tok, now); ok {
			t.Errorf("record for %q", tok)
		}
	}
	if n, err := PruneRecords(ctx, st, now); err != nil || n != 1 {
		t.Errorf("prune: %d %v", n, err)
	}
	if _, _, ok, _ := st.KVGet(NSSignatureRecords, old); ok {
		t.Error("expired record kept")
	}
	if _, ok := GetRecord(st, live, now); !ok {
		t.Error("live record pruned")
	}
}

// FuzzStamp: any input gives a well-formed result whose recorded hash
// matches the body written, and never panics.
func FuzzStamp(f *testing.F) {
	f.Add([]byte(testMsg))
	f.Add([]byte("From: a@b\n\nx"))
	f.Add([]byte("no header"))
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte("Content-Type: text/plain; charset=\"\r\n\r\nx\r"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var out bytes.Buffer
		res, err := Stamp(&out, bytes.NewReader(msg), link)
		if err != nil {
			return
		}
		if !strings.HasPrefix(out.String(), VerifyHeader+": ") {
			t.Fatalf("no header: %q", out.String())
		}
		if res.Footer {
			_, body, ok := splitHeader(out.Bytes())
			if !ok {
				t.Fatalf("footer without a body: %q", out.String())
			}
			if h, _ := BodyHash(bytes.NewReader(body)); h != res.BodySHA256 {
				t.Fatalf("hash mismatch for %q", msg)
			}
		}
		MatchMessage(SignatureRecord{BodySHA256: res.BodySHA256}, msg)
	})
}

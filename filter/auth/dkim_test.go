package auth

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

const testMsg = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: Hello\r\n" +
	"Date: Sun, 29 Nov 2026 01:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Hi Bob,\r\nthe meeting is at ten.\r\n"

func signWith(t *testing.T, msg, domain, selector string, key Key) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Sign(strings.NewReader(msg), &out, domain, selector, key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestDKIMRoundTrip(t *testing.T) {
	for _, alg := range []string{AlgRSA2048, AlgEd25519} {
		t.Run(alg, func(t *testing.T) {
			key, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			// PEM round trip: sign with the decoded key.
			p, err := key.MarshalPEM()
			if err != nil {
				t.Fatal(err)
			}
			key2, err := ParseKeyPEM(p)
			if err != nil || key2.Alg != alg {
				t.Fatalf("ParseKeyPEM: %v %q", err, key2.Alg)
			}
			rec, err := key.DNSRecord()
			if err != nil {
				t.Fatal(err)
			}
			res := &StaticResolver{TXT: map[string][]string{"sel._domainkey.example.org": {rec}}}
			signed := signWith(t, testMsg, "example.org", "sel", key2)
			if !bytes.HasPrefix(signed, []byte("DKIM-Signature:")) || !bytes.Contains(signed, []byte("c=relaxed/relaxed")) {
				t.Fatalf("unexpected signature:\n%s", signed)
			}
			got := VerifyDKIM(context.Background(), res, signed)
			if len(got) != 1 || got[0].Result != "pass" || got[0].Domain != "example.org" {
				t.Fatalf("verify: %+v", got)
			}
			// Relaxed canonicalization tolerates whitespace changes in the header.
			loose := bytes.Replace(signed, []byte("Subject: Hello"), []byte("Subject:   Hello "), 1)
			if got := VerifyDKIM(context.Background(), res, loose); got[0].Result != "pass" {
				t.Fatalf("relaxed: %+v", got)
			}
			tampered := map[string][]byte{
				"body":    bytes.Replace(signed, []byte("at ten"), []byte("at six"), 1),
				"subject": bytes.Replace(signed, []byte("Subject: Hello"), []byte("Subject: Hullo"), 1),
				"added":   bytes.Replace(signed, []byte("\r\n\r\n"), []byte("\r\nReply-To: eve@evil.test\r\n\r\n"), 1),
			}
			for name, m := range tampered {
				if got := VerifyDKIM(context.Background(), res, m); len(got) != 1 || got[0].Result != "fail" {
					t.Errorf("tampered %s: %+v", name, got)
				}
			}
			// No key published → permerror; DNS failure → temperror.
			if got := VerifyDKIM(context.Background(), &StaticResolver{}, signed); got[0].Result != "permerror" {
				t.Errorf("no key: %+v", got)
			}
			fail := &StaticResolver{Fail: map[string]bool{"sel._domainkey.example.org": true}}
			if got := VerifyDKIM(context.Background(), fail, signed); got[0].Result != "temperror" {
				t.Errorf("dns failure: %+v", got)
			}
		})
	}
}

func TestDKIMMultipleSignatures(t *testing.T) {
	k1, _ := GenerateKey(AlgEd25519)
	k2, _ := GenerateKey(AlgEd25519)
	r1, _ := k1.DNSRecord()
	r2, _ := k2.DNSRecord()
	once := signWith(t, testMsg, "example.org", "a", k1)
	twice := signWith(t, string(once), "relay.test", "b", k2)
	res := &StaticResolver{TXT: map[string][]string{
		"a._domainkey.example.org": {r1},
		"b._domainkey.relay.test":  {r2},
	}}
	got := VerifyDKIM(context.Background(), res, twice)
	if len(got) != 2 || got[0].Result != "pass" || got[1].Result != "pass" || got[0].Selector != "b" || got[1].Selector != "a" {
		t.Fatalf("%+v", got)
	}
	if got := VerifyDKIM(context.Background(), res, []byte(testMsg)); len(got) != 0 {
		t.Fatalf("unsigned: %+v", got)
	}
}

func TestKeyRecords(t *testing.T) {
	if _, err := GenerateKey("dsa"); err == nil {
		t.Fatal("dsa accepted")
	}
	k, err := GenerateKey(AlgRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := k.DNSRecord()
	if !strings.HasPrefix(rec, "v=DKIM1; k=rsa; p=") || len(rec) < 300 {
		t.Fatalf("record %q", rec)
	}
	parts := SplitTXT(rec)
	if len(parts) < 2 || strings.Join(parts, "") != rec {
		t.Fatalf("split %d parts", len(parts))
	}
	for _, p := range parts {
		if len(p) > 255 {
			t.Fatalf("part of %d bytes", len(p))
		}
	}
	z, _ := k.ZoneRecord("example.org.", "sel")
	if !strings.HasPrefix(z, `sel._domainkey.example.org. IN TXT ( "v=DKIM1; k=rsa; p=`) || strings.Count(z, `"`) != 2*len(parts) {
		t.Fatalf("zone %q", z)
	}
	e, _ := GenerateKey(AlgEd25519)
	if rec, _ := e.DNSRecord(); !strings.HasPrefix(rec, "v=DKIM1; k=ed25519; p=") || len(SplitTXT(rec)) != 1 {
		t.Fatalf("ed25519 record %q", rec)
	}
	if _, err := ParseKeyPEM([]byte("junk")); err == nil {
		t.Fatal("junk PEM accepted")
	}
}

package auth

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/filter"
)

func TestStage(t *testing.T) {
	key, err := GenerateKey(AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := key.DNSRecord()
	res := &StaticResolver{TXT: map[string][]string{
		"example.org":                {"v=spf1 ip4:192.0.2.0/24 -all"},
		"_dmarc.example.org":         {"v=DMARC1; p=reject"},
		"_dmarc.q.test":              {"v=DMARC1; p=quarantine"},
		"sel._domainkey.example.org": {rec},
	}}
	signed := signWith(t, testMsg, "example.org", "sel", key)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func(enforce bool, ip string, auth uint64, msg []byte) filter.Verdict {
		s := NewStage(StageConfig{Resolver: res, Hostname: "mx.tandem.test", Enforce: enforce, Logger: quiet})
		env := &filter.Envelope{ID: "x", ClientIP: net.ParseIP(ip), HELO: "h.test", From: "alice@example.org", AuthAccountID: auth}
		return s.CheckMessage(context.Background(), env, []string{"bob@example.net"}, bytes.NewReader(msg), int64(len(msg)))
	}
	if v := run(true, "203.0.113.1", 0, signed); v.Action != filter.ActionAccept || !strings.Contains(v.Reason, "dmarc=pass") {
		t.Errorf("signed: %+v", v)
	}
	if v := run(true, "203.0.113.1", 0, []byte(testMsg)); v.Action != filter.ActionReject {
		t.Errorf("forged, enforce: %+v", v)
	}
	if v := run(false, "203.0.113.1", 0, []byte(testMsg)); v.Action != filter.ActionTag || !strings.Contains(v.Reason, "dmarc=fail") {
		t.Errorf("forged, no enforce: %+v", v)
	}
	if v := run(true, "203.0.113.1", 7, []byte(testMsg)); v.Action != filter.ActionAccept {
		t.Errorf("authenticated: %+v", v)
	}
	q := []byte(strings.Replace(testMsg, "alice@example.org", "carol@q.test", 1))
	if v := run(true, "203.0.113.1", 0, q); v.Action != filter.ActionQuarantine {
		t.Errorf("quarantine: %+v", v)
	}
}

// FuzzCheck feeds arbitrary messages through the whole chain.
func FuzzCheck(f *testing.F) {
	f.Add([]byte(testMsg))
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=; b=\r\nFrom: a@example.org\r\n\r\n"))
	f.Add([]byte("From: a@b.test, c@d.test\r\nFrom: x\r\n\r\n"))
	res := &StaticResolver{TXT: map[string][]string{
		"example.org":                {"v=spf1 ip4:192.0.2.0/24 -all"},
		"_dmarc.example.org":         {"v=DMARC1; p=reject"},
		"sel._domainkey.example.org": {"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},
	}}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := Check(context.Background(), res, net.ParseIP("192.0.2.1"), "h", "a@example.org", msg)
		if ar := r.AuthenticationResults("mx"); strings.ContainsAny(ar, "\r\n") {
			t.Fatalf("CR/LF in %q", ar)
		}
	})
}

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

func TestStageHeadersAndScore(t *testing.T) {
	key, err := GenerateKey(AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := key.DNSRecord()
	res := &StaticResolver{TXT: map[string][]string{
		"example.org":                {"v=spf1 ip4:192.0.2.0/24 -all"},
		"_dmarc.example.org":         {"v=DMARC1; p=reject"},
		"soft.test":                  {"v=spf1 ~all"},
		"sel._domainkey.example.org": {rec},
	}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	signed := signWith(t, testMsg, "example.org", "sel", key)
	cases := []struct {
		name, ip, from string
		msg            []byte
		enforce        bool
		action         filter.Action
		score          float64
		ar             string
	}{
		{"aligned dkim and spf pass", "192.0.2.1", "alice@example.org", signed, true, filter.ActionAccept, -1, "spf=pass"},
		{"spf fail, dmarc reject", "203.0.113.1", "alice@example.org", []byte(testMsg), true, filter.ActionReject, 5, ""},
		{"spf fail, dmarc fail, not enforced", "203.0.113.1", "alice@example.org", []byte(testMsg), false, filter.ActionTag, 5, "dmarc=fail"},
		{"tampered dkim", "192.0.2.1", "alice@example.org", bytes.Replace(signed, []byte("Hello"), []byte("Jello"), 1), true, filter.ActionAccept, 0, "dkim=fail"},
		{"softfail, no dmarc", "203.0.113.1", "x@soft.test", []byte(strings.Replace(testMsg, "alice@example.org", "x@soft.test", 1)), true, filter.ActionAccept, 1, "spf=softfail"},
	}
	for _, c := range cases {
		s := NewStage(StageConfig{Resolver: res, Hostname: "mx.tandem.test", Enforce: c.enforce, Logger: quiet})
		env := &filter.Envelope{ID: "x", ClientIP: net.ParseIP(c.ip), HELO: "h.test", From: c.from}
		v := s.CheckMessage(context.Background(), env, []string{"bob@example.net"}, bytes.NewReader(c.msg), int64(len(c.msg)))
		if v.Action != c.action || v.Score != c.score {
			t.Errorf("%s: action %v score %v, want %v %v (%s)", c.name, v.Action, v.Score, c.action, c.score, v.Reason)
		}
		if c.action == filter.ActionReject {
			if len(v.Headers) != 0 {
				t.Errorf("%s: headers on a rejected message", c.name)
			}
			continue
		}
		if len(v.Headers) != 1 || !strings.HasPrefix(v.Headers[0], "Authentication-Results: mx.tandem.test; ") ||
			!strings.HasSuffix(v.Headers[0], "\r\n") || !strings.Contains(v.Headers[0], c.ar) || strings.Count(v.Headers[0], "\n") != 1 {
			t.Errorf("%s: headers %q", c.name, v.Headers)
		}
	}
}

func TestForgedResults(t *testing.T) {
	cases := []struct {
		msg  string
		want int
	}{
		{"Authentication-Results: mx.tandem.test; spf=pass\r\nFrom: a@b\r\n\r\n", 1},
		{"Authentication-Results: MX.Tandem.Test (v1); dkim=pass\r\nAuthentication-Results:\r\n mx.tandem.test;\r\n dmarc=pass\r\n\r\n", 2},
		{"Authentication-Results: mx.other.test; spf=pass\r\n\r\n", 0},
		{"Authentication-Results: mx.tandem.test.evil; spf=pass\r\n\r\n", 0},
		{"From: a@b\r\n\r\nAuthentication-Results: mx.tandem.test; spf=pass\r\n", 0}, // in the body
		{"", 0},
	}
	for _, c := range cases {
		if got := ForgedResults(strings.NewReader(c.msg), "mx.tandem.test"); got != c.want {
			t.Errorf("ForgedResults(%q) = %d, want %d", c.msg, got, c.want)
		}
	}
	// The stage notes them in the mail log reason.
	res := &StaticResolver{}
	s := NewStage(StageConfig{Resolver: res, Hostname: "mx.tandem.test", Logger: slog.New(slog.DiscardHandler)})
	msg := []byte("Authentication-Results: mx.tandem.test; dmarc=pass\r\nFrom: a@b.test\r\n\r\nx\r\n")
	v := s.CheckMessage(context.Background(), &filter.Envelope{ClientIP: net.ParseIP("192.0.2.1"), From: "a@b.test"},
		nil, bytes.NewReader(msg), int64(len(msg)))
	if !strings.Contains(v.Reason, "1 forged Authentication-Results") {
		t.Errorf("reason %q", v.Reason)
	}
	// RFC 8601 §5: the pipeline renames the forged field, and only it.
	if v.Rename == nil {
		t.Fatal("no rename asked for the forged field")
	}
	for _, c := range []struct{ name, value, want string }{
		{"Authentication-Results", "mx.tandem.test; dmarc=pass", "X-Forged-Authentication-Results"},
		{"authentication-results", "MX.Tandem.Test (v1); spf=pass", "X-Forged-Authentication-Results"},
		{"Authentication-Results", "other.example; dmarc=pass", ""},
		{"Subject", "mx.tandem.test; x", ""},
	} {
		if got := v.Rename(c.name, c.value); got != c.want {
			t.Errorf("Rename(%q, %q) = %q, want %q", c.name, c.value, got, c.want)
		}
	}
}

func FuzzForgedResults(f *testing.F) {
	f.Add("Authentication-Results: mx.tandem.test; spf=pass\r\n\r\n")
	f.Add("Authentication-Results: (c) ; x\r\n\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		if n := ForgedResults(strings.NewReader(msg), "mx.tandem.test"); n < 0 || n > strings.Count(strings.ToLower(msg), "authentication-results") {
			t.Fatalf("%d for %q", n, msg)
		}
	})
}

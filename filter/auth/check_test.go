package auth

import (
	"context"
	"net"
	"strings"
	"testing"
)

func TestOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.org":       "example.org",
		"mail.example.org":  "example.org",
		"a.b.example.co.uk": "example.co.uk",
		"Example.ORG.":      "example.org",
		"com":               "com",
		"x.test":            "x.test",
		"deep.sub.x.test":   "x.test",
	} {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFromDomain(t *testing.T) {
	tests := []struct {
		hdr, want string
		ok        bool
	}{
		{"From: a@Example.ORG\r\n", "example.org", true},
		{"From: \"A\" <a@x.test>, b@x.test\r\n", "x.test", true},
		{"From: a@x.test, b@y.test\r\n", "", false},
		{"From: a@x.test\r\nFrom: b@x.test\r\n", "", false},
		{"To: a@x.test\r\n", "", false},
		{"From: nobody\r\n", "", false},
	}
	for _, tt := range tests {
		got, err := FromDomain([]byte(tt.hdr + "\r\nbody\r\n"))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%q: got %q %v", tt.hdr, got, err)
		}
	}
}

func TestDMARC(t *testing.T) {
	res := &StaticResolver{
		TXT: map[string][]string{
			"_dmarc.example.org":   {"v=DMARC1; p=reject; sp=quarantine"},
			"_dmarc.strict.test":   {"v=DMARC1; p=reject; adkim=s; aspf=s"},
			"_dmarc.none.test":     {"v=DMARC1; p=none"},
			"_dmarc.pct.test":      {"v=DMARC1; p=reject; pct=50"},
			"_dmarc.two.test":      {"v=DMARC1; p=reject", "v=DMARC1; p=none"},
			"_dmarc.junk.test":     {"v=spf1 -all"},
			"_dmarc.sub.nosp.test": {"v=DMARC1; p=quarantine"},
			"_dmarc.nosp.test":     {"v=DMARC1; p=reject"},
		},
		Fail: map[string]bool{"_dmarc.broken.test": true},
	}
	spf := func(result, domain string) SPFOutcome { return SPFOutcome{Result: result, Domain: domain} }
	dk := func(result, domain string) []DKIMResult { return []DKIMResult{{Result: result, Domain: domain}} }
	tests := []struct {
		name       string
		from       string
		spf        SPFOutcome
		dkim       []DKIMResult
		want       string
		applied    string
		reject     bool
		quarantine bool
	}{
		{"dkim aligned", "example.org", spf(SPFFail, "x.test"), dk("pass", "example.org"), DMARCPass, "reject", false, false},
		{"spf aligned", "example.org", spf(SPFPass, "example.org"), nil, DMARCPass, "reject", false, false},
		{"spf relaxed sub", "example.org", spf(SPFPass, "bounce.example.org"), nil, DMARCPass, "reject", false, false},
		{"dkim relaxed sub", "news.example.org", spf(SPFNone, ""), dk("pass", "example.org"), DMARCPass, "quarantine", false, false},
		{"spf pass unaligned", "example.org", spf(SPFPass, "other.test"), nil, DMARCFail, "reject", true, false},
		{"dkim pass unaligned", "example.org", spf(SPFNone, ""), dk("pass", "evil.test"), DMARCFail, "reject", true, false},
		{"dkim fail aligned", "example.org", spf(SPFSoftfail, "example.org"), dk("fail", "example.org"), DMARCFail, "reject", true, false},
		{"sp for subdomain", "a.example.org", spf(SPFNone, ""), nil, DMARCFail, "quarantine", false, true},
		{"p when sp absent", "a.nosp.test", spf(SPFNone, ""), nil, DMARCFail, "reject", true, false},
		{"own record beats org", "sub.nosp.test", spf(SPFNone, ""), nil, DMARCFail, "quarantine", false, true},
		{"strict spf sub", "strict.test", spf(SPFPass, "bounce.strict.test"), nil, DMARCFail, "reject", true, false},
		{"strict dkim sub", "strict.test", spf(SPFNone, ""), dk("pass", "mail.strict.test"), DMARCFail, "reject", true, false},
		{"strict exact", "strict.test", spf(SPFPass, "strict.test"), nil, DMARCPass, "reject", false, false},
		{"p=none", "none.test", spf(SPFFail, "none.test"), nil, DMARCFail, "none", false, false},
		{"pct<100", "pct.test", spf(SPFFail, "pct.test"), nil, DMARCFail, "reject", false, true},
		{"no record", "norecord.test", spf(SPFFail, "norecord.test"), nil, DMARCNone, "", false, false},
		{"two records", "two.test", spf(SPFFail, "two.test"), nil, DMARCNone, "", false, false},
		{"not dmarc", "junk.test", spf(SPFFail, "junk.test"), nil, DMARCNone, "", false, false},
		{"dns failure", "broken.test", spf(SPFFail, "broken.test"), nil, DMARCTemperror, "", false, false},
	}
	for _, tt := range tests {
		got := CheckDMARC(context.Background(), res, tt.from, tt.spf, tt.dkim)
		r := Result{DMARC: got}
		if got.Result != tt.want || got.Applied != tt.applied || r.Reject() != tt.reject || r.Quarantine() != tt.quarantine {
			t.Errorf("%s: got %s applied=%q reject=%v quarantine=%v (%v); want %s %q %v %v",
				tt.name, got.Result, got.Applied, r.Reject(), r.Quarantine(), got.Err, tt.want, tt.applied, tt.reject, tt.quarantine)
		}
	}
}

// TestCheck runs the whole chain on signed and forged messages.
func TestCheck(t *testing.T) {
	key, err := GenerateKey(AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := key.DNSRecord()
	res := &StaticResolver{TXT: map[string][]string{
		"example.org":                {"v=spf1 ip4:192.0.2.0/24 -all"},
		"_dmarc.example.org":         {"v=DMARC1; p=reject"},
		"sel._domainkey.example.org": {rec},
	}}
	signed := signWith(t, testMsg, "example.org", "sel", key)
	ctx := context.Background()

	good := Check(ctx, res, net.ParseIP("192.0.2.9"), "mx.example.org", "alice@example.org", signed)
	want := "Authentication-Results: mx.tandem.test; spf=pass smtp.mailfrom=alice@example.org; " +
		"dkim=pass header.d=example.org header.s=sel; dmarc=pass (p=reject) header.from=example.org; arc=none"
	if got := good.AuthenticationResults("mx.tandem.test"); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if good.Reject() {
		t.Error("good message rejected")
	}

	// Forwarded through another IP: SPF fails but DKIM still aligns.
	fwd := Check(ctx, res, net.ParseIP("203.0.113.1"), "fwd.test", "alice@example.org", signed)
	if fwd.SPF.Result != SPFFail || fwd.DMARC.Result != DMARCPass || fwd.Reject() {
		t.Errorf("forwarded: %+v", fwd)
	}

	// Forged: unsigned, from a foreign IP → reject.
	forged := Check(ctx, res, net.ParseIP("203.0.113.1"), "evil.test", "alice@example.org", []byte(testMsg))
	if !forged.Reject() || forged.DMARC.Result != DMARCFail {
		t.Errorf("forged: %+v", forged)
	}
	ar := forged.AuthenticationResults("mx.tandem.test")
	if !strings.Contains(ar, "spf=fail") || !strings.Contains(ar, "dkim=none") || !strings.Contains(ar, "dmarc=fail") {
		t.Errorf("forged header: %s", ar)
	}

	// Bounce (null sender): SPF on HELO.
	bounce := Check(ctx, res, net.ParseIP("192.0.2.9"), "example.org", "", signed)
	if !strings.Contains(bounce.AuthenticationResults("h"), "spf=pass smtp.helo=example.org") {
		t.Errorf("bounce: %s", bounce.AuthenticationResults("h"))
	}
}

func TestAuthenticationResultsQuoting(t *testing.T) {
	r := Result{
		SPF:   SPFOutcome{Result: "pass\r\nX-Evil: 1", Identity: "mailfrom", Sender: "a\"b\r\nX-Injected: yes@x.test"},
		DKIM:  []DKIMResult{{Result: "pass", Domain: "x.test;dmarc=pass"}},
		DMARC: DMARCOutcome{Result: DMARCFail, FromDomain: "ex ample.org"},
	}
	got := r.AuthenticationResults("host\r\nX-Bad: 1")
	if strings.ContainsAny(got, "\r\n") {
		t.Fatalf("CR/LF in %q", got)
	}
	for _, want := range []string{`"hostX-Bad: 1";`, "spf=none ", `smtp.mailfrom="a\"bX-Injected: yes@x.test"`, `header.d="x.test;dmarc=pass"`, `header.from="ex ample.org"`} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in %s", want, got)
		}
	}
}

func FuzzAuthenticationResults(f *testing.F) {
	f.Add("mx.test", "pass", "a@b.test", "b.test", "b.test")
	f.Add("h\r\nX: y", "fail\n", "\"@\\", ";", "\x00\x80")
	f.Fuzz(func(t *testing.T, host, result, sender, dkimDomain, from string) {
		r := Result{
			SPF:   SPFOutcome{Result: result, Identity: "mailfrom", Sender: sender},
			DKIM:  []DKIMResult{{Result: result, Domain: dkimDomain, Selector: from, AUID: sender}},
			DMARC: DMARCOutcome{Result: result, FromDomain: from, Policy: dkimDomain, SubdomainPolicy: result},
		}
		got := r.AuthenticationResults(host)
		for i := 0; i < len(got); i++ {
			if c := got[i]; c < 0x20 || c > 0x7e {
				t.Fatalf("byte %#x in %q", c, got)
			}
		}
		if !strings.HasPrefix(got, "Authentication-Results: ") {
			t.Fatalf("prefix: %q", got)
		}
		// Every ";" outside quoted strings starts one of our four resinfo
		// parts: inputs cannot add a method.
		if n := countUnquoted(got, ';'); n != 3 {
			t.Fatalf("%d separators in %q", n, got)
		}
	})
}

// countUnquoted counts c outside RFC 5322 quoted-strings.
func countUnquoted(s string, c byte) int {
	n, inQ := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case inQ && s[i] == '\\':
			i++
		case s[i] == '"':
			inQ = !inQ
		case !inQ && s[i] == c:
			n++
		}
	}
	return n
}

package auth

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
)

// Result gathers SPF, DKIM and DMARC for one inbound message.
type Result struct {
	SPF   SPFOutcome
	DKIM  []DKIMResult // one per DKIM-Signature; empty means dkim=none
	DMARC DMARCOutcome
	ARC   ARCResult // the Authenticated Received Chain (RFC 8617), reported only
}

// Check authenticates one inbound message: SPF for the SMTP client, every
// DKIM signature, then DMARC for the From domain. msg is the whole message
// as received (header and body).
func Check(ctx context.Context, res Resolver, clientIP net.IP, helo, mailFrom string, msg []byte) Result {
	return CheckReader(ctx, res, clientIP, helo, mailFrom, bytes.NewReader(msg), int64(len(msg)))
}

// CheckReader is Check for a message stored elsewhere (e.g. a blob file);
// it streams the message and never holds it in memory.
func CheckReader(ctx context.Context, res Resolver, clientIP net.IP, helo, mailFrom string, msg io.ReaderAt, size int64) Result {
	var r Result
	r.SPF = CheckSPF(ctx, res, clientIP, helo, mailFrom)
	r.ARC = CheckARC(ctx, res, io.NewSectionReader(msg, 0, size))
	r.DKIM = verifyDKIM(ctx, res, io.NewSectionReader(msg, 0, size), dkimSelectors(io.NewSectionReader(msg, 0, size)))
	from, err := fromDomain(io.NewSectionReader(msg, 0, size))
	if err != nil {
		// No single From domain: DMARC cannot be evaluated (RFC 7489 §6.6.1).
		r.DMARC = DMARCOutcome{Result: DMARCPermerror, Err: err, Percent: 100}
		return r
	}
	r.DMARC = CheckDMARC(ctx, res, from, r.SPF, r.DKIM)
	return r
}

// Reject reports whether the message failed DMARC under a p=reject (or
// sp=reject) policy. A pct= below 100 never rejects: the message gets the
// next weaker policy (RFC 7489 §6.6.4), see Quarantine.
func (r Result) Reject() bool {
	return r.DMARC.Result == DMARCFail && r.DMARC.Applied == "reject" && r.DMARC.Percent >= 100
}

// Quarantine reports whether the message failed DMARC under a quarantine
// policy, or under a reject policy with pct= below 100.
func (r Result) Quarantine() bool {
	if r.DMARC.Result != DMARCFail {
		return false
	}
	return r.DMARC.Applied == "quarantine" || (r.DMARC.Applied == "reject" && r.DMARC.Percent < 100)
}

// Score is the spam-score contribution of the results, in SpamAssassin
// points: SPF fail +2, softfail +1; a failing DKIM signature (none
// passing) +1; DMARC fail +3; an aligned DMARC pass -1.
func (r Result) Score() float64 {
	var s float64
	switch r.SPF.Result {
	case SPFFail:
		s += 2
	case SPFSoftfail:
		s++
	}
	dkimPass, dkimFail := false, false
	for _, d := range r.DKIM {
		switch d.Result {
		case "pass":
			dkimPass = true
		case "fail", "permerror":
			dkimFail = true
		}
	}
	if dkimFail && !dkimPass {
		s++
	}
	switch r.DMARC.Result {
	case DMARCFail:
		s += 3
	case DMARCPass:
		s--
	}
	return s
}

// AuthenticationResults returns the header field (RFC 8601 §2.2), without
// the trailing CRLF, e.g.
//
//	Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=a@example.org;
//	 dkim=pass header.d=example.org header.s=sel; dmarc=pass (p=reject) header.from=example.org
//
// (one line; no folding). Every value taken from the message or the SMTP
// session is emitted as a token or a quoted-string, so no input can add CR,
// LF or a new field.
func (r Result) AuthenticationResults(hostname string) string {
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(arValue(hostname))
	b.WriteString("; spf=")
	b.WriteString(arResult(r.SPF.Result, SPFNone))
	if r.SPF.Identity == "helo" {
		b.WriteString(" smtp.helo=")
		b.WriteString(arValue(r.SPF.Domain))
	} else if r.SPF.Sender != "" {
		b.WriteString(" smtp.mailfrom=")
		b.WriteString(arValue(r.SPF.Sender))
	}
	if len(r.DKIM) == 0 {
		b.WriteString("; dkim=none")
	}
	for _, d := range r.DKIM {
		b.WriteString("; dkim=")
		b.WriteString(arResult(d.Result, "none"))
		if d.Domain != "" {
			b.WriteString(" header.d=")
			b.WriteString(arValue(d.Domain))
		}
		if d.Selector != "" {
			b.WriteString(" header.s=")
			b.WriteString(arValue(d.Selector))
		}
		if d.AUID != "" && !strings.EqualFold(d.AUID, "@"+d.Domain) {
			b.WriteString(" header.i=")
			b.WriteString(arValue(d.AUID))
		}
	}
	b.WriteString("; dmarc=")
	b.WriteString(arResult(r.DMARC.Result, DMARCNone))
	if p := arPolicy(r.DMARC.Policy); p != "" {
		// A comment (RFC 8601 §2.2 CFWS) with the published policy.
		b.WriteString(" (p=" + p)
		if sp := arPolicy(r.DMARC.SubdomainPolicy); sp != "" {
			b.WriteString(" sp=" + sp)
		}
		b.WriteString(")")
	}
	if r.DMARC.FromDomain != "" {
		b.WriteString(" header.from=")
		b.WriteString(arValue(r.DMARC.FromDomain))
	}
	if r.ARC.Result != "" {
		// RFC 8617 §10.1 registers the "arc" method.
		b.WriteString("; arc=")
		b.WriteString(arcResult(r.ARC.Result))
		if r.ARC.Result == ARCPass && isARToken(r.ARC.Sealer) {
			fmt.Fprintf(&b, " (i=%d sealer %s)", r.ARC.Instances, r.ARC.Sealer)
		}
	}
	return b.String()
}

// arResult keeps result keywords to the registered set of lower-case words.
func arResult(s, def string) string {
	switch s {
	case "none", "pass", "fail", "softfail", "neutral", "temperror", "permerror", "policy":
		return s
	}
	return def
}

// arcResult keeps the ARC result to its keywords.
func arcResult(s string) string {
	switch s {
	case ARCNone, ARCPass, ARCFail:
		return s
	}
	return ARCNone
}

// arPolicy passes only the DMARC policy keywords.
func arPolicy(p string) string {
	switch p {
	case "none", "quarantine", "reject":
		return p
	}
	return ""
}

// arValue renders s as an RFC 8601 pvalue: bare when it is a plain
// token/addr-spec, else a quoted-string with everything outside printable
// ASCII dropped and '"' and '\' escaped.
func arValue(s string) string {
	if s != "" && isARToken(s) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			continue
		}
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

// isARToken accepts letters, digits and "-._+" with at most one "@" not at
// the end, which covers domain names and ordinary addresses.
func isARToken(s string) bool {
	ats := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '+':
		case c == '@':
			ats++
		default:
			return false
		}
	}
	return ats <= 1 && !strings.HasSuffix(s, "@")
}

package auth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/textproto"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// DMARC results (RFC 8601 §2.7.1 / RFC 7489 §11.2).
const (
	DMARCNone      = "none"
	DMARCPass      = "pass"
	DMARCFail      = "fail"
	DMARCTemperror = "temperror"
	DMARCPermerror = "permerror"
)

// DMARCOutcome is the result of the DMARC evaluation of one message.
type DMARCOutcome struct {
	Result     string // one of the DMARC* constants
	FromDomain string // RFC5322.From domain (header.from)
	// Policy and SubdomainPolicy are p= and sp= of the record found
	// ("none", "quarantine", "reject"); empty without a record.
	Policy          string
	SubdomainPolicy string
	// Applied is the policy that governs this message: sp= when the record
	// came from the organizational domain and the From domain is a
	// subdomain (RFC 7489 §6.3), else p=.
	Applied     string
	Percent     int // pct=, 100 when absent
	SPFAligned  bool
	DKIMAligned bool
	Err         error
}

// OrgDomain returns the organizational domain (RFC 7489 §3.2) using the
// public suffix list of golang.org/x/net/publicsuffix: the public suffix
// plus one label. A name that is itself a public suffix is returned as is.
func OrgDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// aligned compares an authenticated domain with the From domain in relaxed
// (same organizational domain) or strict (identical) mode (RFC 7489 §3.1).
func aligned(authDomain, fromDomain string, strict bool) bool {
	a := strings.ToLower(strings.TrimSuffix(authDomain, "."))
	f := strings.ToLower(strings.TrimSuffix(fromDomain, "."))
	if a == "" || f == "" {
		return false
	}
	if strict {
		return a == f
	}
	return OrgDomain(a) == OrgDomain(f)
}

// FromDomain extracts the single RFC5322.From domain of msg (RFC 7489 §6.6.1).
func FromDomain(msg []byte) (string, error) {
	return fromDomain(bytes.NewReader(msg))
}

// maxHeaderBytes bounds how much of the header fromDomain reads.
const maxHeaderBytes = 1 << 20

func fromDomain(msg io.Reader) (string, error) {
	tr := textproto.NewReader(bufio.NewReader(io.LimitReader(msg, maxHeaderBytes)))
	h, err := tr.ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return "", fmt.Errorf("auth: read header: %w", err)
	}
	froms := h.Values("From")
	if len(froms) != 1 {
		return "", fmt.Errorf("auth: %d From fields", len(froms))
	}
	addrs, err := (&mail.AddressParser{}).ParseList(froms[0])
	if err != nil {
		return "", fmt.Errorf("auth: parse From: %w", err)
	}
	domains := map[string]bool{}
	for _, a := range addrs {
		i := strings.LastIndexByte(a.Address, '@')
		if i < 0 {
			return "", errors.New("auth: From address without domain")
		}
		domains[strings.ToLower(a.Address[i+1:])] = true
	}
	if len(domains) != 1 {
		return "", fmt.Errorf("auth: From has %d domains", len(domains))
	}
	for d := range domains {
		return d, nil
	}
	return "", errors.New("auth: empty From")
}

// lookupDMARC fetches and parses the record at _dmarc.<domain>. A nil
// record with nil error means "no record".
func lookupDMARC(ctx context.Context, res Resolver, domain string) (*dmarc.Record, error) {
	txts, err := res.LookupTXT(ctx, "_dmarc."+domain)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	var recs []*dmarc.Record
	for _, t := range txts {
		t = strings.TrimSpace(t)
		if !strings.HasPrefix(t, "v=DMARC1") {
			continue // §6.6.3 step 3: discard records not starting with v=DMARC1
		}
		r, err := dmarc.Parse(t)
		if err != nil {
			continue // invalid records are ignored; no policy applies
		}
		recs = append(recs, r)
	}
	if len(recs) != 1 {
		return nil, nil // §6.6.3 step 4: zero or several → no DMARC
	}
	return recs[0], nil
}

// CheckDMARC evaluates DMARC (RFC 7489 §6.6) for the From domain using the
// SPF and DKIM results of the same message.
func CheckDMARC(ctx context.Context, res Resolver, fromDomain string, spf SPFOutcome, dkims []DKIMResult) DMARCOutcome {
	out := DMARCOutcome{Result: DMARCNone, FromDomain: strings.ToLower(strings.TrimSuffix(fromDomain, ".")), Percent: 100}
	if out.FromDomain == "" {
		return out
	}
	// §6.6.3: the From domain first, then the organizational domain.
	rec, err := lookupDMARC(ctx, res, out.FromDomain)
	atOrg := false
	if err == nil && rec == nil {
		if org := OrgDomain(out.FromDomain); org != out.FromDomain {
			rec, err = lookupDMARC(ctx, res, org)
			atOrg = true
		}
	}
	if err != nil {
		out.Result, out.Err = DMARCTemperror, err
		return out
	}
	if rec == nil {
		return out
	}
	out.Policy = string(rec.Policy)
	out.SubdomainPolicy = string(rec.SubdomainPolicy)
	out.Applied = out.Policy
	if atOrg && out.SubdomainPolicy != "" {
		out.Applied = out.SubdomainPolicy
	}
	if rec.Percent != nil {
		out.Percent = *rec.Percent
	}
	if spf.Result == SPFPass {
		out.SPFAligned = aligned(spf.Domain, out.FromDomain, rec.SPFAlignment == dmarc.AlignmentStrict)
	}
	for _, d := range dkims {
		if d.Result == "pass" && aligned(d.Domain, out.FromDomain, rec.DKIMAlignment == dmarc.AlignmentStrict) {
			out.DKIMAligned = true
		}
	}
	if out.SPFAligned || out.DKIMAligned {
		out.Result = DMARCPass
		return out
	}
	out.Result = DMARCFail
	return out
}

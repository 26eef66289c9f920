package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// Key algorithms accepted by GenerateKey.
const (
	AlgRSA2048 = "rsa2048"
	AlgEd25519 = "ed25519"
)

// Key is a DKIM private key (RSA, RFC 6376 §3.3.1, or Ed25519, RFC 8463).
type Key struct {
	Alg    string        // AlgRSA2048 or AlgEd25519
	Signer crypto.Signer // *rsa.PrivateKey or ed25519.PrivateKey
}

// GenerateKey creates a new DKIM key; alg is "rsa2048" or "ed25519".
func GenerateKey(alg string) (Key, error) {
	switch alg {
	case AlgRSA2048:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return Key{}, fmt.Errorf("auth: generate rsa key: %w", err)
		}
		return Key{Alg: alg, Signer: k}, nil
	case AlgEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return Key{}, fmt.Errorf("auth: generate ed25519 key: %w", err)
		}
		return Key{Alg: alg, Signer: k}, nil
	}
	return Key{}, fmt.Errorf("auth: unknown key algorithm %q", alg)
}

// MarshalPEM encodes the private key as a PKCS#8 "PRIVATE KEY" PEM block.
func (k Key) MarshalPEM() ([]byte, error) {
	if k.Signer == nil {
		return nil, errors.New("auth: empty key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		return nil, fmt.Errorf("auth: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM decodes a key written by MarshalPEM (PKCS#8), or a PKCS#1
// "RSA PRIVATE KEY" block.
func ParseKeyPEM(b []byte) (Key, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return Key{}, errors.New("auth: no PEM block")
	}
	var (
		k   any
		err error
	)
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return Key{}, fmt.Errorf("auth: unexpected PEM block %q", blk.Type)
	}
	if err != nil {
		return Key{}, fmt.Errorf("auth: parse key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return Key{}, errors.New("auth: rsa key shorter than 1024 bits") // RFC 8301 §3.2
		}
		return Key{Alg: AlgRSA2048, Signer: k}, nil
	case ed25519.PrivateKey:
		return Key{Alg: AlgEd25519, Signer: k}, nil
	}
	return Key{}, fmt.Errorf("auth: unsupported key type %T", k)
}

// DNSRecord returns the TXT record value to publish at
// <selector>._domainkey.<domain> (RFC 6376 §3.6.1; RFC 8463 §4 for ed25519,
// whose p= is the raw 32-byte key).
func (k Key) DNSRecord() (string, error) {
	switch pub := k.Signer.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("auth: marshal public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", errors.New("auth: unsupported key type")
}

// SplitTXT splits a TXT value into character-strings of at most 255 bytes
// (RFC 1035 §3.3); resolvers join them again (RFC 6376 §3.6.2.2).
func SplitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// ZoneRecord returns the DNS record as a zone-file line, with the value split
// into quoted 255-byte strings.
func (k Key) ZoneRecord(domain, selector string) (string, error) {
	v, err := k.DNSRecord()
	if err != nil {
		return "", err
	}
	parts := SplitTXT(v)
	for i, p := range parts {
		parts[i] = `"` + p + `"`
	}
	return fmt.Sprintf("%s._domainkey.%s. IN TXT ( %s )", selector, strings.TrimSuffix(domain, "."), strings.Join(parts, " ")), nil
}

// signedHeaders are the fields signed (RFC 6376 §5.4.1). Fields absent from
// the message are still listed, which forbids adding them later (§5.4.2).
var signedHeaders = []string{
	"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// Sign reads a message from r and writes it to w with a DKIM-Signature
// header prepended, using relaxed/relaxed canonicalization and SHA-256.
func Sign(r io.Reader, w io.Writer, domain, selector string, key Key) error {
	if key.Signer == nil {
		return errors.New("auth: dkim sign: no key")
	}
	opts := &dkim.SignOptions{
		Domain:                 domain,
		Selector:               selector,
		Signer:                 key.Signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             signedHeaders,
	}
	if err := dkim.Sign(w, r, opts); err != nil {
		return fmt.Errorf("auth: dkim sign: %w", err)
	}
	return nil
}

// DKIMResult is the outcome of one DKIM-Signature (RFC 8601 §2.7.1).
type DKIMResult struct {
	Result   string // "pass", "fail", "neutral", "temperror", "permerror"
	Domain   string // d=
	Selector string // s=
	AUID     string // i=
	Err      error  // why it did not pass
}

// maxDKIMSignatures bounds the work one message can cause.
const maxDKIMSignatures = 8

// VerifyDKIM checks every DKIM-Signature of msg (at most 8). No
// signatures gives nil (dkim=none).
func VerifyDKIM(ctx context.Context, res Resolver, msg []byte) []DKIMResult {
	return verifyDKIM(ctx, res, bytes.NewReader(msg), dkimSelectors(bytes.NewReader(msg)))
}

// dkimSelectors returns the s= tag of each DKIM-Signature field, in order.
func dkimSelectors(msg io.Reader) []string {
	tr := textproto.NewReader(bufio.NewReader(io.LimitReader(msg, maxHeaderBytes)))
	h, _ := tr.ReadMIMEHeader()
	var out []string
	for _, v := range h.Values("DKIM-Signature") {
		sel := ""
		for _, tag := range strings.Split(v, ";") {
			k, val, _ := strings.Cut(tag, "=")
			if strings.TrimSpace(k) == "s" {
				sel = strings.Join(strings.Fields(val), "")
			}
		}
		out = append(out, sel)
	}
	return out
}

// verifyDKIM verifies msg; selectors (from dkimSelectors) are attached to
// the results when their count matches the signatures seen.
func verifyDKIM(ctx context.Context, res Resolver, msg io.Reader, selectors []string) []DKIMResult {
	opts := &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return res.LookupTXT(ctx, name) },
		MaxVerifications: maxDKIMSignatures,
	}
	vs, err := dkim.VerifyWithOptions(msg, opts)
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return []DKIMResult{{Result: "permerror", Err: fmt.Errorf("auth: dkim: %w", err)}}
	}
	out := make([]DKIMResult, 0, len(vs))
	for _, v := range vs {
		r := DKIMResult{Domain: strings.ToLower(v.Domain), AUID: v.Identifier, Err: v.Err}
		switch {
		case v.Err == nil:
			r.Result = "pass"
		case dkim.IsTempFail(v.Err):
			r.Result = "temperror"
		case dkim.IsPermFail(v.Err):
			r.Result = "permerror"
		default:
			r.Result = "fail"
		}
		out = append(out, r)
	}
	if len(selectors) >= len(out) {
		for i := range out {
			out[i].Selector = selectors[i]
		}
	}
	return out
}

package dkimsign

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// SignedHeaders are the header fields covered by Tandem's signatures (RFC
// 6376 §5.4.1). From is listed twice: the second, absent instance signs
// "no further From field", so a From field added in transit breaks the
// signature (oversigning, RFC 6376 §8.15). Listed fields that are absent
// from the message are signed as empty, which likewise forbids adding them
// later (§5.4.2).
var SignedHeaders = []string{
	"From", "From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"MIME-Version", "Content-Type", "In-Reply-To", "References",
	// The secure-signature link: signed when present, and when absent its
	// later addition breaks the signature.
	VerifyHeader,
}

// Signatures reads a whole message from msg once and returns one
// DKIM-Signature header field per key (each ending in CRLF), to be
// prepended to the message in the order returned. Relaxed/relaxed
// canonicalization (RFC 6376 §3.4.2, §3.4.4) survives the usual header
// refolding of relays; the hash is SHA-256 (RFC 8301).
func Signatures(msg io.Reader, keys []SigningKey) (string, error) {
	if len(keys) == 0 {
		return "", errors.New("dkim: no keys to sign with")
	}
	signers := make([]*dkim.Signer, 0, len(keys))
	closeAll := func() {
		for _, s := range signers {
			s.Close()
		}
	}
	writers := make([]io.Writer, 0, len(keys))
	for _, k := range keys {
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.Key.Signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             SignedHeaders,
		})
		if err != nil {
			closeAll()
			return "", fmt.Errorf("dkim: signer for %s: %w", keyName(k.Domain, k.Selector), err)
		}
		signers = append(signers, s)
		writers = append(writers, s)
	}
	if _, err := io.Copy(io.MultiWriter(writers...), msg); err != nil {
		closeAll()
		return "", fmt.Errorf("dkim: read message: %w", err)
	}
	var b strings.Builder
	var errs []error
	for i, s := range signers {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("dkim: sign with %s: %w", keyName(keys[i].Domain, keys[i].Selector), err))
			continue
		}
		b.WriteString(s.Signature())
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return b.String(), nil
}

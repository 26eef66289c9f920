package smtpd

import (
	"crypto/tls"

	"github.com/tandemmail/tandem/filter"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// received builds this hop's trace field (RFC 5321 §4.4):
//
//	Received: from HELO ([IP])
//		by HOSTNAME (Tandem) with ESMTPSA (TLS1.3 TLS_AES_128_GCM_SHA256)
//		id MSGID
//		for <rcpt>; DATE
//
// The protocol name is from RFC 3848 (S: TLS, A: authenticated) and
// RFC 6531 §3.7.4 (UTF8SMTP…); "for" is only given for a single recipient,
// so a message does not reveal its other recipients.
func (s *session) received(env *filter.Envelope, rcpts []string, now time.Time) string {
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(traceToken(s.c.Hostname(), "unknown", false))
	b.WriteString(" ([")
	if s.ip != nil {
		b.WriteString(s.ip.String())
	}
	b.WriteString("])\r\n\tby ")
	b.WriteString(traceToken(s.srv.cfg.Hostname, "localhost", false))
	b.WriteString(" (Tandem) with ")
	proto := "ESMTP"
	if env.SMTPUTF8 {
		proto = "UTF8SMTP"
	}
	if s.tls {
		proto += "S"
	}
	if s.accountID != 0 {
		proto += "A"
	}
	b.WriteString(proto)
	if s.tls {
		b.WriteString(" (")
		b.WriteString(tlsVersion(s.tlsSt.Version))
		b.WriteString(" ")
		b.WriteString(tls.CipherSuiteName(s.tlsSt.CipherSuite))
		b.WriteString(")")
	}
	b.WriteString("\r\n\tid ")
	b.WriteString(env.ID)
	if len(rcpts) == 1 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(traceToken(rcpts[0], "unknown", env.SMTPUTF8))
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	b.WriteString(now.Format(time.RFC1123Z)) // RFC 5322 §3.3 date-time
	b.WriteString("\r\n")
	return b.String()
}

// traceToken keeps client-supplied text from breaking the header: printable
// ASCII without spaces, parentheses or brackets, at most 255 bytes; UTF-8
// letters only in SMTPUTF8 messages (RFC 6532 §3.2).
func traceToken(v, empty string, utf8OK bool) string {
	if len(v) > 255 {
		v = v[:255]
	}
	v = strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("()<>[];\\\"", r) ||
			r > 0x7f && (!utf8OK || r == utf8.RuneError || !unicode.IsPrint(r)) {
			return '_'
		}
		return r
	}, v)
	if v == "" {
		return empty
	}
	return v
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS1.0"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS13:
		return "TLS1.3"
	}
	return "TLS"
}

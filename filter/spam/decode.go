package spam

import (
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
)

// decodeTransfer undoes a Content-Transfer-Encoding (RFC 2045 §6) leniently:
// spam often carries broken base64 or QP, and the words that survive are
// still evidence. Damage is recorded as a token. The result may alias raw.
func decodeTransfer(cte string, raw []byte, t *tokenizer) []byte {
	switch cte {
	case "base64":
		out, bad := decodeBase64(raw)
		if bad {
			t.add("mime:bad-base64")
		}
		return out
	case "quoted-printable":
		out, bad := decodeQP(raw)
		if bad {
			t.add("mime:bad-qp")
		}
		return out
	}
	return raw
}

// base64Value maps a base64 alphabet byte (RFC 2045 §6.8) to its value, and
// other bytes to 0xFF.
func base64Value(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26
	case '0' <= c && c <= '9':
		return c - '0' + 52
	case c == '+':
		return 62
	case c == '/':
		return 63
	}
	return 0xFF
}

// decodeBase64 decodes in place, skipping line breaks and, as RFC 2045 §6.8
// asks of decoders, any character outside the alphabet. bad reports
// characters other than whitespace and padding, or a dangling sextet.
func decodeBase64(raw []byte) (out []byte, bad bool) {
	out = raw[:0] // writes trail reads: 3 bytes out per 4 in
	var acc uint32
	n := 0
	for _, c := range raw {
		v := base64Value(c)
		if v == 0xFF {
			switch c {
			case '\r', '\n', ' ', '\t', '=':
			default:
				bad = true
			}
			continue
		}
		acc = acc<<6 | uint32(v)
		n++
		if n == 4 {
			out = append(out, byte(acc>>16), byte(acc>>8), byte(acc))
			acc, n = 0, 0
		}
	}
	switch n {
	case 1:
		bad = true
	case 2:
		out = append(out, byte(acc>>4))
	case 3:
		out = append(out, byte(acc>>10), byte(acc>>2))
	}
	return out, bad
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodeQP decodes quoted-printable (RFC 2045 §6.7) in place. A malformed
// "=" sequence is kept literally, as §6.7 (note 1) suggests.
func decodeQP(raw []byte) (out []byte, bad bool) {
	out = raw[:0]
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		rest := raw[i+1:]
		switch {
		case len(rest) >= 2 && rest[0] == '\r' && rest[1] == '\n':
			i += 2 // soft line break
		case len(rest) >= 1 && rest[0] == '\n':
			i++
		default:
			j := 0 // transport padding before a soft break: "=  \r\n"
			for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
				j++
			}
			if j > 0 && j < len(rest) && (rest[j] == '\r' || rest[j] == '\n') {
				i += j
				continue
			}
			if len(rest) >= 2 {
				hi, ok1 := unhex(rest[0])
				lo, ok2 := unhex(rest[1])
				if ok1 && ok2 {
					out = append(out, hi<<4|lo)
					i += 2
					continue
				}
			}
			bad = true
			out = append(out, '=')
		}
	}
	return out, bad
}

// lookupCharset finds a decoder for a MIME charset name using the WHATWG
// encoding index (which maps gb2312 to GBK and iso-8859-1 to windows-1252,
// as mail clients do). nil means UTF-8 or ASCII; ok false means unknown.
func lookupCharset(name string) (enc encoding.Encoding, ok bool) {
	name = strings.ToLower(strings.Trim(strings.TrimSpace(name), `"'`))
	switch name {
	case "", "utf-8", "utf8", "us-ascii", "ascii", "ansi_x3.4-1968", "default", "unknown-8bit", "x-unknown":
		return nil, true
	case "gb2312", "gbk", "cp936", "x-gbk", "euc-cn", "hz-gb-2312":
		// GB18030 is a superset of GBK and GB2312.
		name = "gb18030"
	case "big5-hkscs", "x-big5", "cp950":
		name = "big5"
	}
	e, err := htmlindex.Get(name)
	if err != nil {
		return nil, false
	}
	return e, true
}

// toUTF8 converts a part's text to UTF-8. Text that claims UTF-8 (or
// nothing) but is not valid UTF-8 is read as windows-1252, the usual truth of
// unlabelled 8-bit mail; invalid bytes in other charsets become U+FFFD.
func (t *tokenizer) toUTF8(data []byte, charset string) string {
	enc, ok := lookupCharset(charset)
	if !ok {
		t.add("cs:unknown")
	}
	if isASCII(data) {
		return string(data)
	}
	if enc == nil {
		if utf8.Valid(data) {
			return string(data)
		}
		enc = charmap.Windows1252
	}
	out, err := enc.NewDecoder().Bytes(data)
	if err != nil {
		return strings.ToValidUTF8(string(data), "\uFFFD")
	}
	return string(out)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// decodeHeaderValue decodes RFC 2047 encoded-words; raw 8-bit header text
// that is not UTF-8 is read in the message's declared charset, or GB18030,
// the commonest unlabelled 8-bit header charset in Chinese mail. Charsets of
// encoded-words are recorded as "hcs:" tokens.
func decodeHeaderValue(v string, t *tokenizer) string {
	if strings.Contains(v, "=?") {
		d := mime.WordDecoder{CharsetReader: func(cs string, r io.Reader) (io.Reader, error) {
			t.add("hcs:" + strings.ToLower(cs))
			enc, ok := lookupCharset(cs)
			if !ok {
				return nil, fmt.Errorf("unknown charset %q", cs)
			}
			if enc == nil {
				return r, nil
			}
			return enc.NewDecoder().Reader(r), nil
		}}
		if dv, err := d.DecodeHeader(v); err == nil {
			v = dv
		} else {
			t.add("hdr:bad-2047")
		}
	}
	if utf8.ValidString(v) {
		return v
	}
	t.add("hdr:8bit")
	enc, ok := lookupCharset(t.charset)
	if !ok || enc == nil {
		enc, _ = lookupCharset("gb18030")
	}
	if out, err := enc.NewDecoder().String(v); err == nil {
		return out
	}
	return strings.ToValidUTF8(v, "\uFFFD")
}

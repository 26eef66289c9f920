package dkimsign

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// Namespaces of the secure signature (SPEC S2).
const (
	NSSignatureDomains = "signature.domains"
	NSSignatureRecords = "signature.records"
)

// VerifyHeader is the header field carrying the verification link.
const VerifyHeader = "X-Tandem-Verify"

// DefaultSignatureTTL is how long a verification link works.
const DefaultSignatureTTL = 90 * 24 * time.Hour

// SignatureDomain marks a domain opted in to the secure signature.
type SignatureDomain struct {
	Domain string `json:"domain"`
	Since  int64  `json:"since"`
}

// SignatureRecord is what the sending server remembers about one message.
type SignatureRecord struct {
	Sender       string   `json:"sender"`        // RFC 5322 From (address)
	EnvelopeFrom string   `json:"envelope_from"` // RFC 5321 MAIL FROM
	Recipients   []string `json:"recipients"`
	Time         int64    `json:"time"`
	Subject      string   `json:"subject"`     // decoded (RFC 2047)
	BodySHA256   string   `json:"body_sha256"` // hex SHA-256 of the canonical body as sent
	Expires      int64    `json:"expires"`
}

// tokenEncoding is lower-case base32 without padding: 128 bits → 26
// characters, safe in URLs and case-insensitive readers.
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewToken returns an unguessable token: 128 random bits.
func NewToken() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return tokenEncoding.EncodeToString(b)
}

// ValidToken reports whether s has the shape of a token.
func ValidToken(s string) bool {
	if len(s) != 26 {
		return false
	}
	_, err := tokenEncoding.DecodeString(s)
	return err == nil
}

// SignatureEnabled reports whether domain opted in.
func SignatureEnabled(st Store, domain string) bool {
	_, _, ok, err := st.KVGet(NSSignatureDomains, normDomain(domain))
	return err == nil && ok
}

// SignatureDomains lists the opted-in domains.
func SignatureDomains(st Store) ([]SignatureDomain, error) {
	out := []SignatureDomain{}
	err := st.KVList(NSSignatureDomains, "", func(key string, value []byte, _ uint64) error {
		var d SignatureDomain
		if err := json.Unmarshal(value, &d); err != nil {
			return fmt.Errorf("signature domain %s: %w", key, err)
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

// SetSignature turns the secure signature of a hosted domain on or off.
func SetSignature(ctx context.Context, st Store, domain string, on bool, now time.Time) error {
	domain = normDomain(domain)
	if !st.HasDomain(domain) {
		return fmt.Errorf("%w: %s", ErrNoDomain, domain)
	}
	if !on {
		return st.KVApply(ctx, storage.KVOp{Op: storage.KVDelete, NS: NSSignatureDomains, Key: domain})
	}
	b, _ := json.Marshal(SignatureDomain{Domain: domain, Since: now.Unix()})
	return st.KVApply(ctx, storage.KVOp{Op: storage.KVPut, NS: NSSignatureDomains, Key: domain, Value: b})
}

// PutRecord stores a record under a fresh token and returns the token.
func PutRecord(ctx context.Context, st Store, token string, rec SignatureRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("signature: encode record: %w", err)
	}
	if err := st.KVApply(ctx, storage.KVOp{Op: storage.KVPut, NS: NSSignatureRecords, Key: token, Value: b,
		IfVersion: storage.Version(0)}); err != nil {
		return fmt.Errorf("signature: store record: %w", err)
	}
	return nil
}

// GetRecord returns the live record of token; unknown, malformed and
// expired tokens all give ok=false, so a caller reveals nothing about them.
func GetRecord(st Store, token string, now time.Time) (SignatureRecord, bool) {
	if !ValidToken(token) {
		return SignatureRecord{}, false
	}
	v, _, ok, err := st.KVGet(NSSignatureRecords, token)
	if err != nil || !ok {
		return SignatureRecord{}, false
	}
	var rec SignatureRecord
	if json.Unmarshal(v, &rec) != nil || now.Unix() >= rec.Expires {
		return SignatureRecord{}, false
	}
	return rec, true
}

// PruneRecords removes expired records, at most 1000 per Raft entry.
func PruneRecords(ctx context.Context, st Store, now time.Time) (int, error) {
	var ops []storage.KVOp
	err := st.KVList(NSSignatureRecords, "", func(key string, value []byte, version uint64) error {
		var rec SignatureRecord
		if json.Unmarshal(value, &rec) != nil || now.Unix() >= rec.Expires {
			ops = append(ops, storage.KVOp{Op: storage.KVDelete, NS: NSSignatureRecords, Key: key, IfVersion: storage.Version(version)})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	done := 0
	for len(ops) > 0 {
		n := min(len(ops), 1000)
		if err := st.KVApply(ctx, ops[:n]...); err != nil {
			return done, fmt.Errorf("signature: prune records: %w", err)
		}
		done += n
		ops = ops[n:]
	}
	return done, nil
}

// bodyCanon hashes a message body in the canonical form the verification
// compares: every line ending (CRLF, or a bare LF as left by a copy and
// paste) becomes CRLF, and trailing empty lines are dropped so the body
// ends in exactly one CRLF (as RFC 6376 §3.4.3 does for DKIM's "simple"
// body). Pasting a message through a browser form therefore gives the
// same hash as the bytes sent.
type bodyCanon struct {
	h       hash.Hash
	w       *bufio.Writer
	pending int // line ends seen and not yet written
	cr      bool
}

func newBodyCanon() *bodyCanon {
	h := sha256.New()
	return &bodyCanon{h: h, w: bufio.NewWriterSize(h, 32<<10)}
}

func (c *bodyCanon) flush() {
	for ; c.pending > 0; c.pending-- {
		c.w.WriteString("\r\n")
	}
}

func (c *bodyCanon) Write(p []byte) (int, error) {
	for _, b := range p {
		switch {
		case b == '\n':
			c.pending++
			c.cr = false
			continue
		case c.cr:
			// A CR not followed by LF is content.
			c.flush()
			c.w.WriteByte('\r')
			c.cr = false
		}
		if b == '\r' {
			c.cr = true
			continue
		}
		c.flush()
		c.w.WriteByte(b)
	}
	return len(p), nil
}

// Sum finishes the hash and returns it in hex.
func (c *bodyCanon) Sum() string {
	if c.cr {
		c.flush()
		c.w.WriteByte('\r')
	}
	c.w.WriteString("\r\n")
	c.w.Flush()
	return hex.EncodeToString(c.h.Sum(nil))
}

// BodyHash returns the hex SHA-256 of a body in canonical form.
func BodyHash(body io.Reader) (string, error) {
	c := newBodyCanon()
	if _, err := io.Copy(c, body); err != nil {
		return "", err
	}
	return c.Sum(), nil
}

// splitHeader returns the header section (including the empty line) and
// the body of a whole message; ok is false when there is no empty line.
func splitHeader(msg []byte) (header, body []byte, ok bool) {
	for i := 0; i < len(msg); {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			break
		}
		line := msg[i : i+j]
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return msg[:i+j+1], msg[i+j+1:], true
		}
		i += j + 1
	}
	return nil, msg, false
}

// MatchMessage reports whether pasted (a whole received message with its
// header, or only its body) has the body recorded in rec.
func MatchMessage(rec SignatureRecord, pasted []byte) bool {
	if _, body, ok := splitHeader(pasted); ok {
		if h, _ := BodyHash(bytes.NewReader(body)); h == rec.BodySHA256 {
			return true
		}
	}
	h, _ := BodyHash(bytes.NewReader(pasted))
	return h == rec.BodySHA256
}

// StampResult is what Stamp learned and did.
type StampResult struct {
	From       string // From address ("" when unparseable)
	FromDomain string
	Subject    string // decoded
	BodySHA256 string
	Footer     bool // a footer line was added to the body
}

// maxStampHeader bounds the header section Stamp reads.
const maxStampHeader = 1 << 20

// Stamp copies a message from r to w with the verification link added: a
// VerifyHeader field on top and, for a single-part text/plain body in a
// 7bit or 8bit transfer encoding and an ASCII-compatible charset, one
// footer line at the end of the body (other bodies would need MIME
// surgery: they get only the header field). It hashes the body as written.
func Stamp(w io.Writer, r io.Reader, link string) (StampResult, error) {
	var res StampResult
	br := bufio.NewReaderSize(r, 64<<10)
	var header bytes.Buffer
	midLine, blank := false, false
	for {
		line, err := br.ReadSlice('\n')
		header.Write(line)
		if header.Len() > maxStampHeader {
			return res, errors.New("signature: header section too large")
		}
		if err == bufio.ErrBufferFull {
			midLine = true
			continue
		}
		if err == io.EOF {
			break // no body
		}
		if err != nil {
			return res, fmt.Errorf("signature: read header: %w", err)
		}
		if !midLine && (len(line) == 1 || (len(line) == 2 && line[0] == '\r')) {
			blank = true
			break
		}
		midLine = false
	}
	hdr, _ := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(header.Bytes()), strings.NewReader("\r\n")))).ReadMIMEHeader()
	if a, err := mail.ParseAddress(hdr.Get("From")); err == nil {
		res.From = strings.ToLower(a.Address)
		if i := strings.LastIndexByte(res.From, '@'); i >= 0 {
			res.FromDomain = res.From[i+1:]
		}
	}
	res.Subject = hdr.Get("Subject")
	if s, err := new(mime.WordDecoder).DecodeHeader(res.Subject); err == nil {
		res.Subject = s
	}
	res.Footer = footerSafe(hdr.Get("Content-Type"), hdr.Get("Content-Transfer-Encoding"))
	if _, err := io.WriteString(w, VerifyHeader+": "+link+"\r\n"); err != nil {
		return res, err
	}
	if _, err := w.Write(header.Bytes()); err != nil {
		return res, err
	}
	canon := newBodyCanon()
	tail := &lastBytes{}
	if _, err := io.Copy(io.MultiWriter(w, canon, tail), br); err != nil {
		return res, fmt.Errorf("signature: copy body: %w", err)
	}
	if res.Footer {
		footer := "Verify this message: " + link + "\r\n"
		switch {
		case !blank:
			// No empty line ended the header: end it before the body.
			sep := "\r\n"
			if header.Len() > 0 && header.Bytes()[header.Len()-1] != '\n' {
				sep = "\r\n\r\n"
			}
			if _, err := io.WriteString(w, sep); err != nil {
				return res, err
			}
		case tail.n > 0 && tail.last != '\n':
			footer = "\r\n" + footer
		}
		if _, err := io.WriteString(io.MultiWriter(w, canon), footer); err != nil {
			return res, err
		}
	}
	res.BodySHA256 = canon.Sum()
	return res, nil
}

// lastBytes remembers how much was written and the last byte.
type lastBytes struct {
	n    int64
	last byte
}

func (l *lastBytes) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.n += int64(len(p))
		l.last = p[len(p)-1]
	}
	return len(p), nil
}

// footerSafe reports whether a line can be appended to the body without
// breaking its MIME structure or encoding.
func footerSafe(ctype, cte string) bool {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit":
	default:
		return false
	}
	if strings.TrimSpace(ctype) == "" {
		return true // RFC 2045 §5.2: text/plain; charset=us-ascii
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil || mt != "text/plain" {
		return false
	}
	cs := strings.ToLower(params["charset"])
	return !strings.HasPrefix(cs, "utf-16") && !strings.HasPrefix(cs, "utf-32") && cs != "utf-7"
}

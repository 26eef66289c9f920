package spam

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
)

// Limits bound the work the tokenizer does on one message, so a hostile
// message (RELIABILITY #29-#31: MIME bombs, header bombs, broken encodings)
// costs at most a fixed amount of time and memory. Zero fields take the
// defaults of DefaultLimits.
type Limits struct {
	MaxBytes        int64 // raw message bytes read; the rest is ignored
	MaxTextBytes    int   // decoded text scanned over all parts
	MaxPartBytes    int   // decoded bytes scanned in one part
	MaxParts        int   // MIME parts visited
	MaxDepth        int   // multipart and message/rfc822 nesting followed
	MaxHeaderFields int   // header fields tokenized per header block
	MaxFieldBytes   int   // bytes of one header field value tokenized
	MaxTokens       int   // distinct tokens kept
}

// maxParamBytes bounds the Content-Type and Content-Disposition text parsed.
const maxParamBytes = 8 << 10

// DefaultLimits returns limits generous for real mail: SpamAssassin's spamc skips
// messages over 500 KB entirely; we read 1 MiB and still classify larger
// messages on what we read.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:        1 << 20,
		MaxTextBytes:    512 << 10,
		MaxPartBytes:    256 << 10,
		MaxParts:        100,
		MaxDepth:        20,
		MaxHeaderFields: 200,
		MaxFieldBytes:   4 << 10,
		MaxTokens:       8000,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes > 0 {
		d.MaxBytes = l.MaxBytes
	}
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	set(&d.MaxTextBytes, l.MaxTextBytes)
	set(&d.MaxPartBytes, l.MaxPartBytes)
	set(&d.MaxParts, l.MaxParts)
	set(&d.MaxDepth, l.MaxDepth)
	set(&d.MaxHeaderFields, l.MaxHeaderFields)
	set(&d.MaxFieldBytes, l.MaxFieldBytes)
	set(&d.MaxTokens, l.MaxTokens)
	return d
}

// Tokenize reads a message (RFC 5322, with or without an mbox "From " line)
// and returns its distinct tokens in first-seen order. Malformed input never
// fails: whatever could be read is tokenized, and hints such as
// "mime:bad-base64" record what was wrong. The only errors are r's own read
// errors and ctx's.
func Tokenize(ctx context.Context, r io.Reader, lim Limits) ([]string, error) {
	t := newTokenizer(lim)
	er := &errReader{r: r}
	lr := &io.LimitedReader{R: er, N: t.lim.MaxBytes}
	br := bufio.NewReaderSize(lr, 16<<10)
	// An mbox "From " separator line is not a header field.
	if b, _ := br.Peek(5); string(b) == "From " {
		skipLine(br)
	}
	hdr := readHeader(br)
	t.headers(hdr, 0)
	t.entity(ctx, hdr, br, 0)
	if lr.N <= 0 {
		t.add("msg:truncated")
	}
	t.shape(t.lim.MaxBytes - lr.N)
	if er.err != nil {
		return nil, er.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return t.out, nil
}

// errReader remembers the first error of its reader other than io.EOF, so a
// failing disk is not mistaken for the end of the message.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}

func skipLine(br *bufio.Reader) {
	for {
		_, isPrefix, err := br.ReadLine()
		if !isPrefix || err != nil {
			return
		}
	}
}

// field is one header field, unfolded, key canonicalized by go-message.
type field struct{ key, value string }

// header is a header block in its original order.
type header []field

// get returns the first value of key (canonical form, e.g. "Content-Type").
func (h header) get(key string) string {
	for _, f := range h {
		if f.key == key {
			return f.value
		}
	}
	return ""
}

func appendFields(h header, th textproto.Header) header {
	fs := th.Fields()
	for fs.Next() {
		h = append(h, field{fs.Key(), fs.Value()})
	}
	return h
}

// readHeader reads a header block with go-message, going on past malformed
// lines (go-message stops at the first one) until the blank line, the end of
// input, or a budget of lines.
func readHeader(br *bufio.Reader) header {
	var h header
	for range 1000 {
		th, err := textproto.ReadHeader(br)
		h = appendFields(h, th)
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return h
		}
		if _, perr := br.Peek(1); perr != nil {
			return h
		}
	}
	return h
}

// tokenizer holds one message's tokens and budgets.
type tokenizer struct {
	lim      Limits
	seen     map[string]struct{}
	out      []string
	parts    int
	textLeft int
	scratch  []byte // prefix+word assembly
	lower    []byte // a lowercased word
	raw      []byte // a part's raw body, reused
	charset  string // the top-level charset, for raw 8-bit header text
	sawPlain bool   // a text/plain part was seen
	sawHTML  bool   // a text/html part (or HTML sent as text) was seen
	urls     int    // URLs seen
}

func newTokenizer(lim Limits) *tokenizer {
	lim = lim.withDefaults()
	return &tokenizer{
		lim:      lim,
		seen:     make(map[string]struct{}, 512),
		out:      make([]string, 0, 512),
		textLeft: lim.MaxTextBytes,
	}
}

func (t *tokenizer) full() bool { return len(t.out) >= t.lim.MaxTokens }

// add records token once.
func (t *tokenizer) add(token string) {
	if t.full() {
		return
	}
	if !utf8.ValidString(token) {
		// Raw 8-bit header bytes: keep tokens printable for Reasons and logs.
		token = strings.ToValidUTF8(token, "\uFFFD")
	}
	if strings.IndexFunc(token, unicode.IsControl) >= 0 {
		// A stray CR or other control byte (a malformed header line) is
		// never part of a token: tokens appear in logs and verdict reasons.
		token = strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return -1
			}
			return r
		}, token)
		if token == "" || strings.HasSuffix(token, ":") {
			return
		}
	}
	if _, ok := t.seen[token]; ok {
		return
	}
	t.seen[token] = struct{}{}
	t.out = append(t.out, token)
}

// addPrefixed records prefix+word, allocating only for a new token.
func (t *tokenizer) addPrefixed(prefix string, word []byte) { addJoined(t, prefix, word) }

// addPrefixedString is addPrefixed for a string word.
func (t *tokenizer) addPrefixedString(prefix, word string) { addJoined(t, prefix, word) }

func addJoined[W string | []byte](t *tokenizer, prefix string, word W) {
	if t.full() {
		return
	}
	t.scratch = append(append(t.scratch[:0], prefix...), word...)
	if _, ok := t.seen[string(t.scratch)]; ok {
		return
	}
	if !utf8.Valid(t.scratch) {
		t.add(string(t.scratch))
		return
	}
	s := string(t.scratch)
	t.seen[s] = struct{}{}
	t.out = append(t.out, s)
}

// mediaType parses a Content-Type leniently: a value mime cannot parse still
// yields its lowercased type, and an empty one the RFC 2045 §5.2 default.
func mediaType(v string) (string, map[string]string) {
	// A real Content-Type is short; parameter bombs (RELIABILITY #30:
	// 100k RFC 2231 parameters) are parsed only as far as this.
	v = strings.TrimSpace(v[:min(len(v), maxParamBytes)])
	if v == "" {
		return "text/plain", nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil && mt == "" {
		mt, _, _ = strings.Cut(v, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	if !strings.Contains(mt, "/") {
		return "text/plain", params
	}
	return mt, params
}

// entity tokenizes one MIME entity whose header is h and whose body is the
// rest of body.
func (t *tokenizer) entity(ctx context.Context, h header, body io.Reader, depth int) {
	if t.parts >= t.lim.MaxParts {
		t.add("mime:too-many-parts")
		return
	}
	if ctx.Err() != nil {
		return
	}
	t.parts++
	ct, params := mediaType(h.get("Content-Type"))
	cte := strings.ToLower(strings.TrimSpace(h.get("Content-Transfer-Encoding")))
	charset := strings.ToLower(params["charset"])
	// The type of an attachment is evidence; the type, encoding and charset
	// of text parts only repeat what the words say (and on the validation
	// set they pushed HTML newsletters over the spam cutoff).
	if !strings.HasPrefix(ct, "text/") && !strings.HasPrefix(ct, "multipart/") {
		t.add("ct:" + ct)
	}
	if name := attachmentName(h, params); name != "" {
		t.filename(name)
	}
	switch {
	case strings.HasPrefix(ct, "multipart/"):
		boundary := params["boundary"]
		if boundary == "" {
			t.add("mime:no-boundary")
			t.textPart(body, cte, charset, false)
			return
		}
		if depth >= t.lim.MaxDepth {
			t.add("mime:too-deep")
			return
		}
		mr := textproto.NewMultipartReader(body, boundary)
		for t.parts < t.lim.MaxParts && !t.full() {
			p, err := mr.NextPart()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.add("mime:broken-multipart")
				}
				return
			}
			t.entity(ctx, appendFields(nil, p.Header), p, depth+1)
		}
		if t.parts >= t.lim.MaxParts {
			t.add("mime:too-many-parts")
		}
	case ct == "message/rfc822" || ct == "message/global":
		if depth >= t.lim.MaxDepth {
			t.add("mime:too-deep")
			return
		}
		// RFC 2046 §5.2.1 allows only 7bit, 8bit or binary here; decode
		// anyway when a sender used base64 or QP.
		inner := body
		if cte == "base64" || cte == "quoted-printable" {
			inner = bytes.NewReader(bytes.Clone(decodeTransfer(cte, t.readRaw(body), t)))
		}
		br := bufio.NewReader(inner)
		ih := readHeader(br)
		t.headers(ih, depth+1)
		t.entity(ctx, ih, br, depth+1)
	case strings.HasPrefix(ct, "text/"):
		t.textPart(body, cte, charset, ct == "text/html")
	default:
		// Binary attachments: the type and name above are the evidence;
		// their bytes are not words.
	}
}

// readRaw reads up to twice the per-part text budget of a part's raw body
// (base64 is 4/3 of its data) into a buffer reused across parts.
func (t *tokenizer) readRaw(body io.Reader) []byte {
	limit := 2 * min(t.lim.MaxPartBytes, t.textLeft)
	if cap(t.raw) < limit {
		t.raw = make([]byte, 0, min(limit, 64<<10))
	}
	buf := t.raw[:0]
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):min(cap(buf), limit)])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	t.raw = buf
	return buf
}

// textPart decodes a text part to UTF-8 and tokenizes it.
func (t *tokenizer) textPart(body io.Reader, cte, charset string, html bool) {
	if t.textLeft <= 0 {
		t.add("mime:text-budget")
		return
	}
	data := decodeTransfer(cte, t.readRaw(body), t)
	data = data[:min(len(data), t.lim.MaxPartBytes, t.textLeft)]
	t.textLeft -= len(data)
	text := t.toUTF8(data, charset)
	if html || looksHTML(text) {
		t.sawHTML = true
		t.html(text)
		return
	}
	t.sawPlain = true
	t.text("", text)
}

// looksHTML catches HTML sent as text/plain, common in spam.
func looksHTML(s string) bool {
	head := s[:min(len(s), 2048)]
	return strings.Contains(head, "<html") || strings.Contains(head, "<HTML") ||
		strings.Contains(head, "<body") || strings.Contains(head, "<BODY")
}

// attachmentName returns the file name of a part, if any.
func attachmentName(h header, ctParams map[string]string) string {
	if cd := h.get("Content-Disposition"); cd != "" {
		cd = cd[:min(len(cd), maxParamBytes)]
		if _, p, err := mime.ParseMediaType(cd); err == nil && p["filename"] != "" {
			return p["filename"]
		}
	}
	return ctParams["name"]
}

// filename adds hints for an attachment's name: its extension and words.
func (t *tokenizer) filename(name string) {
	name = decodeHeaderValue(name, t)
	name = strings.ToLower(name[:min(len(name), 256)])
	if i := strings.LastIndexByte(name, '.'); i >= 0 && len(name)-i <= 8 {
		t.add("fn:ext:" + name[i+1:])
	}
	t.text("fn:", name)
}

// shape adds hints about the message as a whole: its size, whether it is
// HTML without a plain-text alternative, and how many links it carries.
func (t *tokenizer) shape(size int64) {
	switch {
	case size < 1<<10:
		t.add("msg:size:<1k")
	case size < 2<<10:
		t.add("msg:size:1-2k")
	case size < 5<<10:
		t.add("msg:size:2-5k")
	case size < 10<<10:
		t.add("msg:size:5-10k")
	case size < 50<<10:
		t.add("msg:size:10-50k")
	default:
		t.add("msg:size:50k+")
	}
	if t.sawHTML && !t.sawPlain {
		t.add("mime:html-only")
	}
	t.add("url:n:" + bucket(t.urls))
}

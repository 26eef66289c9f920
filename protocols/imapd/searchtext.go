package imapd

import (
	"bytes"
	"io"
	"mime"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
	"github.com/tandemmail/tandem/storage"
)

// maxSearchPart bounds the bytes of one part a text search decodes.
const maxSearchPart = 64 << 20

// searchMessage loads what a SEARCH needs of one message at most once:
// the part tree (header terms, sent date) and which BODY/TEXT strings its
// decoded text contains.
type searchMessage struct {
	t     target
	store *storage.Store

	blob   *os.File
	root   *mimePart // full part tree, once loaded
	top    *mimePart // top-level header only, or root
	loaded bool
	err    error

	needles   []string // every BODY/TEXT string of the search, lower-case
	bodyHits  map[string]bool
	headerTxt string // decoded top-level header, lower-case
}

func (m *searchMessage) close() {
	if m.blob != nil {
		m.blob.Close()
	}
}

// open opens the blob once.
func (m *searchMessage) open() (*os.File, int64) {
	if m.blob == nil && m.err == nil {
		f, err := m.store.OpenBlob(m.t.msg.Blob)
		if err != nil {
			m.err = err
			return nil, 0
		}
		m.blob = f
	}
	if m.blob == nil {
		return nil, 0
	}
	st, err := m.blob.Stat()
	if err != nil {
		m.err = err
		return nil, 0
	}
	return m.blob, st.Size()
}

// structure parses the whole message once; nil if it cannot be read
// (m.err).
func (m *searchMessage) structure() *mimePart {
	if m.loaded {
		return m.root
	}
	m.loaded = true
	f, size := m.open()
	if f == nil {
		return nil
	}
	root, err := parseMIME(io.NewSectionReader(f, 0, size))
	if err != nil {
		m.err = err
		return nil
	}
	m.root, m.top = root, root
	return root
}

// header parses just the top-level header, unless the whole message is
// parsed already: header keys must not read attachments.
func (m *searchMessage) header() *mimePart {
	if m.top != nil || m.loaded && m.root == nil {
		return m.top
	}
	f, size := m.open()
	if f == nil {
		return nil
	}
	top, err := parseMIMEHeader(io.NewSectionReader(f, 0, size), size)
	if err != nil {
		m.err = err
		return nil
	}
	m.top = top
	return top
}

// wordDecoder decodes RFC 2047 encoded words in any charset go-message
// knows.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

func decodeHeaderValue(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// headerContains implements HEADER, FROM, TO, CC, BCC and SUBJECT: a
// case-insensitive substring of a decoded field value; an empty value
// matches any message with the field (RFC 9051 §6.4.4).
func (m *searchMessage) headerContains(key, value string) bool {
	root := m.header()
	if root == nil {
		return false
	}
	for f := root.header.FieldsByKey(key); f.Next(); {
		if value == "" || strings.Contains(strings.ToLower(decodeHeaderValue(f.Value())), value) {
			return true
		}
	}
	return false
}

// headerTextContains searches the whole decoded header (the TEXT key
// covers header and body).
func (m *searchMessage) headerTextContains(needle string) bool {
	root := m.header()
	if root == nil {
		return false
	}
	if m.headerTxt == "" {
		m.headerTxt = strings.ToLower(decodedHeaderText(root.header))
	}
	return strings.Contains(m.headerTxt, needle)
}

func decodedHeaderText(h textproto.Header) string {
	var b strings.Builder
	for f := h.Fields(); f.Next(); {
		b.WriteString(f.Key())
		b.WriteString(": ")
		b.WriteString(decodeHeaderValue(f.Value()))
		b.WriteString("\n")
	}
	return b.String()
}

// bodyContains reports whether the decoded body text contains needle. The
// first call scans the message once for every needle of the search.
func (m *searchMessage) bodyContains(needle string) bool {
	if m.bodyHits == nil {
		m.bodyHits = map[string]bool{}
		needles := m.needles
		if !containsString(needles, needle) {
			needles = append(needles, needle)
		}
		if root := m.structure(); root != nil {
			sc := newTextScanner(needles)
			if err := scanBody(m.blob, root, sc); err != nil && m.err == nil {
				m.err = err
			}
			for i, n := range needles {
				m.bodyHits[n] = sc.found[i]
			}
		}
	}
	hit, ok := m.bodyHits[needle]
	if !ok {
		// A needle not announced up front: scan again just for it.
		if root := m.structure(); root != nil {
			sc := newTextScanner([]string{needle})
			_ = scanBody(m.blob, root, sc)
			hit = sc.found[0]
		}
		m.bodyHits[needle] = hit
	}
	return hit
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// scanBody feeds the decoded text of the message body to sc: text parts
// decoded from their transfer encoding and charset, and the headers of
// attached messages. Other parts (images, archives) are skipped. The walk
// is iterative; depth is already capped by the parser.
func scanBody(blob io.ReaderAt, root *mimePart, sc *textScanner) error {
	stack := []*mimePart{root}
	for len(stack) > 0 && !sc.done() {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch {
		case p.isMessage():
			sc.reset()
			sc.feedString(decodedHeaderText(p.message.header))
			stack = append(stack, p.message)
			continue
		case p.isMultipart():
			for i := len(p.children) - 1; i >= 0; i-- {
				stack = append(stack, p.children[i])
			}
			continue
		case !strings.HasPrefix(p.mediaType, "text/"):
			continue
		}
		n := min(p.end-p.bodyStart, maxSearchPart)
		raw := make([]byte, n)
		if _, err := blob.ReadAt(raw, p.bodyStart); err != nil && err != io.EOF {
			return err
		}
		data, err := decodeCTE(p.header.Get("Content-Transfer-Encoding"), raw)
		if err != nil {
			data = raw // unknown encoding: search the bytes as they are
		}
		var r io.Reader = bytes.NewReader(data)
		if cs := strings.ToLower(p.params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
			if cr, err := charset.Reader(cs, r); err == nil {
				r = cr
			}
		}
		sc.reset()
		if err := sc.feedReader(r); err != nil {
			return err
		}
	}
	return nil
}

// textScanner finds several lower-case needles in a stream of text,
// lower-casing rune-aligned chunks and keeping an overlap so matches
// across chunk borders are found.
type textScanner struct {
	needles []string
	found   []bool
	left    int
	overlap int
	tail    []byte
}

func newTextScanner(needles []string) *textScanner {
	sc := &textScanner{needles: needles, found: make([]bool, len(needles)), left: len(needles)}
	for i, n := range needles {
		if n == "" {
			sc.found[i] = true
			sc.left--
		}
		sc.overlap = max(sc.overlap, len(n)-1)
	}
	return sc
}

func (sc *textScanner) done() bool { return sc.left == 0 }

func (sc *textScanner) reset() { sc.tail = sc.tail[:0] }

func (sc *textScanner) feedString(s string) { sc.feed(bytes.ToLower([]byte(s))) }

func (sc *textScanner) feedReader(r io.Reader) error {
	buf := make([]byte, 32<<10)
	carry := 0
	for !sc.done() {
		n, err := r.Read(buf[carry:])
		n += carry
		end := n
		if err == nil {
			// Hold back an incomplete rune at the end for the next read.
			for k := 1; k <= 3 && k <= end; k++ {
				if utf8.RuneStart(buf[end-k]) {
					if !utf8.FullRune(buf[end-k : end]) {
						end -= k
					}
					break
				}
			}
		}
		sc.feed(bytes.ToLower(buf[:end]))
		carry = copy(buf, buf[end:n])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil // a broken charset stream ends the part, not the search
		}
	}
	return nil
}

func (sc *textScanner) feed(lower []byte) {
	data := append(sc.tail, lower...)
	for i, n := range sc.needles {
		if !sc.found[i] && bytes.Contains(data, []byte(n)) {
			sc.found[i] = true
			sc.left--
		}
	}
	if keep := min(sc.overlap, len(data)); keep > 0 {
		sc.tail = append(sc.tail[:0], data[len(data)-keep:]...)
	} else {
		sc.tail = sc.tail[:0]
	}
}

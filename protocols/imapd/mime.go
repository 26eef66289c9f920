package imapd

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"strings"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Limits of the MIME structure parser (RELIABILITY #29). Parts nested
// deeper than maxMIMEDepth are treated as opaque leaves (Postfix's
// mime_nesting_limit is 100); after maxMIMEParts parts further boundaries
// are ignored, so the last part swallows the rest. Each part keeps at most
// maxHeaderBytes of its header for parsing; offsets stay exact.
const (
	maxMIMEDepth   = 100
	maxMIMEParts   = 10000
	maxHeaderBytes = 256 << 10
	mimeReadBuffer = 64 << 10
)

// mimePart is one entity of a message: a header and a body, located by
// byte offsets in the stored .eml so FETCH can stream sections from the
// file instead of holding the message in memory.
type mimePart struct {
	headerStart int64 // first byte of the header
	bodyStart   int64 // first byte after the blank line ending the header
	end         int64 // end of the body (exclusive); the CRLF before a boundary belongs to the boundary (RFC 2046 §5.1.1)
	bodyLines   int64 // line breaks in [bodyStart, end)
	depth       int

	rawHeader []byte // header bytes without the terminating blank line, capped
	header    textproto.Header
	mediaType string // lower-case "type/subtype"
	params    map[string]string

	children []*mimePart // multipart: the body parts
	message  *mimePart   // message/rfc822: the encapsulated message

	bodyNL   int64  // line breaks before bodyStart (parser bookkeeping)
	boundary string // multipart boundary while open
	inHeader bool
	digest   bool // a child of multipart/digest (default type message/rfc822, RFC 2046 §5.1.5)
}

func (p *mimePart) isMultipart() bool { return len(p.children) > 0 }

func (p *mimePart) isMessage() bool { return p.message != nil }

// parseMIME reads a whole message once and returns its part tree. Work is
// linear in the message size (boundary checks look at lines starting with
// "--" against at most maxMIMEDepth open boundaries). Read errors are
// returned; malformed MIME never is.
func parseMIME(r io.Reader) (*mimePart, error) {
	return parse(r, -1)
}

// parseMIMEHeader reads only the top-level header of a message of size
// bytes: enough for ENVELOPE, BODY[HEADER...], BODY[TEXT] and header
// SEARCH keys, without reading attachments. The root has no children and
// no line count.
func parseMIMEHeader(r io.Reader, size int64) (*mimePart, error) {
	return parse(r, size)
}

func parse(r io.Reader, headerOnlySize int64) (*mimePart, error) {
	ps := &mimeParser{br: bufio.NewReaderSize(r, mimeReadBuffer), headerOnly: headerOnlySize >= 0}
	root := &mimePart{inHeader: true}
	ps.stack = []*mimePart{root}
	ps.parts = 1
	if err := ps.run(); err != nil {
		return nil, err
	}
	if ps.headerOnly {
		root.children, root.message, root.boundary = nil, nil, ""
		root.end, root.bodyLines = max(headerOnlySize, root.bodyStart), 0
	}
	return root, nil
}

type mimeParser struct {
	br      *bufio.Reader
	off     int64 // offset of the next byte
	nl      int64 // line breaks before off
	stack   []*mimePart
	parts   int
	midLine bool // the previous chunk did not end a line
	// the terminator length of the previous complete line
	prevBreak int64
	// headerOnly stops after the top-level header (parseMIMEHeader).
	headerOnly, stop bool
}

func (ps *mimeParser) run() error {
	for {
		chunk, err := ps.br.ReadSlice('\n')
		if len(chunk) > 0 {
			ps.line(chunk)
		}
		if ps.stop {
			return nil
		}
		switch err {
		case nil, bufio.ErrBufferFull:
			continue
		case io.EOF:
			for i := len(ps.stack) - 1; i >= 0; i-- {
				ps.finish(ps.stack[i], ps.off, ps.nl)
			}
			return nil
		default:
			return err
		}
	}
}

// line handles one line, or a piece of a line longer than the buffer.
func (ps *mimeParser) line(chunk []byte) {
	lineStart, nlBefore := ps.off, ps.nl
	atLineStart := !ps.midLine
	ps.off += int64(len(chunk))
	ended := chunk[len(chunk)-1] == '\n'
	if ended {
		ps.nl++
	}
	ps.midLine = !ended
	prevBreak := ps.prevBreak
	ps.prevBreak = 0
	if ended {
		ps.prevBreak = 1
		if len(chunk) >= 2 && chunk[len(chunk)-2] == '\r' {
			ps.prevBreak = 2
		}
	}
	if !atLineStart {
		if top := ps.top(); top.inHeader {
			top.addHeader(chunk)
		}
		return
	}

	if ended && len(chunk) >= 3 && chunk[0] == '-' && chunk[1] == '-' {
		if ps.boundary(chunk, lineStart, nlBefore, prevBreak) {
			return
		}
	}

	top := ps.top()
	if !top.inHeader {
		return
	}
	if ended && (len(chunk) == 1 || len(chunk) == 2 && chunk[0] == '\r') {
		ps.endHeader(top)
		return
	}
	top.addHeader(chunk)
}

func (ps *mimeParser) top() *mimePart { return ps.stack[len(ps.stack)-1] }

// boundary checks a line against the open multiparts, innermost first: a
// delimiter of an outer multipart also ends every part inside it.
func (ps *mimeParser) boundary(chunk []byte, lineStart, nlBefore, prevBreak int64) bool {
	text := bytes.TrimRight(chunk, " \t\r\n")[2:]
	for k := len(ps.stack) - 1; k >= 0; k-- {
		m := ps.stack[k]
		if m.boundary == "" || !bytes.HasPrefix(text, []byte(m.boundary)) {
			continue
		}
		rest := text[len(m.boundary):]
		closing := string(rest) == "--"
		if len(rest) != 0 && !closing {
			continue
		}
		if !closing && ps.parts >= maxMIMEParts {
			return false
		}
		end, endNL := lineStart-prevBreak, nlBefore
		if prevBreak > 0 {
			endNL--
		}
		for i := len(ps.stack) - 1; i > k; i-- {
			ps.finish(ps.stack[i], end, endNL)
		}
		ps.stack = ps.stack[:k+1]
		if closing {
			m.boundary = "" // epilogue follows; only outer boundaries matter now
			return true
		}
		child := &mimePart{headerStart: ps.off, depth: m.depth + 1, inHeader: true,
			digest: m.mediaType == "multipart/digest"}
		m.children = append(m.children, child)
		ps.stack = append(ps.stack, child)
		ps.parts++
		return true
	}
	return false
}

func (p *mimePart) addHeader(chunk []byte) {
	if room := maxHeaderBytes - len(p.rawHeader); room > 0 {
		p.rawHeader = append(p.rawHeader, chunk[:min(room, len(chunk))]...)
	}
}

// endHeader is called on the blank line after a header: the body starts.
func (ps *mimeParser) endHeader(p *mimePart) {
	p.inHeader = false
	p.bodyStart, p.bodyNL = ps.off, ps.nl
	p.parseHeader()
	if ps.headerOnly {
		ps.stop = true
		return
	}
	if p.depth >= maxMIMEDepth {
		return
	}
	switch {
	case strings.HasPrefix(p.mediaType, "multipart/"):
		if b := p.params["boundary"]; b != "" && len(b) <= 200 {
			p.boundary = b
		}
	case p.mediaType == "message/rfc822" || p.mediaType == "message/global":
		if ps.parts >= maxMIMEParts {
			return
		}
		m := &mimePart{headerStart: ps.off, depth: p.depth + 1, inHeader: true}
		p.message = m
		ps.stack = append(ps.stack, m)
		ps.parts++
	}
}

// finish closes a part at end (exclusive).
func (ps *mimeParser) finish(p *mimePart, end, endNL int64) {
	if p.inHeader {
		// No blank line: everything was header (or the part is empty).
		p.inHeader = false
		p.bodyStart, p.bodyNL = max(end, p.headerStart), endNL
		p.parseHeader()
	}
	if end < p.bodyStart {
		end, endNL = p.bodyStart, p.bodyNL
	}
	p.end = end
	p.bodyLines = max(endNL-p.bodyNL, 0)
	p.boundary = ""
}

// parseHeader parses rawHeader leniently: lines without a colon are
// skipped, never fatal (RELIABILITY #31: malformed mail must still FETCH).
func (p *mimePart) parseHeader() {
	p.header = parseHeaderLenient(p.rawHeader)
	ct := p.header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mt, "/") {
		// RFC 2045 §5.2: default text/plain; charset=us-ascii, or
		// message/rfc822 inside multipart/digest (RFC 2046 §5.1.5).
		mt, params = "text/plain", map[string]string{"charset": "us-ascii"}
		if p.digest && ct == "" {
			mt, params = "message/rfc822", nil
		}
	}
	p.mediaType, p.params = strings.ToLower(mt), params
}

// parseHeaderLenient splits raw header bytes into fields.
func parseHeaderLenient(raw []byte) textproto.Header {
	var h textproto.Header
	var field []byte
	flush := func() {
		if len(field) == 0 {
			return
		}
		if i := bytes.IndexByte(field, ':'); i > 0 && validFieldName(bytes.TrimRight(field[:i], " \t")) {
			kv := field
			if !bytes.HasSuffix(kv, []byte("\n")) {
				kv = append(kv, '\r', '\n')
			}
			h.AddRaw(kv)
		}
		field = nil
	}
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		var ln []byte
		if i < 0 {
			ln, raw = raw, nil
		} else {
			ln, raw = raw[:i+1], raw[i+1:]
		}
		if ln[0] == ' ' || ln[0] == '\t' {
			if len(field) > 0 {
				field = append(field, ln...)
			}
			continue
		}
		flush()
		field = append([]byte(nil), ln...)
	}
	flush()
	return h
}

func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// findPart resolves a section part path (RFC 9051 §6.4.5) the way
// go-imap's ExtractBodySection does: part 1 of a non-multipart message is
// its body; a message/rfc822 part is opened to number its message's parts.
func findPart(root *mimePart, path []int) *mimePart {
	if !root.isMultipart() && len(path) > 0 && path[0] == 1 {
		path = path[1:]
	}
	cur := root
	for _, n := range path {
		if cur.isMessage() {
			cur = cur.message
		}
		if !cur.isMultipart() {
			if n != 1 {
				return nil
			}
			continue
		}
		if n < 1 || n > len(cur.children) {
			return nil
		}
		cur = cur.children[n-1]
	}
	return cur
}

// contentHeader is the header as a go-message Header.
func (p *mimePart) contentHeader() gomessage.Header { return gomessage.Header{Header: p.header} }

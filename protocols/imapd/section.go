package imapd

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// section is the bytes a FETCH body item returns: a range of the stored
// message (streamed from the file) or, for filtered headers and decoded
// BINARY content, bytes in memory.
type section struct {
	start, length int64
	data          []byte
	inMemory      bool
}

func (s section) size() int64 {
	if s.inMemory {
		return int64(len(s.data))
	}
	return s.length
}

// reader returns the section's bytes; blob is the stored message.
func (s section) reader(blob io.ReaderAt) io.Reader {
	if s.inMemory {
		return bytes.NewReader(s.data)
	}
	return io.NewSectionReader(blob, s.start, s.length)
}

func (s section) partial(p *imap.SectionPartial) section {
	if p == nil {
		return s
	}
	total := s.size()
	off := min(max(p.Offset, 0), total)
	n := min(max(p.Size, 0), total-off)
	if s.inMemory {
		s.data = s.data[off : off+n]
		return s
	}
	s.start += off
	s.length = n
	return s
}

func rangeSection(start, end int64) section {
	return section{start: start, length: max(end-start, 0)}
}

// bodySection locates a BODY[...] item (RFC 9051 §6.4.5). A part that does
// not exist yields an empty section, as go-imap's ExtractBodySection does.
func bodySection(root *mimePart, item *imap.FetchItemBodySection) section {
	p := root
	if len(item.Part) > 0 {
		if p = findPart(root, item.Part); p == nil {
			return section{inMemory: true}
		}
	}
	var s section
	switch item.Specifier {
	case imap.PartSpecifierNone:
		if len(item.Part) == 0 {
			s = rangeSection(root.headerStart, root.end)
		} else {
			s = rangeSection(p.bodyStart, p.end)
		}
	case imap.PartSpecifierMIME:
		s = rangeSection(p.headerStart, p.bodyStart)
	case imap.PartSpecifierHeader, imap.PartSpecifierText:
		if len(item.Part) > 0 && p.isMessage() {
			p = p.message
		}
		if item.Specifier == imap.PartSpecifierText {
			s = rangeSection(p.bodyStart, p.end)
		} else if len(item.HeaderFields) > 0 || len(item.HeaderFieldsNot) > 0 {
			s = section{inMemory: true, data: filterHeader(p.rawHeader, item.HeaderFields, item.HeaderFieldsNot)}
		} else {
			s = rangeSection(p.headerStart, p.bodyStart)
		}
	}
	return s.partial(item.Partial)
}

// filterHeader keeps (or drops) the named fields, in their original form,
// and ends the result with the blank line (RFC 9051 §6.4.5
// HEADER.FIELDS).
func filterHeader(raw []byte, keep, drop []string) []byte {
	var out bytes.Buffer
	want := func(name string) bool {
		if len(keep) > 0 {
			for _, k := range keep {
				if strings.EqualFold(k, name) {
					return true
				}
			}
			return false
		}
		for _, d := range drop {
			if strings.EqualFold(d, name) {
				return false
			}
		}
		return true
	}
	var field []byte
	flush := func() {
		if len(field) == 0 {
			return
		}
		if i := bytes.IndexByte(field, ':'); i > 0 && want(string(bytes.TrimRight(field[:i], " \t"))) {
			out.Write(field)
			if !bytes.HasSuffix(field, []byte("\n")) {
				out.WriteString("\r\n")
			}
		}
		field = field[:0]
	}
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		var ln []byte
		if i < 0 {
			ln, raw = raw, nil
		} else {
			ln, raw = raw[:i+1], raw[i+1:]
		}
		if (ln[0] == ' ' || ln[0] == '\t') && len(field) > 0 {
			field = append(field, ln...)
			continue
		}
		flush()
		field = append(field, ln...)
	}
	flush()
	out.WriteString("\r\n")
	return out.Bytes()
}

// errUnknownCTE answers BINARY on a part whose transfer encoding we cannot
// decode (RFC 3516 §4.3).
var errUnknownCTE = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnknownCTE,
	Text: "unknown Content-Transfer-Encoding"}

// binarySection decodes a part's content transfer encoding (RFC 3516).
// Empty part: the message header followed by the decoded body, as
// go-imap's ExtractBinarySection does. The part is decoded in memory; it
// is at most the size of the stored message.
func binarySection(blob io.ReaderAt, root *mimePart, partPath []int, partial *imap.SectionPartial) (section, error) {
	p := root
	if len(partPath) > 0 {
		if p = findPart(root, partPath); p == nil {
			return section{inMemory: true}, nil
		}
	}
	raw := make([]byte, p.end-p.bodyStart)
	if _, err := blob.ReadAt(raw, p.bodyStart); err != nil && err != io.EOF {
		return section{}, err
	}
	data := raw
	if !p.isMultipart() && !p.isMessage() {
		var err error
		if data, err = decodeCTE(p.header.Get("Content-Transfer-Encoding"), raw); err != nil {
			return section{}, err
		}
	}
	if len(partPath) == 0 {
		data = append(append(append([]byte(nil), root.rawHeader...), "\r\n"...), data...)
	}
	return section{inMemory: true, data: data}.partial(partial), nil
}

// decodeCTE decodes a Content-Transfer-Encoding (RFC 2045 §6). Broken
// encodings decode leniently as far as they go (RELIABILITY #31).
func decodeCTE(cte string, raw []byte) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit", "binary":
		return raw, nil
	case "base64":
		return decodeBase64Lenient(raw), nil
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
		return out, nil
	}
	return nil, errUnknownCTE
}

// decodeBase64Lenient drops bytes outside the alphabet, stops at padding
// and ignores a dangling final character.
func decodeBase64Lenient(raw []byte) []byte {
	clean := make([]byte, 0, len(raw))
	for _, c := range raw {
		if c == '=' {
			break
		}
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' {
			clean = append(clean, c)
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, _ := base64.RawStdEncoding.Decode(out, clean)
	return out[:n]
}

// bodyStructure converts the part tree to go-imap's BODYSTRUCTURE model,
// always with extension data (the library writes BODY from it too).
func bodyStructure(p *mimePart) imap.BodyStructure {
	h := p.contentHeader()
	if p.isMultipart() {
		_, sub, _ := strings.Cut(p.mediaType, "/")
		bs := &imap.BodyStructureMultiPart{Subtype: sub}
		for _, c := range p.children {
			bs.Children = append(bs.Children, bodyStructure(c))
		}
		bs.Extended = &imap.BodyStructureMultiPartExt{
			Params:      p.params,
			Disposition: disposition(p),
			Language:    language(p),
			Location:    h.Get("Content-Location"),
		}
		return bs
	}
	typ, sub, _ := strings.Cut(p.mediaType, "/")
	params := p.params
	if strings.HasPrefix(p.mediaType, "multipart/") || (p.mediaType == "message/rfc822" || p.mediaType == "message/global") && !p.isMessage() {
		// A multipart without parts (no boundary found, or nested past
		// maxMIMEDepth) or an unopened message: opaque data. go-imap
		// panics on a multipart with no children.
		typ, sub, params = "application", "octet-stream", nil
	}
	bs := &imap.BodyStructureSinglePart{
		Type:        typ,
		Subtype:     sub,
		Params:      params,
		ID:          h.Get("Content-Id"),
		Description: h.Get("Content-Description"),
		Encoding:    strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))),
		Size:        uint32(min(p.end-p.bodyStart, 1<<32-1)),
	}
	if p.isMessage() {
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      imapserver.ExtractEnvelope(p.message.header),
			BodyStructure: bodyStructure(p.message),
			NumLines:      p.bodyLines,
		}
	} else if typ == "text" {
		bs.Text = &imap.BodyStructureText{NumLines: p.bodyLines}
	}
	bs.Extended = &imap.BodyStructureSinglePartExt{
		Disposition: disposition(p),
		Language:    language(p),
		Location:    h.Get("Content-Location"),
	}
	return bs
}

func disposition(p *mimePart) *imap.BodyStructureDisposition {
	h := p.contentHeader()
	disp, params, err := h.ContentDisposition()
	if err != nil || disp == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: disp, Params: params}
}

func language(p *mimePart) []string {
	v := p.header.Get("Content-Language")
	if v == "" {
		return nil
	}
	var out []string
	for _, l := range strings.Split(v, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

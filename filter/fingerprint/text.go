package fingerprint

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode Big5, GB18030, … (sets message.CharsetReader)
)

// Limits of the text extraction: a MIME bomb gets a signature of what fits,
// within bounded time and memory.
const (
	maxMessageBytes = 4 << 20
	maxTextBytes    = 512 << 10
	maxParts        = 100
	maxDepth        = 10
)

// BodyText extracts the readable text of a message: its text/plain and
// text/html parts (tags dropped), decoded.
func BodyText(r io.Reader) (string, error) {
	e, err := message.Read(io.LimitReader(r, maxMessageBytes))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		if e == nil {
			return "", fmt.Errorf("read message: %w", err)
		}
	}
	var b strings.Builder
	parts := 0
	walk(e, 0, &parts, &b)
	return b.String(), nil
}

func walk(e *message.Entity, depth int, parts *int, b *strings.Builder) {
	if e == nil || depth > maxDepth || *parts >= maxParts || b.Len() >= maxTextBytes {
		return
	}
	*parts++
	if mr := e.MultipartReader(); mr != nil {
		// Every round counts as a part, whatever NextPart returns, so a
		// broken multipart body cannot keep the loop going.
		for *parts < maxParts && b.Len() < maxTextBytes {
			p, err := mr.NextPart()
			if p == nil || err != nil && errors.Is(err, io.EOF) {
				return
			}
			*parts++
			walk(p, depth+1, parts, b)
		}
		return
	}
	ct, _, err := mime.ParseMediaType(e.Header.Get("Content-Type"))
	if err != nil || ct == "" {
		ct = "text/plain"
	}
	if !strings.HasPrefix(ct, "text/") {
		return
	}
	raw, _ := io.ReadAll(io.LimitReader(e.Body, int64(maxTextBytes-b.Len())))
	if ct == "text/html" {
		raw = stripTags(raw)
	}
	b.Write(raw)
	b.WriteByte('\n')
}

// stripTags drops HTML tags, comments and the content of style and script
// elements, and decodes entities. It is not a parser: good enough for
// words, never used for display.
func stripTags(h []byte) []byte {
	var out bytes.Buffer
	// ASCII-only lower case keeps the indexes of h and lower the same.
	lower := make([]byte, len(h))
	for i, c := range h {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	for i := 0; i < len(h); {
		switch {
		case bytes.HasPrefix(lower[i:], []byte("<!--")):
			end := bytes.Index(lower[i:], []byte("-->"))
			if end < 0 {
				i = len(h)
			} else {
				i += end + 3
			}
		case bytes.HasPrefix(lower[i:], []byte("<style")), bytes.HasPrefix(lower[i:], []byte("<script")):
			tag := "</style"
			if lower[i+1] == 's' && lower[i+2] == 'c' {
				tag = "</script"
			}
			end := bytes.Index(lower[i:], []byte(tag))
			if end < 0 {
				i = len(h)
			} else {
				i += end + len(tag)
			}
		case h[i] == '<':
			end := bytes.IndexByte(h[i:], '>')
			if end < 0 {
				i = len(h)
			} else {
				i += end + 1
			}
			out.WriteByte(' ')
		default:
			end := bytes.IndexByte(h[i:], '<')
			if end < 0 {
				end = len(h) - i
			}
			out.WriteString(html.UnescapeString(string(h[i : i+end])))
			i += end
		}
	}
	return out.Bytes()
}

// FromMessage computes a message's signature.
func FromMessage(r io.Reader) (Signature, error) {
	text, err := BodyText(r)
	if err != nil {
		return Signature{}, err
	}
	return FromText(text)
}

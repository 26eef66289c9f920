package filter

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"syscall"
)

// headerScan passes a message through while watching its header section
// (RFC 5322 §2.2: up to the first empty line). It enforces the header size
// limit and the hop count, and collects the From field for the sender check
// of authenticated users. A violation surfaces as a *Reject from Read, so
// the blob write fails and nothing is stored.
//
// Lines may end in CRLF or bare LF; a line that is neither a field nor a
// continuation ends the header section too (the rest is body to every
// reader of the message).
type headerScan struct {
	r        io.Reader
	maxBytes int64
	maxHops  int
	onEnd    func(from []string) *Reject // called once, at the end of the header section

	inHeader bool
	n        int64 // header bytes so far
	hops     int
	line     []byte // current line, capped at lineCap
	lineLen  int    // its true length
	inFrom   bool   // the current field is From (continuations belong to it)
	from     [][]byte
	// subject and messageID keep the first Subject and Message-ID fields
	// for the mail log, so nobody re-reads the stored file for them.
	subject, messageID []byte
	inField            *[]byte // Subject or Message-ID being unfolded
	err                error   // sticky
}

// lineCap bounds what is kept of one header line; From fields longer than
// this are cut (and then fail to parse, which refuses the message).
const lineCap = 8 << 10

func newHeaderScan(r io.Reader, maxBytes int64, maxHops int, onEnd func([]string) *Reject) *headerScan {
	return &headerScan{r: r, maxBytes: maxBytes, maxHops: maxHops, onEnd: onEnd, inHeader: true}
}

func (h *headerScan) Read(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	n, err := h.r.Read(p)
	if h.inHeader {
		if rej := h.scan(p[:n]); rej != nil {
			h.err = rej
			return 0, rej
		}
		if err == io.EOF && h.inHeader {
			// A message that is all header: finish the last line.
			if rej := h.endLine(); rej != nil {
				h.err = rej
				return 0, rej
			}
			if rej := h.finish(); rej != nil {
				h.err = rej
				return 0, rej
			}
		}
	}
	return n, err
}

func (h *headerScan) scan(b []byte) *Reject {
	for _, c := range b {
		h.n++
		if h.maxBytes > 0 && h.n > h.maxBytes {
			return reject(552, [3]int{5, 3, 4}, "Message header section too large", nil)
		}
		if c != '\n' {
			h.lineLen++
			if len(h.line) < lineCap {
				h.line = append(h.line, c)
			}
			continue
		}
		if h.lineLen == 0 || h.lineLen == 1 && h.line[0] == '\r' {
			// Empty line: the body follows.
			return h.finish()
		}
		if rej := h.endLine(); rej != nil {
			return rej
		}
		if !h.inHeader {
			return h.finish()
		}
	}
	return nil
}

// endLine classifies the completed line.
func (h *headerScan) endLine() *Reject {
	line := bytes.TrimSuffix(h.line, []byte("\r"))
	h.line, h.lineLen = h.line[:0], 0
	if len(line) == 0 {
		return nil
	}
	if line[0] == ' ' || line[0] == '\t' { // RFC 5322 §2.2.3 folding
		if h.inFrom {
			h.from[len(h.from)-1] = append(append(h.from[len(h.from)-1], ' '), bytes.TrimSpace(line)...)
		}
		if h.inField != nil && len(*h.inField) < logFieldCap {
			*h.inField = append(append(*h.inField, ' '), bytes.TrimSpace(line)...)
		}
		return nil
	}
	h.inFrom, h.inField = false, nil
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		// Not a field: the header section is over (malformed message).
		h.inHeader = false
		return nil
	}
	name := bytes.TrimRight(line[:colon], " \t") // obs-optional WSP before the colon
	switch {
	case bytes.EqualFold(name, []byte("Received")):
		h.hops++
		if h.maxHops > 0 && h.hops > h.maxHops {
			// RFC 5321 §6.3: a loop is detected by counting Received fields.
			return reject(554, [3]int{5, 4, 6}, "Too many hops (mail loop?)", nil)
		}
	case bytes.EqualFold(name, []byte("From")):
		h.inFrom = true
		h.from = append(h.from, append([]byte(nil), bytes.TrimSpace(line[colon+1:])...))
	case bytes.EqualFold(name, []byte("Subject")) && h.subject == nil:
		h.subject = append([]byte{}, bytes.TrimSpace(line[colon+1:])...)
		h.inField = &h.subject
	case bytes.EqualFold(name, []byte("Message-ID")) && h.messageID == nil:
		h.messageID = append([]byte{}, bytes.TrimSpace(line[colon+1:])...)
		h.inField = &h.messageID
	}
	return nil
}

// logFieldCap bounds what is kept of Subject and Message-ID.
const logFieldCap = 2048

func (h *headerScan) finish() *Reject {
	h.inHeader = false
	f := h.onEnd
	h.onEnd = nil
	if f == nil {
		return nil
	}
	from := make([]string, len(h.from))
	for i, v := range h.from {
		from[i] = string(v)
	}
	return f(from)
}

// parseHeaderAddresses returns the addresses of an RFC 5322 address-list
// (a From field body). Display names are not needed, so encoded words in
// any charset are passed through undecoded.
func parseHeaderAddresses(v string) ([]string, error) {
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(_ string, in io.Reader) (io.Reader, error) { return in, nil },
	}}
	list, err := p.ParseList(v)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.Address
	}
	return out, nil
}

func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }

package outbound

import (
	"bufio"
	"io"
)

// dataWriter turns a stored message into the SMTP DATA stream (RFC 5321
// §4.1.1.4): every line ending — CRLF, a bare LF or a bare CR — leaves as
// CRLF, a line starting with "." gets another "." (§4.5.2), and Close ends
// the last line and writes the terminating ".". So no byte sequence of the
// stored message can end the data early at the remote or be read there
// as a second message (RELIABILITY #14, SMTP smuggling).
type dataWriter struct {
	w         *bufio.Writer
	lineStart bool // the next byte begins a line
	cr        bool // a CR was seen; its line ending is not written yet
	n         int64
}

func newDataWriter(w *bufio.Writer) *dataWriter { return &dataWriter{w: w, lineStart: true} }

func (d *dataWriter) Write(p []byte) (int, error) {
	for i, c := range p {
		if d.cr {
			d.cr = false
			if err := d.crlf(); err != nil {
				return i, err
			}
			if c == '\n' {
				continue // the CRLF itself
			}
		}
		switch {
		case c == '\r':
			d.cr = true
			continue
		case c == '\n':
			if err := d.crlf(); err != nil {
				return i, err
			}
			continue
		case c == '.' && d.lineStart:
			if err := d.w.WriteByte('.'); err != nil {
				return i, err
			}
			d.n++
		}
		if err := d.w.WriteByte(c); err != nil {
			return i, err
		}
		d.n++
		d.lineStart = false
	}
	return len(p), nil
}

func (d *dataWriter) crlf() error {
	d.lineStart = true
	d.n += 2
	_, err := d.w.WriteString("\r\n")
	return err
}

// Close ends the last line if needed, writes ".<CRLF>" and flushes.
func (d *dataWriter) Close() error {
	if d.cr {
		d.cr = false
		if err := d.crlf(); err != nil {
			return err
		}
	}
	if !d.lineStart {
		if err := d.crlf(); err != nil {
			return err
		}
	}
	if _, err := d.w.WriteString(".\r\n"); err != nil {
		return err
	}
	return d.w.Flush()
}

var _ io.WriteCloser = (*dataWriter)(nil)

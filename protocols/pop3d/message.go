package pop3d

import (
	"bufio"
	"errors"
	"io"
)

// writeMessage copies a stored message into a multi-line reply (RFC 1939
// §3): every line ends in CRLF (a bare LF in stored mail becomes CRLF), a
// line that starts with "." gets another, and a last line without a line
// end gets one. The caller writes the terminating ".\r\n".
//
// With bodyLines >= 0 (TOP) it stops after the header, the blank line that
// ends it, and that many body lines. Memory stays bounded for any message
// size: w sends whenever its buffer fills, and the first write error ends
// the copy.
func writeMessage(w *bufio.Writer, r io.Reader, bodyLines int64) error {
	br := bufio.NewReaderSize(r, 32<<10)
	var (
		lineStart = true  // the next byte read begins a line
		pendingCR = false // the last byte written ended a partial line and was a CR
		inBody    = false // the blank line after the header has been sent
		sent      int64   // body lines begun
		werr      error   // the first write error
	)
	write := func(p []byte) {
		if werr == nil {
			_, werr = w.Write(p)
		}
	}
	writeString := func(s string) {
		if werr == nil {
			_, werr = w.WriteString(s)
		}
	}
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if lineStart {
				if inBody {
					if bodyLines >= 0 && sent >= bodyLines {
						return werr
					}
					sent++
				} else if isBlankLine(chunk) {
					inBody = true
				}
				if chunk[0] == '.' {
					writeString(".") // RFC 1939 §3: byte-stuffing
				}
			}
			if chunk[len(chunk)-1] == '\n' {
				content := chunk[:len(chunk)-1]
				switch n := len(content); {
				case n > 0 && content[n-1] == '\r':
					write(chunk)
				case n == 0 && pendingCR:
					write(chunk) // the CR went out with the previous chunk
				default:
					write(content)
					writeString("\r\n")
				}
				lineStart, pendingCR = true, false
			} else {
				// A line longer than the buffer, or the last one.
				write(chunk)
				lineStart, pendingCR = false, chunk[len(chunk)-1] == '\r'
			}
		}
		switch {
		case werr != nil:
			return werr
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			if !lineStart {
				if pendingCR {
					writeString("\n")
				} else {
					writeString("\r\n")
				}
			}
			return werr
		default:
			return err
		}
	}
}

// isBlankLine reports whether a whole line read at a line start is empty:
// the separator between header and body (RFC 5322 §2.1).
func isBlankLine(chunk []byte) bool {
	return len(chunk) == 1 && chunk[0] == '\n' || len(chunk) == 2 && chunk[0] == '\r' && chunk[1] == '\n'
}

package filter

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// renameFields returns the message r with some header fields renamed:
// rename gets each field's name and unfolded value and returns a new name,
// or "" to keep the field as it is. The body is passed through untouched.
// It serves RFC 8601 §5: Authentication-Results fields that arrive with a
// message and claim our authserv-id must be removed or renamed, so that no
// reader mistakes them for our own verdict.
//
// The header section was already bounded by the header scan (Config.
// MaxHeaderBytes); limit is a second guard for callers that did not.
func renameFields(r io.Reader, limit int64, rename func(name, value string) string) (io.Reader, error) {
	br := bufio.NewReader(r)
	var out bytes.Buffer
	var field [][]byte // the raw lines of the field being read
	flush := func() {
		if len(field) == 0 {
			return
		}
		raw := bytes.Join(field, nil)
		field = field[:0]
		name, value, ok := bytes.Cut(raw, []byte(":"))
		if ok {
			unfolded := strings.Join(strings.Fields(string(value)), " ")
			if nn := rename(strings.TrimSpace(string(name)), unfolded); nn != "" {
				out.WriteString(nn)
				out.WriteByte(':')
				out.Write(value)
				return
			}
		}
		out.Write(raw)
	}
	var read int64
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// An over-long line: keep the rest of the message as it is.
			flush()
			out.Write(line)
			break
		}
		read += int64(len(line))
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && len(field) > 0 {
			field = append(field, append([]byte(nil), line...)) // RFC 5322 §2.2.3 folding
		} else {
			flush()
			if len(bytes.TrimRight(line, "\r\n")) == 0 || read > limit {
				out.Write(line) // end of the header section (or of the message)
				break
			}
			field = append(field, append([]byte(nil), line...))
		}
		if err != nil {
			break
		}
	}
	flush()
	return io.MultiReader(&out, br), nil
}

// renamer combines the checks' rename requests; nil when none asked.
func (d *Delivery) renamer() func(name, value string) string {
	var fs []func(name, value string) string
	for _, v := range d.verdicts {
		if v.Rename != nil {
			fs = append(fs, v.Rename)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	return func(name, value string) string {
		for _, f := range fs {
			if nn := f(name, value); nn != "" {
				return nn
			}
		}
		return ""
	}
}

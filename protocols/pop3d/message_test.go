package pop3d

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func renderMessage(t testing.TB, msg string, bodyLines int64) string {
	t.Helper()
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := writeMessage(w, strings.NewReader(msg), bodyLines); err != nil {
		t.Fatalf("writeMessage: %v", err)
	}
	w.Flush()
	return out.String()
}

func TestWriteMessage(t *testing.T) {
	long := strings.Repeat("a", 32<<10) // exactly the reader's buffer
	for _, tc := range []struct {
		name, in  string
		bodyLines int64
		want      string
	}{
		{"empty", "", -1, ""},
		{"crlf unchanged", "A: b\r\n\r\nbody\r\n", -1, "A: b\r\n\r\nbody\r\n"},
		{"bare LF", "A: b\n\nbody\n", -1, "A: b\r\n\r\nbody\r\n"},
		{"mixed", "A: b\r\n\nx\ny\r\n", -1, "A: b\r\n\r\nx\r\ny\r\n"},
		{"dot lines", ".\r\n..\r\n.x\r\nx.\r\n", -1, "..\r\n...\r\n..x\r\nx.\r\n"},
		{"dot after bare LF", "a\n.\n", -1, "a\r\n..\r\n"},
		{"no final newline", "A: b\r\n\r\nend", -1, "A: b\r\n\r\nend\r\n"},
		{"final CR only", "A: b\r\n\r\nend\r", -1, "A: b\r\n\r\nend\r\n"},
		{"CR CR LF kept", "a\r\r\nb\rc\r\n", -1, "a\r\r\nb\rc\r\n"},
		{"CRLF.CRLF inside", "a\r\n.\r\nb\r\n", -1, "a\r\n..\r\nb\r\n"},
		{"top 0", "A: b\r\nC: d\r\n\r\nl1\r\nl2\r\n", 0, "A: b\r\nC: d\r\n\r\n"},
		{"top 1", "A: b\r\n\r\nl1\r\nl2\r\n", 1, "A: b\r\n\r\nl1\r\n"},
		{"top more than body", "A: b\r\n\r\nl1\r\n", 5, "A: b\r\n\r\nl1\r\n"},
		{"top without body", "A: b\r\nC: d\r\n", 0, "A: b\r\nC: d\r\n"},
		{"top bare LF", "A: b\n\n.l1\nl2\n", 1, "A: b\r\n\r\n..l1\r\n"},
		{"top blank body lines count", "A: b\r\n\r\n\r\n\r\nl3\r\n", 2, "A: b\r\n\r\n\r\n\r\n"},
		{"top unterminated body line", "A: b\r\n\r\nl1", 3, "A: b\r\n\r\nl1\r\n"},
		{"long line CR at buffer end", long[1:] + "\r\nx\r\n", -1, long[1:] + "\r\nx\r\n"},
		{"long line bare LF at buffer end", long + "\n.x\n", -1, long + "\r\n..x\r\n"},
		{"dot inside a long line", long + ".x\r\n", -1, long + ".x\r\n"},
		{"long dot line stuffed once", "." + long + long + "\r\n", -1, ".." + long + long + "\r\n"},
		{"top counts a long line once", "A: b\r\n\r\n" + long + long + "\r\nl2\r\n", 1, "A: b\r\n\r\n" + long + long + "\r\n"},
	} {
		if got := renderMessage(t, tc.in, tc.bodyLines); got != tc.want {
			if len(got) > 200 || len(tc.want) > 200 {
				t.Errorf("%s: got %d octets, want %d", tc.name, len(got), len(tc.want))
			} else {
				t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
			}
		}
	}
}

// TestWriteMessageOneByte: the result does not depend on how the reader
// splits its data.
func TestWriteMessageOneByte(t *testing.T) {
	in := "A: b\n.\r\n\r\n.x\r\ny\r\r\nz\r"
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := writeMessage(w, iotest.OneByteReader(strings.NewReader(in)), -1); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if got, want := out.String(), renderMessage(t, in, -1); got != want {
		t.Errorf("one byte at a time: %q, all at once: %q", got, want)
	}
}

func TestWriteMessageErrors(t *testing.T) {
	boom := errors.New("boom")
	w := bufio.NewWriter(io.Discard)
	r := io.MultiReader(strings.NewReader("A: b\r\n"), iotest.ErrReader(boom))
	if err := writeMessage(w, r, -1); !errors.Is(err, boom) {
		t.Errorf("read error: got %v", err)
	}
	// A big message goes out as the buffer fills, and the first failing
	// write stops the copy: the rest of the message is not read.
	fw := &failingWriter{okBytes: 10000, err: boom}
	src := &countingReader{r: strings.NewReader(strings.Repeat("line of text\r\n", 100000))}
	if err := writeMessage(bufio.NewWriterSize(fw, 4096), src, -1); !errors.Is(err, boom) {
		t.Errorf("write error: got %v", err)
	}
	if src.n > 100<<10 {
		t.Errorf("read %d octets after the client was gone", src.n)
	}
}

// unstuff undoes the POP3 transfer encoding of a reply body (without its
// terminating dot line) the way a client does.
func unstuff(body string) (string, bool) {
	if body == "" {
		return "", true
	}
	if !strings.HasSuffix(body, "\r\n") {
		return "", false
	}
	lines := strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") {
			if !strings.HasPrefix(l, "..") {
				return "", false // would be read as the end, or is not stuffed
			}
			lines[i] = l[1:]
		}
	}
	return strings.Join(lines, "\r\n") + "\r\n", true
}

// normalizeCRLF is what the server promises to send: bare LF as CRLF, and a
// line end after an unterminated last line.
func normalizeCRLF(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		if msg[i] == '\n' && (i == 0 || msg[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(msg[i])
	}
	out := b.String()
	switch {
	case out == "", strings.HasSuffix(out, "\r\n"):
	case strings.HasSuffix(out, "\r"):
		out += "\n"
	default:
		out += "\r\n"
	}
	return out
}

// checkRendered asserts the properties of a RETR body: only CRLF line ends,
// no early terminator, and un-stuffing gives the normalised message.
func checkRendered(t testing.TB, msg, got string) {
	t.Helper()
	if strings.Contains(strings.ReplaceAll(got, "\r\n", ""), "\n") {
		t.Fatalf("bare LF in output %q", got)
	}
	if strings.Contains("\r\n"+got, "\r\n.\r\n") {
		t.Fatalf("early terminator in output %q", got)
	}
	back, ok := unstuff(got)
	if !ok {
		t.Fatalf("badly stuffed output %q", got)
	}
	if want := normalizeCRLF(msg); back != want {
		t.Fatalf("round trip of %q: got %q, want %q", msg, back, want)
	}
}

func TestWriteMessageRoundTrip(t *testing.T) {
	for _, msg := range []string{"", ".", "\n", "\r", "\r\n", "..\n.\r\n", "a\rb", "\n\n.\n", "x\r\r\n.\r"} {
		checkRendered(t, msg, renderMessage(t, msg, -1))
	}
}

type failingWriter struct {
	okBytes int
	err     error
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.okBytes {
		n := f.okBytes
		f.okBytes = 0
		return n, f.err
	}
	f.okBytes -= len(p)
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

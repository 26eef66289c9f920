package filter

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestSpool(t *testing.T) {
	for _, n := range []int{0, 10, 11, 5000} {
		data := bytes.Repeat([]byte("0123456789"), n/10+1)[:n]
		sp, err := newSpool(bytes.NewReader(data), 10)
		if err != nil {
			t.Fatal(err)
		}
		if sp.size != int64(n) || (n > 10) != (sp.f != nil) {
			t.Fatalf("n=%d: size %d, file %v", n, sp.size, sp.f != nil)
		}
		got, err := io.ReadAll(io.NewSectionReader(sp, 0, sp.size))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("n=%d: read back %d bytes, %v", n, len(got), err)
		}
		sp.Close()
	}
}

// A message larger than the in-memory spool reaches the checks and the
// mailbox intact, with the checks' header in front.
func TestLargeMessageThroughChecks(t *testing.T) {
	w := newWorld(t)
	hdr := sizeHeaderCheck{}
	p := New(Config{Store: w.st, Checks: Checks{Message: []MessageCheck{&hdr}}})
	ctx := t.Context()
	tx, err := p.Begin(ctx, &Envelope{ID: "L1", From: "x@other.example"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.AddRcpt(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	body := "Subject: big\r\n\r\n" + strings.Repeat("line of a big message\r\n", 3*spoolInMemory/23)
	if err := tx.Body(ctx, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if hdr.size != int64(len(body)) {
		t.Errorf("check saw %d bytes, message has %d", hdr.size, len(body))
	}
	got := w.inbox(t, w.alice)
	if len(got) != 1 || got[0] != "X-Check: seen\r\n"+body {
		t.Fatalf("delivered %d messages; first differs from the message plus header", len(got))
	}
}

type sizeHeaderCheck struct{ size int64 }

func (h *sizeHeaderCheck) CheckMessage(_ context.Context, _ *Envelope, _ []string, body io.ReaderAt, size int64) Verdict {
	h.size = size
	return Verdict{Stage: "hdr", Headers: []string{"X-Check: seen\r\n"}}
}

package spam

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// RELIABILITY #29-#31: hostile messages get a verdict within bounded time and
// memory. Each bomb is classified by a trained classifier; the test checks
// the verdict arrives, the hint token that shows the limit was hit, the time
// and the bytes allocated.

func nestedMultipart(depth int) []byte {
	var b bytes.Buffer
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeepest\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.Bytes()
}

func nestedRFC822(depth int) []byte {
	var b bytes.Buffer
	for range depth {
		b.WriteString("Subject: wrapped\r\nContent-Type: message/rfc822\r\n\r\n")
	}
	b.WriteString("Subject: core\r\n\r\ncore body\r\n")
	return b.Bytes()
}

func siblings(n int) []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: multipart/mixed; boundary=s\r\n\r\n")
	for range n {
		b.WriteString("--s\r\nContent-Type: text/plain\r\n\r\nx\r\n")
	}
	b.WriteString("--s--\r\n")
	return b.Bytes()
}

func foldedHeader(size int) []byte {
	var b bytes.Buffer
	b.WriteString("Subject: start")
	for b.Len() < size {
		b.WriteString("\r\n word")
	}
	b.WriteString("\r\n\r\nbody\r\n")
	return b.Bytes()
}

func manyFields(name string, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "%s: from h%d.example (h%d.example [192.0.2.%d]) by mx.example with SMTP; x\r\n", name, i, i, i%250)
	}
	b.WriteString("\r\nbody\r\n")
	return b.Bytes()
}

func rfc2231Params(n int) []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: text/plain; charset=utf-8")
	for i := range n {
		fmt.Fprintf(&b, ";\r\n name*%d*=a%d", i, i)
	}
	b.WriteString("\r\n\r\nbody\r\n")
	return b.Bytes()
}

func brokenBase64(size int) []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	junk := "QUJD!!@@##=\x00\xff\r\n==Zm9v*&^\r"
	for b.Len() < size {
		b.WriteString(junk)
	}
	return b.Bytes()
}

func TestBombs(t *testing.T) {
	c := NewClassifier(trainedStore(t), Config{})
	tests := []struct {
		name string
		msg  []byte
		hint string // a token showing the limit was hit ("" for none)
	}{
		{"multipart nested 10000 deep", nestedMultipart(10000), "mime:too-deep"},
		{"message/rfc822 nested 1000 deep", nestedRFC822(1000), "mime:too-deep"},
		{"100000 sibling parts", siblings(100000), "mime:too-many-parts"},
		{"5 MB folded header", foldedHeader(5 << 20), "hdr:long"},
		{"500000 To fields", manyFields("To", 500000), "hdr:too-many"},
		{"10000 Received fields", manyFields("Received", 10000), "hdr:too-many"},
		{"100000 RFC 2231 parameters", rfc2231Params(100000), "msg:truncated"},
		{"broken base64", brokenBase64(3 << 20), "mime:bad-base64"},
		{"5 MB line without newline", append([]byte("Subject: x\r\n\r\n"), bytes.Repeat([]byte("abcdefgh"), 5<<17)...), "skip:a:100+"},
		{"NUL and bare CR", []byte("Subject: a\x00b\rc\r\n\r\nhello\x00world\rbare\r\n"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			v, toks, err := c.Classify(context.Background(), bytes.NewReader(tt.msg))
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes in, %v, %.1f MB allocated, %d tokens, verdict %v", len(tt.msg), elapsed, float64(alloc)/1e6, len(toks), v)
			if tt.hint != "" && !contains(toks, tt.hint) {
				t.Errorf("token %q missing; tokens %q", tt.hint, toks[:min(len(toks), 40)])
			}
			// The tokenizer reads at most 1 MiB; allow generous slack for a
			// loaded machine, but not for work that grows with the bomb.
			if elapsed > 3*time.Second {
				t.Errorf("took %v", elapsed)
			}
			if alloc > 24<<20 {
				t.Errorf("allocated %d bytes", alloc)
			}
		})
	}
}

func contains(toks []string, want string) bool {
	for _, tok := range toks {
		if tok == want {
			return true
		}
	}
	return false
}

// TestAllocsPerMessage guards the steady-state cost of classifying an
// ordinary message.
func TestAllocsPerMessage(t *testing.T) {
	c := NewClassifier(trainedStore(t), Config{})
	msg := []byte("From: Alice <alice@corp.example>\r\nTo: bob@corp.example\r\nSubject: lunch tomorrow\r\n" +
		"Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n" +
		strings.Repeat("Shall we meet at the noodle place near the office at noon tomorrow? ", 20) +
		"\r\n--x\r\nContent-Type: text/html\r\n\r\n<p>" + strings.Repeat("Shall we meet at the noodle place? ", 20) + "</p>\r\n--x--\r\n")
	allocs := testing.AllocsPerRun(50, func() {
		if _, _, err := c.Classify(context.Background(), bytes.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.0f allocations per message", allocs)
	if allocs > 400 {
		t.Errorf("%.0f allocations per message, want at most 400", allocs)
	}
}

package spam

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTokenize feeds arbitrary bytes to the tokenizer: it must not panic,
// must respect its token cap, must return UTF-8 tokens, and must be
// deterministic (followers re-tokenize a message to untrain it).
func FuzzTokenize(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*", "*.eml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(nestedMultipart(30))
	f.Add(nestedRFC822(30))
	f.Add(siblings(120))
	f.Add(brokenBase64(200))
	f.Add(rfc2231Params(20))
	f.Add([]byte("Content-Type: text/html\r\n\r\n<a href='http://x@1.2.3.4:80/%41'>V<!--c-->iagra</a><script>x</script>"))
	f.Add([]byte("Subject: =?utf-7?Q?+AGEAYgBj-?= =?gb2312?B?xOO6ww==?= =?bad\r\n\r\n\xff\xfe\x00"))
	lim := Limits{MaxTokens: 500}
	f.Fuzz(func(t *testing.T, msg []byte) {
		toks, err := Tokenize(context.Background(), bytes.NewReader(msg), lim)
		if err != nil {
			t.Fatalf("Tokenize: %v", err)
		}
		if len(toks) > lim.MaxTokens {
			t.Fatalf("%d tokens over the cap", len(toks))
		}
		for _, tok := range toks {
			if !utf8.ValidString(tok) || tok == "" || strings.ContainsAny(tok, "\r\n") {
				t.Fatalf("bad token %q", tok)
			}
		}
		again, _ := Tokenize(context.Background(), bytes.NewReader(msg), lim)
		if !slices.Equal(toks, again) {
			t.Fatal("tokenizing twice gave different tokens")
		}
	})
}

package fingerprint

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkFromMessage: signature of a typical 2 KB HTML+base64 message.
func BenchmarkFromMessage(b *testing.B) {
	msg := mimeMessage(spamText + "\n" + hamText)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := FromMessage(strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatch100k: looking a signature up among 100,000 known ones
// (random texts, so only the band index is exercised, as for ham).
func BenchmarkMatch100k(b *testing.B) {
	s := New(Config{KV: nil})
	s.rev = 1 // never reload: the set is filled directly
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields(spamText + " " + hamText + " " + otherPromo)
	for i := range 100000 {
		var t strings.Builder
		for range 40 {
			t.WriteString(words[r.IntN(len(words))])
			t.WriteByte(' ')
		}
		sig, err := FromText(t.String())
		if err != nil {
			b.Fatal(err)
		}
		s.insert(strconv.Itoa(i), sig)
	}
	q, _ := FromText(hamText)
	for b.Loop() {
		s.matchLocked(&q)
	}
}

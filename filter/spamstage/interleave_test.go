package spamstage

import (
	"strings"
	"testing"
)

func TestInterleave(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"ss", "hhhhhh", "shhhshhh"},
		{"sss", "hhh", "shshsh"},
		{"", "hh", "hh"},
		{"ss", "", "ss"},
		{"", "", ""},
	} {
		got := strings.Join(Interleave(strings.Split(tc.a, "")[:len(tc.a)], strings.Split(tc.b, "")[:len(tc.b)]), "")
		if got != tc.want {
			t.Errorf("Interleave(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
	// Every prefix of a long run keeps the proportion within one message.
	a, b := make([]int, 1000), make([]int, 3000)
	for i := range a {
		a[i] = 1
	}
	got := Interleave(a, b)
	ones := 0
	for k, v := range got {
		ones += v
		if want := float64(k+1) / 4; float64(ones) < want-1 || float64(ones) > want+1 {
			t.Fatalf("after %d: %d from the smaller set, want about %.0f", k+1, ones, want)
		}
	}
}

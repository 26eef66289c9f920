package spam

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Word length bounds in characters: shorter words carry little, longer ones
// are hashes, base64 debris or glued-together junk and become "skip:" hints.
const (
	minWord = 3
	maxWord = 24
)

// isWordByte reports ASCII bytes that belong to words. '$' and '%' stay
// attached ("$100", "50%"): spam leans on them. '@' joins an address so it
// can be recognised; '.', '-', '_' and '\” join "e.g", "e-mail", "don't".
func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '\'' || c == '-' || c == '.' || c == '_' || c == '$' || c == '%' || c == '@'
}

// isCJK reports runes of scripts written without spaces between words:
// these are segmented into overlapping character bigrams.
func isCJK(r rune) bool {
	if r < 0x2E80 {
		return false
	}
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul)
}

// fold maps fullwidth ASCII variants (U+FF01-U+FF5E), popular in Chinese spam
// to dodge filters, to ASCII.
func fold(r rune) rune {
	if r >= 0xFF01 && r <= 0xFF5E {
		return r - 0xFEE0
	}
	return r
}

// isWordRune reports non-ASCII runes that belong to (non-CJK) words.
func isWordRune(r rune) bool {
	return !isCJK(r) && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r))
}

// text tokenizes running text: URLs, words (lowercased, prefixed) and CJK
// bigrams.
func (t *tokenizer) text(prefix, s string) {
	for i := 0; i < len(s) && !t.full(); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !isWordByte(c) {
				i++
				continue
			}
			if n := urlLen(s[i:]); n > 0 {
				t.url(s[i : i+n])
				i += n
				continue
			}
			j := wordEnd(s, i)
			t.word(prefix, s[i:j])
			i = j
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		r = fold(r)
		switch {
		case isCJK(r):
			i = t.cjk(prefix, s, i)
		case r < utf8.RuneSelf && isWordByte(byte(r)) || isWordRune(r):
			j := wordEnd(s, i)
			t.word(prefix, s[i:j])
			i = j
		default:
			i += size
		}
	}
}

// wordEnd returns the end of the word starting at s[i].
func wordEnd(s string, i int) int {
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if !isWordByte(c) {
				return i
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if f := fold(r); !(f < utf8.RuneSelf && isWordByte(byte(f)) || isWordRune(f)) {
			return i
		}
		i += size
	}
	return i
}

// word adds one word, lowercased and trimmed of edge punctuation.
func (t *tokenizer) word(prefix, w string) {
	w = strings.TrimLeft(w, "'-._!@%")
	w = strings.TrimRight(w, "'-._@$")
	if w == "" {
		return
	}
	if at := strings.IndexByte(w, '@'); at > 0 && strings.Contains(w[at:], ".") {
		t.domain("email:", strings.ToLower(w[at+1:]))
		return
	}
	n := len(w)
	ascii := true
	for i := 0; i < len(w); i++ {
		if w[i] >= utf8.RuneSelf {
			ascii = false
			n = utf8.RuneCountInString(w)
			break
		}
	}
	if n < minWord {
		return
	}
	if n > maxWord {
		t.skip(w, n)
		return
	}
	if ascii {
		b := t.lower[:0]
		for i := 0; i < len(w); i++ {
			c := w[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
		}
		t.lower = b
		t.addPrefixed(prefix, b)
		return
	}
	t.lower = append(t.lower[:0], strings.Map(func(r rune) rune { return unicode.ToLower(fold(r)) }, w)...)
	t.addPrefixed(prefix, t.lower)
}

// skip records an overlong word by its first character's class and length
// (as SpamBayes does): the shape generalizes where the word would not.
func (t *tokenizer) skip(w string, n int) {
	class := "x"
	switch c := w[0]; {
	case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		class = "a"
	case '0' <= c && c <= '9':
		class = "9"
	case c >= utf8.RuneSelf:
		class = "u"
	}
	t.add("skip:" + class + ":" + bucket10(n))
}

func bucket10(n int) string {
	if n >= 100 {
		return "100+"
	}
	return string(rune('0'+n/10)) + "0"
}

// cjk adds the character bigrams of the CJK run starting at s[i] ("垃圾邮件"
// gives 垃圾, 圾邮, 邮件; a lone character is kept as it is) and returns the
// run's end.
func (t *tokenizer) cjk(prefix, s string, i int) int {
	start, prev, n := i, -1, 0
	for i < len(s) && !t.full() {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !isCJK(r) {
			break
		}
		if prev >= 0 {
			t.addPrefixedString(prefix, s[prev:i+size])
		}
		prev = i
		i += size
		n++
	}
	if n == 1 {
		t.addPrefixedString(prefix, s[start:i])
	}
	return max(i, start+1)
}

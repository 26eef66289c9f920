// Package fingerprint recognises near-copies of known spam. A message's
// body text is normalised (decoded MIME text parts, HTML tags dropped,
// URLs, addresses and numbers replaced by placeholders, lower-cased) and
// cut into overlapping 3-word shingles; a MinHash signature of 64 values
// estimates the Jaccard similarity of two shingle sets, so a copy with a
// changed name, link or a few words still scores well above the match
// threshold while unrelated mail scores near zero. Candidates are found
// through 16 bands of 4 values (LSH), so matching costs a few map look-ups
// whatever the number of known fingerprints.
//
// KV namespace it owns: "filter.fingerprints": key Signature.Key() →
// Record (JSON). Every node keeps the band index in memory and reloads it
// when the namespace's revision changes.
//
// What it must not do: learn by itself. Fingerprints come from people
// marking spam (Add, the CLI); one wrong fingerprint only adds a score.
package fingerprint

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"unicode"
)

// Size is the number of MinHash values of a signature; Bands × Rows = Size.
const (
	Size  = 64
	Bands = 16
	Rows  = Size / Bands
	// MinShingles is the least shingles a text needs to get a signature:
	// a short text's signature matches too much.
	MinShingles = 8
	// maxTokens bounds the work per message.
	maxTokens = 20000
)

// Signature is the MinHash of a text's shingle set.
type Signature [Size]uint32

// ErrTooShort: the text has too few words for a reliable signature.
var ErrTooShort = errors.New("too little text (a fingerprint needs at least 10 words)")

// seeds are fixed so signatures made on any node, any time, compare.
var seeds = func() [Size]uint64 {
	var s [Size]uint64
	x := uint64(0x9e3779b97f4a7c15)
	for i := range s {
		x = splitmix(x)
		s[i] = x
	}
	return s
}()

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// FromText computes the signature of already extracted text.
func FromText(text string) (Signature, error) {
	toks := Tokens(text)
	var sig Signature
	if len(toks) < MinShingles+2 {
		return sig, ErrTooShort
	}
	for i := range sig {
		sig[i] = ^uint32(0)
	}
	seen := make(map[uint64]struct{}, len(toks))
	for i := 0; i+3 <= len(toks); i++ {
		h := fnv.New64a()
		h.Write([]byte(toks[i]))
		h.Write([]byte{0})
		h.Write([]byte(toks[i+1]))
		h.Write([]byte{0})
		h.Write([]byte(toks[i+2]))
		x := h.Sum64()
		if _, dup := seen[x]; dup {
			continue
		}
		seen[x] = struct{}{}
		for j := range sig {
			if v := uint32(splitmix(x ^ seeds[j])); v < sig[j] {
				sig[j] = v
			}
		}
	}
	if len(seen) < MinShingles {
		return Signature{}, ErrTooShort
	}
	return sig, nil
}

// Tokens normalises text into words: lower case; URLs, email addresses
// and numbers become placeholders (they are what spammers vary between
// copies); each Han, Hiragana, Katakana or Hangul character is a word of
// its own, so Chinese text without spaces still makes shingles.
func Tokens(text string) []string {
	var out []string
	fields := strings.FieldsFunc(text, unicode.IsSpace)
	for _, f := range fields {
		if len(out) >= maxTokens {
			break
		}
		lf := strings.ToLower(f)
		switch {
		case strings.HasPrefix(lf, "http://"), strings.HasPrefix(lf, "https://"), strings.HasPrefix(lf, "www."):
			out = append(out, "<url>")
			continue
		case strings.Contains(lf, "@") && strings.Contains(lf, "."):
			out = append(out, "<email>")
			continue
		}
		var word strings.Builder
		flush := func() {
			if word.Len() > 0 {
				w := word.String()
				if isNumber(w) {
					w = "<num>"
				}
				out = append(out, w)
				word.Reset()
			}
		}
		for _, r := range lf {
			switch {
			case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul):
				flush()
				out = append(out, string(r))
			case unicode.IsLetter(r) || unicode.IsDigit(r):
				word.WriteRune(r)
			default:
				flush()
			}
		}
		flush()
	}
	if len(out) > maxTokens {
		out = out[:maxTokens]
	}
	return out
}

func isNumber(w string) bool {
	for _, r := range w {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

// Similarity estimates the Jaccard similarity of the two texts' shingles.
func (s *Signature) Similarity(o *Signature) float64 {
	same := 0
	for i := range s {
		if s[i] == o[i] {
			same++
		}
	}
	return float64(same) / Size
}

// band is the hash of one band's values.
func (s *Signature) band(b int) uint64 {
	var buf [Rows * 4]byte
	for i := range Rows {
		binary.LittleEndian.PutUint32(buf[i*4:], s[b*Rows+i])
	}
	return splitmix(uint64(b)<<56 ^ fnvBytes(buf[:]))
}

func fnvBytes(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// Key is the signature's KV key: a short hash of its values.
func (s *Signature) Key() string {
	h := sha256.Sum256(s.bytes())
	return hex.EncodeToString(h[:8])
}

func (s *Signature) bytes() []byte {
	b := make([]byte, Size*4)
	for i, v := range s {
		binary.BigEndian.PutUint32(b[i*4:], v)
	}
	return b
}

// String encodes the signature (base64url, 344 characters).
func (s Signature) String() string { return base64.RawURLEncoding.EncodeToString(s.bytes()) }

// ParseSignature decodes String's form.
func ParseSignature(str string) (Signature, error) {
	var s Signature
	b, err := base64.RawURLEncoding.DecodeString(str)
	if err != nil || len(b) != Size*4 {
		return s, fmt.Errorf("fingerprint: bad signature encoding (want %d base64url bytes)", Size*4)
	}
	for i := range s {
		s[i] = binary.BigEndian.Uint32(b[i*4:])
	}
	return s, nil
}

package dkimsign

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/filter/auth"
)

// BenchmarkSignatures measures signing one 10 KiB message with an RSA-2048
// and an Ed25519 key (what every outgoing message costs), beside each key
// alone.
func BenchmarkSignatures(b *testing.B) {
	rsaKey, err := auth.GenerateKey(auth.AlgRSA2048)
	if err != nil {
		b.Fatal(err)
	}
	edKey, err := auth.GenerateKey(auth.AlgEd25519)
	if err != nil {
		b.Fatal(err)
	}
	rsa := SigningKey{Domain: "sign.test", Selector: "r", Algorithm: AlgRSA, Key: rsaKey}
	ed := SigningKey{Domain: "sign.test", Selector: "e", Algorithm: AlgEd25519, Key: edKey}
	msg := []byte(testMsg + strings.Repeat("A line of body text for the benchmark, about seventy bytes long.\r\n", 150))
	for _, c := range []struct {
		name string
		keys []SigningKey
	}{{"rsa+ed25519", []SigningKey{rsa, ed}}, {"rsa", []SigningKey{rsa}}, {"ed25519", []SigningKey{ed}}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := Signatures(bytes.NewReader(msg), c.keys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("stamp", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, err := Stamp(io.Discard, bytes.NewReader(msg), link); err != nil {
				b.Fatal(err)
			}
		}
	})
}

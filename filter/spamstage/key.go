package spamstage

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/textproto"
	"strings"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// maxKeyHeader bounds the header bytes read to find the Message-ID.
const maxKeyHeader = 256 << 10

// TrainKey names a message in spam.trained. The copy a user moves to Junk
// is not byte-equal to the one the spam stage saw (the stage's own header
// fields, a subject tag), so the key is the Message-ID (RFC 5322 §3.6.4)
// when there is one, hashed to a fixed length, and the SHA-256 of the
// bytes otherwise.
func TrainKey(msg []byte) string {
	return trainKey(bytes.NewReader(msg), msg)
}

// TrainKeyReader is TrainKey for a message that is not in memory; sha is
// its SHA-256 (the blob name), used when it has no Message-ID.
func TrainKeyReader(r io.Reader, sha string) string {
	if id := messageID(r); id != "" {
		return "mid:" + hashHex(id)
	}
	return "sha:" + sha
}

func trainKey(r io.Reader, msg []byte) string {
	if id := messageID(r); id != "" {
		return "mid:" + hashHex(id)
	}
	sum := sha256.Sum256(msg)
	return "sha:" + hex.EncodeToString(sum[:])
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// messageID returns the normalized Message-ID field of the message's own
// header, or "".
func messageID(r io.Reader) string {
	h, _ := readHeader(r)
	id := strings.TrimSpace(h.Get("Message-Id"))
	return strings.ToLower(strings.Trim(id, "<>"))
}

// readHeader parses the header section (bounded); a broken header gives
// what could be read.
func readHeader(r io.Reader) (textproto.MIMEHeader, error) {
	tp := textproto.NewReader(bufio.NewReader(io.LimitReader(r, maxKeyHeader)))
	return tp.ReadMIMEHeader()
}

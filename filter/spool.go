package filter

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// spoolInMemory is the largest message the message checks read from
// memory; larger ones go to an unlinked temporary file.
const spoolInMemory = 256 << 10

// spool is a message held for the message checks before it is stored.
type spool struct {
	mem  *bytes.Reader
	f    *os.File
	size int64
}

// newSpool reads r to its end into memory or, past memLimit bytes, into
// an unlinked temporary file (os.TempDir) that vanishes when closed.
func newSpool(r io.Reader, memLimit int64) (*spool, error) {
	head, err := io.ReadAll(io.LimitReader(r, memLimit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(head)) <= memLimit {
		return &spool{mem: bytes.NewReader(head), size: int64(len(head))}, nil
	}
	f, err := os.CreateTemp("", "tandem-spool-*")
	if err != nil {
		return nil, fmt.Errorf("spool file: %w", err)
	}
	os.Remove(f.Name()) // unlinked: nothing is left behind, even after a crash
	n, err := f.Write(head)
	if err == nil {
		var m int64
		m, err = io.Copy(f, r)
		n += int(m)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &spool{f: f, size: int64(n)}, nil
}

// ReadAt implements io.ReaderAt.
func (s *spool) ReadAt(p []byte, off int64) (int, error) {
	if s.f != nil {
		return s.f.ReadAt(p, off)
	}
	return s.mem.ReadAt(p, off)
}

// Close releases the spool.
func (s *spool) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

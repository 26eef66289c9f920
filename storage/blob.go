package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// BlobStore keeps message bodies as plain RFC 5322 files named by the SHA-256
// of their bytes (DESIGN §2): blobs/ab/abcdef....eml. A file is written to
// blobs/tmp, fsynced, renamed into place and its directory fsynced, so a blob
// that exists under its final name is complete and durable.
//
// The FSM reference-counts blobs; this type only does file I/O. Deletion
// happens outside Apply (after the command that dropped the last reference)
// and is guarded against a concurrent Put of the same content by the
// in-flight table.
type BlobStore struct {
	dir string
	log *slog.Logger

	mu       sync.Mutex
	inflight map[string]int // sha → writers holding it until their command is applied
}

// Blob is a stored body not yet (or no longer) protected by a reference in the
// FSM. Release it once the command that references it has been applied, or
// when the delivery is abandoned.
type Blob struct {
	SHA  string
	Size int64

	store *BlobStore
	once  sync.Once
}

// Release ends the in-flight protection of the blob.
func (b *Blob) Release() {
	if b == nil || b.store == nil {
		return
	}
	b.once.Do(func() { b.store.release(b.SHA) })
}

// OpenBlobStore creates the directory tree (256 fan-out folders, made durable)
// and removes leftovers of interrupted writes in tmp/.
func OpenBlobStore(dir string, log *slog.Logger) (*BlobStore, error) {
	if log == nil {
		log = slog.Default()
	}
	bs := &BlobStore{dir: dir, log: log, inflight: map[string]int{}}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o750); err != nil {
		return nil, fmt.Errorf("create blob dir: %w", err)
	}
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(filepath.Join(dir, fmt.Sprintf("%02x", i)), 0o750); err != nil {
			return nil, fmt.Errorf("create blob fan-out dir: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	// Orphans in tmp/ are writes that never reached the rename: never
	// referenced, never acknowledged (RELIABILITY #2).
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		return nil, fmt.Errorf("read blob tmp dir: %w", err)
	}
	for _, e := range ents {
		_ = os.Remove(filepath.Join(dir, "tmp", e.Name()))
	}
	return bs, nil
}

// ValidSHA reports whether s looks like a lower-case hex SHA-256, the only
// form of name that is ever turned into a path.
func ValidSHA(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Path is the file of a blob. sha must be valid (see ValidSHA).
func (bs *BlobStore) Path(sha string) string {
	return filepath.Join(bs.dir, sha[:2], sha+".eml")
}

// Open opens a blob for reading.
func (bs *BlobStore) Open(sha string) (*os.File, error) {
	if !ValidSHA(sha) {
		return nil, fmt.Errorf("open blob %q: invalid name", sha)
	}
	f, err := os.Open(bs.Path(sha))
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", sha, err)
	}
	return f, nil
}

// Has reports whether the blob file exists.
func (bs *BlobStore) Has(sha string) bool {
	if !ValidSHA(sha) {
		return false
	}
	_, err := os.Stat(bs.Path(sha))
	return err == nil
}

// Put stores r durably and returns the blob, protected from deletion until
// Release. If a blob with the same content exists it is reused.
func (bs *BlobStore) Put(r io.Reader) (*Blob, error) {
	f, err := os.CreateTemp(filepath.Join(bs.dir, "tmp"), "in-*")
	if err != nil {
		return nil, fmt.Errorf("create blob tmp file: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) (*Blob, error) {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return fail(fmt.Errorf("write blob: %w", err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("fsync blob: %w", err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("close blob: %w", err)
	}
	sha := hex.EncodeToString(h.Sum(nil))
	final := bs.Path(sha)

	bs.mu.Lock()
	bs.inflight[sha]++
	bs.mu.Unlock()
	b := &Blob{SHA: sha, Size: n, store: bs}

	if _, err := os.Stat(final); err == nil {
		// Same content already stored and durable; the in-flight mark keeps
		// the sweeper away until our command is applied.
		os.Remove(tmp)
		return b, nil
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		b.Release()
		return nil, fmt.Errorf("rename blob %s: %w", sha, err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		b.Release()
		return nil, err
	}
	return b, nil
}

// PutVerified stores r only if its content hashes to sha (a blob fetched from
// a peer verifies itself by its name).
func (bs *BlobStore) PutVerified(sha string, r io.Reader) (*Blob, error) {
	b, err := bs.Put(r)
	if err != nil {
		return nil, err
	}
	if b.SHA != sha {
		b.Release()
		bs.removeIfIdle(b.SHA, func(string) bool { return false })
		return nil, fmt.Errorf("blob %s: content hashes to %s", sha, b.SHA)
	}
	return b, nil
}

func (bs *BlobStore) release(sha string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.inflight[sha] <= 1 {
		delete(bs.inflight, sha)
	} else {
		bs.inflight[sha]--
	}
}

// removeIfIdle deletes the blob file when no writer holds it and referenced
// reports false.
func (bs *BlobStore) removeIfIdle(sha string, referenced func(string) bool) {
	if !ValidSHA(sha) {
		return
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.inflight[sha] > 0 || referenced(sha) {
		return
	}
	if err := os.Remove(bs.Path(sha)); err != nil && !errors.Is(err, os.ErrNotExist) {
		bs.log.Warn("remove unreferenced blob", "blob", sha, "err", err)
	}
}

// Sweep removes blob files older than minAge that referenced reports unused:
// leftovers of deliveries that crashed between the blob write and the commit.
func (bs *BlobStore) Sweep(minAge time.Duration, referenced func(string) bool) (removed int) {
	cutoff := time.Now().Add(-minAge)
	for i := 0; i < 256; i++ {
		sub := filepath.Join(bs.dir, fmt.Sprintf("%02x", i))
		ents, err := os.ReadDir(sub)
		if err != nil {
			continue
		}
		for _, e := range ents {
			sha, ok := strings.CutSuffix(e.Name(), ".eml")
			if !ok || !ValidSHA(sha) {
				continue
			}
			info, err := e.Info()
			if err != nil || info.ModTime().After(cutoff) {
				continue
			}
			before := bs.Has(sha)
			bs.removeIfIdle(sha, referenced)
			if before && !bs.Has(sha) {
				removed++
			}
		}
	}
	return removed
}

// syncDir makes a rename or create in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s for fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

package spam

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
)

// Snapshot format, version 1 (all integers little endian):
//
//	magic   "TSPAMDB" (7 bytes), version (1 byte)
//	nSpam   uint32, nHam uint32   trained message counts
//	count   uint64                number of tokens
//	count × { id uint64, spam uint32, ham uint32 }   sorted by id, ids unique
//	crc     uint32                CRC-32C of everything before it
//
// Fixed-width entries let OpenSnapshot answer lookups straight from the
// file's bytes by binary search, without building a map: a process that
// classifies one message reads the file and is ready.
const (
	snapMagic    = "TSPAMDB"
	snapVersion  = 1
	snapHeadLen  = 8 + 4 + 4 + 8
	snapEntryLen = 16
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrSnapshot is returned (wrapped) for a snapshot that is not one.
var ErrSnapshot = errors.New("spam: malformed snapshot")

func snapshotLen(tokens int) int64 { return snapHeadLen + int64(tokens)*snapEntryLen + 4 }

// Snapshot writes the store's state to w in the format above. Equal stores
// write equal bytes.
func (m *MemStore) Snapshot(w io.Writer) error {
	ids, cs, nSpam, nHam := m.sortedEntries()
	crc := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 64<<10)
	var head [snapHeadLen]byte
	copy(head[:], snapMagic)
	head[7] = snapVersion
	binary.LittleEndian.PutUint32(head[8:], nSpam)
	binary.LittleEndian.PutUint32(head[12:], nHam)
	binary.LittleEndian.PutUint64(head[16:], uint64(len(ids)))
	bw.Write(head[:])
	var e [snapEntryLen]byte
	for i, id := range ids {
		binary.LittleEndian.PutUint64(e[0:], uint64(id))
		binary.LittleEndian.PutUint32(e[8:], cs[i].spam)
		binary.LittleEndian.PutUint32(e[12:], cs[i].ham)
		bw.Write(e[:])
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write spam snapshot: %w", err)
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], crc.Sum32())
	if _, err := w.Write(sum[:]); err != nil {
		return fmt.Errorf("write spam snapshot: %w", err)
	}
	return nil
}

// Restore replaces the store's state with the snapshot read from r. On error
// the store is unchanged.
func (m *MemStore) Restore(r io.Reader) error {
	crc := crc32.New(crcTable)
	br := bufio.NewReaderSize(r, 64<<10)
	tr := io.TeeReader(br, crc)
	var head [snapHeadLen]byte
	if _, err := io.ReadFull(tr, head[:]); err != nil {
		return fmt.Errorf("%w: header: %v", ErrSnapshot, err)
	}
	nSpam, nHam, n, err := parseSnapHead(head[:])
	if err != nil {
		return err
	}
	// Grow the map as entries arrive rather than trusting n for the size.
	tokens := make(map[TokenID]counts, min(n, 1<<20))
	var e [snapEntryLen]byte
	var prev TokenID
	for i := uint64(0); i < n; i++ {
		if _, err := io.ReadFull(tr, e[:]); err != nil {
			return fmt.Errorf("%w: entry %d: %v", ErrSnapshot, i, err)
		}
		id := TokenID(binary.LittleEndian.Uint64(e[0:]))
		if i > 0 && id <= prev {
			return fmt.Errorf("%w: entry %d out of order", ErrSnapshot, i)
		}
		prev = id
		tokens[id] = counts{binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])}
	}
	want := crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil {
		return fmt.Errorf("%w: checksum: %v", ErrSnapshot, err)
	}
	if binary.LittleEndian.Uint32(sum[:]) != want {
		return fmt.Errorf("%w: checksum mismatch", ErrSnapshot)
	}
	m.mu.Lock()
	m.nSpam, m.nHam, m.tokens = nSpam, nHam, tokens
	m.mu.Unlock()
	return nil
}

func parseSnapHead(head []byte) (nSpam, nHam uint32, n uint64, err error) {
	if string(head[:7]) != snapMagic {
		return 0, 0, 0, fmt.Errorf("%w: bad magic", ErrSnapshot)
	}
	if head[7] != snapVersion {
		return 0, 0, 0, fmt.Errorf("%w: unknown version %d", ErrSnapshot, head[7])
	}
	return binary.LittleEndian.Uint32(head[8:]), binary.LittleEndian.Uint32(head[12:]),
		binary.LittleEndian.Uint64(head[16:]), nil
}

// SnapshotView is a read-only TokenStore over a snapshot's bytes, for
// short-lived processes (the benchmark command) that should not pay for
// building a map. Lookups are binary searches.
type SnapshotView struct {
	nSpam, nHam uint32
	entries     []byte // count × snapEntryLen
}

// OpenSnapshot checks b (magic, version, length, checksum, order) and returns
// a view over it. b must not change while the view is used.
func OpenSnapshot(b []byte) (*SnapshotView, error) {
	if len(b) < snapHeadLen+4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrSnapshot, len(b))
	}
	nSpam, nHam, n, err := parseSnapHead(b)
	if err != nil {
		return nil, err
	}
	if n > uint64(len(b)-snapHeadLen-4)/snapEntryLen || snapshotLen(int(n)) != int64(len(b)) {
		return nil, fmt.Errorf("%w: length %d does not hold %d tokens", ErrSnapshot, len(b), n)
	}
	body := len(b) - 4
	if crc32.Checksum(b[:body], crcTable) != binary.LittleEndian.Uint32(b[body:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrSnapshot)
	}
	entries := b[snapHeadLen:body]
	for off := snapEntryLen; off < len(entries); off += snapEntryLen {
		if binary.LittleEndian.Uint64(entries[off:]) <= binary.LittleEndian.Uint64(entries[off-snapEntryLen:]) {
			return nil, fmt.Errorf("%w: entry %d out of order", ErrSnapshot, off/snapEntryLen)
		}
	}
	return &SnapshotView{nSpam: nSpam, nHam: nHam, entries: entries}, nil
}

// Counts implements TokenStore.
func (v *SnapshotView) Counts(ids []TokenID, spam, ham []uint32) (nSpam, nHam uint32) {
	n := len(v.entries) / snapEntryLen
	for i, id := range ids {
		j := sort.Search(n, func(k int) bool {
			return TokenID(binary.LittleEndian.Uint64(v.entries[k*snapEntryLen:])) >= id
		})
		spam[i], ham[i] = 0, 0
		if j < n {
			e := v.entries[j*snapEntryLen:]
			if TokenID(binary.LittleEndian.Uint64(e)) == id {
				spam[i], ham[i] = binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
			}
		}
	}
	return v.nSpam, v.nHam
}

// Len returns the number of tokens in the snapshot.
func (v *SnapshotView) Len() int { return len(v.entries) / snapEntryLen }

package spam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

// TokenID names a token in the learned state: the 64-bit FNV-1a hash of the
// token's text. Stores and deltas keep IDs, not text, so a Raft command for a
// trained message is ~10 bytes per token whatever the token's length.
type TokenID uint64

// ID returns the TokenID of token.
func ID(token string) TokenID {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(token); i++ {
		h ^= uint64(token[i])
		h *= prime
	}
	return TokenID(h)
}

// TokenStore is the learned state the classifier reads. Counts fills spam[i]
// and ham[i] with the number of trained spam and ham messages that contained
// ids[i] (the slices have len(ids)) and returns the number of trained spam and
// ham messages. Implementations must be safe for concurrent use.
type TokenStore interface {
	Counts(ids []TokenID, spam, ham []uint32) (nSpam, nHam uint32)
}

// TokenDelta changes one token's counts.
type TokenDelta struct {
	ID        TokenID
	Spam, Ham int32
}

// Delta is one training step (train, untrain or move a message between
// classes, or a batch of them): what the storage layer replicates through
// Raft and applies with MemStore.Apply. Tokens are sorted by ID, one entry per
// ID, no entry all zero.
type Delta struct {
	Spam, Ham int32 // change to the number of trained spam and ham messages
	Tokens    []TokenDelta
}

// IsZero reports whether applying d changes nothing.
func (d Delta) IsZero() bool { return d.Spam == 0 && d.Ham == 0 && len(d.Tokens) == 0 }

// Merge returns the sum of d and o (for batching many training steps into one
// command). Applying the sum equals applying both unless a count hits zero or
// the uint32 limit in between (counts saturate).
func (d Delta) Merge(o Delta) Delta {
	out := Delta{Spam: d.Spam + o.Spam, Ham: d.Ham + o.Ham}
	out.Tokens = make([]TokenDelta, 0, len(d.Tokens)+len(o.Tokens))
	i, j := 0, 0
	for i < len(d.Tokens) || j < len(o.Tokens) {
		var td TokenDelta
		switch {
		case j == len(o.Tokens) || i < len(d.Tokens) && d.Tokens[i].ID < o.Tokens[j].ID:
			td = d.Tokens[i]
			i++
		case i == len(d.Tokens) || o.Tokens[j].ID < d.Tokens[i].ID:
			td = o.Tokens[j]
			j++
		default:
			td = TokenDelta{ID: d.Tokens[i].ID, Spam: d.Tokens[i].Spam + o.Tokens[j].Spam, Ham: d.Tokens[i].Ham + o.Tokens[j].Ham}
			i++
			j++
		}
		if td.Spam != 0 || td.Ham != 0 {
			out.Tokens = append(out.Tokens, td)
		}
	}
	return out
}

const deltaVersion = 1

// MarshalBinary encodes d for a Raft command: a version byte, the message
// count changes (zigzag varints), the number of tokens (uvarint), then per
// token its ID (8 bytes little endian) and its two count changes (zigzag).
func (d Delta) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(d.Tokens)*12)
	b = append(b, deltaVersion)
	b = binary.AppendVarint(b, int64(d.Spam))
	b = binary.AppendVarint(b, int64(d.Ham))
	b = binary.AppendUvarint(b, uint64(len(d.Tokens)))
	for _, t := range d.Tokens {
		b = binary.LittleEndian.AppendUint64(b, uint64(t.ID))
		b = binary.AppendVarint(b, int64(t.Spam))
		b = binary.AppendVarint(b, int64(t.Ham))
	}
	return b, nil
}

var errDelta = errors.New("spam: malformed delta")

// UnmarshalBinary decodes what MarshalBinary wrote. It rejects unknown
// versions, truncated or trailing bytes and unsorted token IDs.
func (d *Delta) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != deltaVersion {
		return fmt.Errorf("%w: unknown version", errDelta)
	}
	b = b[1:]
	next := func() (int32, bool) {
		v, n := binary.Varint(b)
		if n <= 0 || v < math.MinInt32 || v > math.MaxInt32 {
			return 0, false
		}
		b = b[n:]
		return int32(v), true
	}
	var ok1, ok2 bool
	var out Delta
	out.Spam, ok1 = next()
	out.Ham, ok2 = next()
	if !ok1 || !ok2 {
		return fmt.Errorf("%w: message counts", errDelta)
	}
	n, k := binary.Uvarint(b)
	// Each token needs at least 10 bytes: refuse counts the input cannot hold
	// before allocating for them.
	if k <= 0 || n > uint64(len(b)-k)/10 {
		return fmt.Errorf("%w: token count", errDelta)
	}
	b = b[k:]
	out.Tokens = make([]TokenDelta, 0, n)
	for i := uint64(0); i < n; i++ {
		if len(b) < 8 {
			return fmt.Errorf("%w: truncated token %d", errDelta, i)
		}
		id := TokenID(binary.LittleEndian.Uint64(b))
		b = b[8:]
		s, ok1 := next()
		h, ok2 := next()
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: token %d counts", errDelta, i)
		}
		if i > 0 && id <= out.Tokens[i-1].ID {
			return fmt.Errorf("%w: token %d out of order", errDelta, i)
		}
		out.Tokens = append(out.Tokens, TokenDelta{ID: id, Spam: s, Ham: h})
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errDelta, len(b))
	}
	*d = out
	return nil
}

// counts is one token's state.
type counts struct{ spam, ham uint32 }

// MemStore is an in-memory TokenStore changed only by Apply. Applying the
// same deltas in the same order to two empty stores gives equal stores, and
// so equal snapshots. The zero value is not usable: call NewMemStore.
type MemStore struct {
	mu          sync.RWMutex
	nSpam, nHam uint32
	tokens      map[TokenID]counts
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{tokens: make(map[TokenID]counts)}
}

// Counts implements TokenStore.
func (m *MemStore) Counts(ids []TokenID, spam, ham []uint32) (nSpam, nHam uint32) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for i, id := range ids {
		c := m.tokens[id]
		spam[i], ham[i] = c.spam, c.ham
	}
	return m.nSpam, m.nHam
}

// addSat adds a signed change to a count, saturating at 0 and MaxUint32, so
// untraining a message that was never trained cannot wrap a count around.
func addSat(v uint32, d int32) uint32 {
	r := int64(v) + int64(d)
	if r < 0 {
		return 0
	}
	if r > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(r)
}

// Apply changes the store by d. It is deterministic and never fails: counts
// saturate at zero, and a token whose counts are both zero is dropped.
func (m *MemStore) Apply(d Delta) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nSpam = addSat(m.nSpam, d.Spam)
	m.nHam = addSat(m.nHam, d.Ham)
	for _, t := range d.Tokens {
		c := m.tokens[t.ID]
		c.spam = addSat(c.spam, t.Spam)
		c.ham = addSat(c.ham, t.Ham)
		if c.spam == 0 && c.ham == 0 {
			delete(m.tokens, t.ID)
		} else {
			m.tokens[t.ID] = c
		}
	}
}

// Stats is the size of the learned state.
type Stats struct {
	Tokens      int
	Spam, Ham   uint32 // trained messages
	SnapshotLen int64  // bytes a snapshot takes
}

// Stats returns the store's size.
func (m *MemStore) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Stats{Tokens: len(m.tokens), Spam: m.nSpam, Ham: m.nHam, SnapshotLen: snapshotLen(len(m.tokens))}
}

// sortedEntries returns the store's tokens sorted by ID, for snapshots.
func (m *MemStore) sortedEntries() ([]TokenID, []counts, uint32, uint32) {
	m.mu.RLock()
	ids := make([]TokenID, 0, len(m.tokens))
	for id := range m.tokens {
		ids = append(ids, id)
	}
	cs := make([]counts, len(ids))
	slices.Sort(ids)
	for i, id := range ids {
		cs[i] = m.tokens[id]
	}
	nSpam, nHam := m.nSpam, m.nHam
	m.mu.RUnlock()
	return ids, cs, nSpam, nHam
}

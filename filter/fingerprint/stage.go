package fingerprint

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
)

// KV namespace.
const Namespace = "filter.fingerprints"

// Defaults.
const (
	DefaultThreshold = 0.5 // estimated Jaccard similarity of shingles
	DefaultScore     = 6.0
)

// Record is the stored form of one known-spam fingerprint.
type Record struct {
	Signature string `json:"sig"`
	Added     int64  `json:"added"` // unix seconds
	Note      string `json:"note,omitempty"`
}

// KV is the part of the replicated KV store the stage uses.
type KV interface {
	KVApply(ctx context.Context, ops ...storage.KVOp) error
	KVList(ns, prefix string, fn func(key string, value []byte, version uint64) error) error
	KVRevision(ns string) uint64
}

// Config configures a Set.
type Config struct {
	KV        KV      // required
	Threshold float64 // 0: DefaultThreshold
	Score     float64 // 0: DefaultScore
	Logger    *slog.Logger
	Now       func() time.Time
}

// Set is the known-spam fingerprints with their band index, and the
// filter.MessageCheck that scores near-copies.
type Set struct {
	cfg Config

	mu    sync.RWMutex
	rev   uint64
	sigs  []Signature
	keys  []string
	byKey map[string]int32
	index [Bands]map[uint64][]int32
}

var _ filter.MessageCheck = (*Set)(nil)

// New returns a Set; it loads the fingerprints on first use.
func New(cfg Config) *Set {
	if cfg.Threshold <= 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.Score == 0 {
		cfg.Score = DefaultScore
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Set{cfg: cfg}
	s.reset()
	return s
}

func (s *Set) reset() {
	s.sigs, s.keys, s.byKey = nil, nil, map[string]int32{}
	for i := range s.index {
		s.index[i] = map[uint64][]int32{}
	}
}

func (s *Set) insert(key string, sig Signature) {
	n := int32(len(s.sigs))
	s.byKey[key] = n
	s.sigs = append(s.sigs, sig)
	s.keys = append(s.keys, key)
	for b := range Bands {
		h := sig.band(b)
		s.index[b][h] = append(s.index[b][h], n)
	}
}

// refresh brings the index up to date when the namespace changed. Keys
// are content hashes, so known keys need no parsing: only new records are
// decoded. When records were deleted the index is rebuilt.
func (s *Set) refresh() {
	rev := s.cfg.KV.KVRevision(Namespace)
	s.mu.RLock()
	same := rev == s.rev
	s.mu.RUnlock()
	if same {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev == s.rev {
		return
	}
	if !s.load(false) {
		s.reset()
		s.load(true)
	}
	s.rev = rev
}

// load adds the stored records not yet indexed; it reports false when
// indexed records are gone from the store.
func (s *Set) load(full bool) bool {
	before, kept := len(s.byKey), 0
	err := s.cfg.KV.KVList(Namespace, "", func(key string, value []byte, _ uint64) error {
		if _, ok := s.byKey[key]; ok && !full {
			kept++
			return nil
		}
		var r Record
		if err := json.Unmarshal(value, &r); err != nil {
			return nil
		}
		sig, err := ParseSignature(r.Signature)
		if err != nil {
			return nil
		}
		s.insert(key, sig)
		return nil
	})
	if err != nil {
		s.cfg.Logger.Warn("fingerprint: reload", "err", err)
		return true
	}
	return full || kept == before
}

// Len is the number of known fingerprints.
func (s *Set) Len() int {
	s.refresh()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sigs)
}

// Add stores a known-spam fingerprint (replicated). S1's learning calls it
// when a user marks a message as spam.
func (s *Set) Add(ctx context.Context, sig Signature) error {
	return Add(ctx, s.cfg.KV, sig, "", s.cfg.Now())
}

// AddMessage fingerprints a message and stores it; ErrTooShort when the
// message has too little text.
func (s *Set) AddMessage(ctx context.Context, r io.Reader) (Signature, error) {
	sig, err := FromMessage(r)
	if err != nil {
		return sig, err
	}
	return sig, s.Add(ctx, sig)
}

// Add stores sig in kv.
func Add(ctx context.Context, kv KV, sig Signature, note string, now time.Time) error {
	raw, _ := json.Marshal(Record{Signature: sig.String(), Added: now.Unix(), Note: note})
	if err := kv.KVApply(ctx, storage.KVOp{Op: storage.KVPut, NS: Namespace, Key: sig.Key(), Value: raw}); err != nil {
		return fmt.Errorf("store fingerprint %s: %w", sig.Key(), err)
	}
	return nil
}

// Match returns the most similar known fingerprint at or above the
// threshold.
func (s *Set) Match(sig *Signature) (key string, similarity float64, ok bool) {
	s.refresh()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.matchLocked(sig)
}

func (s *Set) matchLocked(sig *Signature) (key string, similarity float64, ok bool) {
	seen := map[int32]bool{}
	for b := range Bands {
		for _, i := range s.index[b][sig.band(b)] {
			if seen[i] {
				continue
			}
			seen[i] = true
			if sim := sig.Similarity(&s.sigs[i]); sim >= s.cfg.Threshold && sim > similarity {
				key, similarity, ok = s.keys[i], sim, true
			}
		}
	}
	return key, similarity, ok
}

// CheckMessage implements filter.MessageCheck: a near-copy of known spam
// scores Score. Authenticated submissions are not judged.
func (s *Set) CheckMessage(ctx context.Context, env *filter.Envelope, rcpts []string, body io.ReaderAt, size int64) filter.Verdict {
	v := filter.Verdict{Stage: "fingerprint", Action: filter.ActionAccept}
	if env.AuthAccountID != 0 || s.Len() == 0 {
		return v
	}
	sig, err := FromMessage(io.NewSectionReader(body, 0, size))
	if err != nil {
		return v
	}
	if key, sim, ok := s.Match(&sig); ok {
		v.Score = s.cfg.Score
		v.Action = filter.ActionTag
		v.Reason = fmt.Sprintf("near-copy of known spam %s (similarity %.2f)", key, sim)
	}
	return v
}

// Package spamstage puts the Bayesian classifier of filter/spam into the
// mail pipeline (SPEC F1, F2; DESIGN §6): the spam stage, the learned state
// replicated through Raft, learning (automatic, by users moving mail to and
// from Junk, by the admin's CLI), the per-domain and per-user spam actions
// and the quarantine.
//
// Replicated state lives in the storage KV store; this package owns these
// namespaces:
//
//   - spam.tokens: per-token counters, key "s<16 hex token ID>" (spam count)
//     and "h<16 hex token ID>" (ham count), changed only with KVAdd so that
//     training from several nodes adds up;
//   - spam.meta: counters "spam" and "ham", the number of trained messages;
//   - spam.trained: key = training key of a message (see TrainKey), value a
//     JSON TrainedRecord: which class it was trained as and with what
//     weight, so a message is never trained twice and retraining the other
//     way untrains first;
//   - spam.policy: JSON Policy documents under "global", "d:DOMAIN" and
//     "u:ADDRESS";
//   - quarantine: JSON QuarantineRecord under "ACCOUNTID/BLOBSHA";
//   - quarantine.key: "hmac", the key that signs release links;
//   - quarantine.digest: "last", when the last digest was sent (unix s).
//
// Every node keeps an in-memory spam.MemStore of the token counts and
// classifies against it; it reloads the store when the KV revision of
// spam.tokens or spam.meta changes (polled) and right after its own
// training, so what a user teaches counts at once on the node they use.
package spamstage

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemmail/tandem/filter/spam"
	"github.com/tandemmail/tandem/storage"
)

// KV namespaces owned by this package (see the package doc).
const (
	NSTokens          = "spam.tokens"
	NSMeta            = "spam.meta"
	NSTrained         = "spam.trained"
	NSPolicy          = "spam.policy"
	NSQuarantine      = "quarantine"
	NSQuarantineKey   = "quarantine.key"
	NSQuarantineState = "quarantine.digest"
)

// maxBatchOps keeps one training batch under storage.MaxKVBatchOps with
// room for one more message (at most 2 ops per token plus its record).
const maxBatchOps = storage.MaxKVBatchOps - 2*8000 - 16

// Config configures an Engine.
type Config struct {
	Classifier spam.Config
	// AutoSpam and AutoHam are the total scores at or beyond which a
	// verdict trains the classifier by itself (defaults 12 and -2).
	AutoSpam, AutoHam float64
	NoAutoLearn       bool
	FlushInterval     time.Duration // auto-learn batching; default 1 s
	SyncInterval      time.Duration // KV revision polling; default 2 s
	Logger            *slog.Logger
	Now               func() time.Time
}

func (c Config) withDefaults() Config {
	if c.AutoSpam == 0 {
		c.AutoSpam = 12
	}
	if c.AutoHam == 0 {
		c.AutoHam = -2
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// learned is one consistent in-memory view of the token counts.
type learned struct {
	mem *spam.MemStore
	cls *spam.Classifier
	rev uint64 // KV revision it was loaded at
}

// Engine is a node's spam filter: classification, learning, policies and
// the quarantine, over the replicated KV store.
type Engine struct {
	st  *storage.Store
	cfg Config
	log *slog.Logger

	cur    atomic.Pointer[learned]
	loadMu sync.Mutex // one reload at a time

	queue chan pending // auto-learn, flushed in batches
	// trainMu serializes training batches of this node, so the local
	// trained-record check and the write do not race each other.
	trainMu sync.Mutex
}

type pending struct {
	key    string
	tokens []string
	class  spam.Class
}

// New makes an Engine and loads the learned state from the KV store.
func New(st *storage.Store, cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	e := &Engine{st: st, cfg: cfg, log: cfg.Logger, queue: make(chan pending, 1024)}
	e.cur.Store(e.newLearned(spam.NewMemStore(), 0))
	if err := e.Reload(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Engine) newLearned(m *spam.MemStore, rev uint64) *learned {
	return &learned{mem: m, cls: spam.NewClassifier(m, e.cfg.Classifier), rev: rev}
}

func (e *Engine) revision() uint64 {
	return max(e.st.KVRevision(NSTokens), e.st.KVRevision(NSMeta))
}

// Reload rebuilds the in-memory counts from the KV store if it changed
// since the last load. The revision is read first, so a change racing the
// scan only causes one more reload.
func (e *Engine) Reload() error {
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	rev := e.revision()
	if rev == e.cur.Load().rev && rev != 0 {
		return nil
	}
	type sh struct{ s, h int64 }
	counts := make(map[spam.TokenID]sh)
	err := e.st.KVList(NSTokens, "", func(key string, v []byte, _ uint64) error {
		if len(key) != 17 || len(v) != 8 {
			return nil // not ours: ignore rather than fail every reload
		}
		raw, err := hex.DecodeString(key[1:])
		if err != nil {
			return nil
		}
		id := spam.TokenID(binary.BigEndian.Uint64(raw))
		n := int64(binary.BigEndian.Uint64(v))
		c := counts[id]
		switch key[0] {
		case 's':
			c.s = n
		case 'h':
			c.h = n
		default:
			return nil
		}
		counts[id] = c
		return nil
	})
	if err != nil {
		return fmt.Errorf("load spam tokens: %w", err)
	}
	d := spam.Delta{
		Spam:   clamp32(e.st.KVCounter(NSMeta, "spam")),
		Ham:    clamp32(e.st.KVCounter(NSMeta, "ham")),
		Tokens: make([]spam.TokenDelta, 0, len(counts)),
	}
	for id, c := range counts {
		d.Tokens = append(d.Tokens, spam.TokenDelta{ID: id, Spam: clamp32(c.s), Ham: clamp32(c.h)})
	}
	m := spam.NewMemStore()
	m.Apply(d)
	e.cur.Store(e.newLearned(m, rev))
	return nil
}

func clamp32(n int64) int32 {
	return int32(min(max(n, 0), 1<<31-1))
}

// Run keeps the in-memory state in sync and flushes auto-learning until
// ctx ends; the last batch is flushed on the way out.
func (e *Engine) Run(ctx context.Context) {
	poll := time.NewTicker(e.cfg.SyncInterval)
	defer poll.Stop()
	flush := time.NewTicker(e.cfg.FlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			e.flushQueue(fctx)
			cancel()
			return
		case <-poll.C:
			if err := e.Reload(); err != nil {
				e.log.Warn("spam state reload failed", "err", err)
			}
		case <-flush.C:
			e.flushQueue(ctx)
		}
	}
}

// Stats describes the learned state of this node.
type Stats struct {
	Tokens   int    `json:"tokens"`
	Spam     uint32 `json:"spam_messages"`
	Ham      uint32 `json:"ham_messages"`
	Revision uint64 `json:"revision"`
}

// Stats returns the size of the in-memory learned state.
func (e *Engine) Stats() Stats {
	l := e.cur.Load()
	s := l.mem.Stats()
	return Stats{Tokens: s.Tokens, Spam: s.Spam, Ham: s.Ham, Revision: l.rev}
}

// Result is the classifier's opinion of one message.
type Result struct {
	Verdict spam.Verdict
	Points  float64 // BayesPoints of Verdict.Score
	Tokens  []string
}

// Classify scores a message against the in-memory state.
func (e *Engine) Classify(ctx context.Context, msg io.Reader) (Result, error) {
	v, toks, err := e.cur.Load().cls.Classify(ctx, msg)
	if err != nil {
		return Result{}, err
	}
	return Result{Verdict: v, Points: BayesPoints(v.Score), Tokens: toks}, nil
}

// BayesPoints maps the classifier's probability to SpamAssassin-style
// points, like SpamAssassin's BAYES_* rules: only confident opinions move
// the total. With the default threshold of 5 a message at or above the
// classifier's own spam cutoff (spam.DefaultConfig().SpamCutoff, chosen by
// cross-validation) is spam on its own.
func BayesPoints(p float64) float64 {
	switch {
	case p >= 0.999:
		return 7
	case p >= spam.DefaultConfig().SpamCutoff:
		return 6
	case p >= 0.9:
		return 3
	case p >= 0.7:
		return 1
	case p <= 0.001:
		return -4
	case p <= 0.01:
		return -3
	case p <= 0.1:
		return -1
	}
	return 0
}

// bayesRule names the points as a test, for X-Spam-Status.
func bayesRule(p float64) string {
	switch {
	case p >= 0.999:
		return "BAYES_999"
	case p >= 0.99:
		return "BAYES_99"
	case p >= spam.DefaultConfig().SpamCutoff:
		return fmt.Sprintf("BAYES_%02.0f", math.Floor(spam.DefaultConfig().SpamCutoff*100))
	case p >= 0.9:
		return "BAYES_90"
	case p >= 0.7:
		return "BAYES_70"
	case p <= 0.001:
		return "BAYES_00"
	case p <= 0.01:
		return "BAYES_01"
	case p <= 0.1:
		return "BAYES_10"
	}
	return "BAYES_50"
}

// TrainedRecord is the value of a spam.trained key.
type TrainedRecord struct {
	Class  string `json:"class"` // "spam" or "ham"
	Weight int32  `json:"weight"`
	At     int64  `json:"at"` // unix seconds
	Source string `json:"source,omitempty"`
}

func parseClass(s string) spam.Class {
	switch s {
	case "spam":
		return spam.Spam
	case "ham":
		return spam.Ham
	}
	return spam.None
}

// ParseClass reads "spam", "ham" or "none" (untrain).
func ParseClass(s string) (spam.Class, error) {
	switch s {
	case "spam":
		return spam.Spam, nil
	case "ham":
		return spam.Ham, nil
	case "none", "forget":
		return spam.None, nil
	}
	return spam.None, fmt.Errorf("class %q: want spam, ham or none", s)
}

// trainedAs reads a message's training record.
func (e *Engine) trainedAs(key string) (spam.Trained, uint64, error) {
	v, ver, ok, err := e.st.KVGet(NSTrained, key)
	if err != nil || !ok {
		return spam.Trained{}, 0, err
	}
	var r TrainedRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return spam.Trained{}, ver, nil // unreadable: treat as untrained, overwrite
	}
	return spam.Trained{Class: parseClass(r.Class), Weight: r.Weight}, ver, nil
}

// TrainedAs reports how a message was trained (spam.None: not trained).
func (e *Engine) TrainedAs(key string) spam.Class {
	t, _, _ := e.trainedAs(key)
	return t.Class
}

// Item is one message to learn.
type Item struct {
	Key     string // TrainKey of the message; "" derives it from Message
	Message []byte
	Class   spam.Class // spam.None untrains
	Source  string     // "user", "admin", "auto", "release"
}

// TrainResult counts what a Train call changed.
type TrainResult struct {
	Trained   int `json:"trained"`   // newly learned or retrained
	Unchanged int `json:"unchanged"` // already trained as asked
}

// Train learns messages as one or a few atomic KV batches and applies
// them to this node's state at once. A message already trained as asked is
// left alone; one trained the other way is untrained first (spam.Retrain).
func (e *Engine) Train(ctx context.Context, items []Item) (TrainResult, error) {
	ps := make([]pending, 0, len(items))
	for _, it := range items {
		key := it.Key
		if key == "" {
			key = TrainKey(it.Message)
		}
		toks, err := spam.Tokenize(ctx, bytesReader(it.Message), e.cfg.Classifier.Limits)
		if err != nil {
			return TrainResult{}, fmt.Errorf("tokenize: %w", err)
		}
		ps = append(ps, pending{key: key, tokens: toks, class: it.Class})
	}
	source := "admin"
	if len(items) > 0 && items[0].Source != "" {
		source = items[0].Source
	}
	return e.train(ctx, ps, source, true)
}

// train turns pending items into KV batches. override=false (auto-learn)
// never changes a message someone already trained.
func (e *Engine) train(ctx context.Context, ps []pending, source string, override bool) (TrainResult, error) {
	e.trainMu.Lock()
	defer e.trainMu.Unlock()
	var res TrainResult
	var delta spam.Delta
	var ops []storage.KVOp
	seen := map[string]bool{}
	flush := func() error {
		if len(ops) == 0 && delta.IsZero() {
			return nil
		}
		all := append(deltaOps(delta), ops...)
		if err := e.st.KVApply(ctx, all...); err != nil {
			return fmt.Errorf("store training: %w", err)
		}
		// Reload rather than apply the delta here: a reload racing this
		// batch may already hold it, and applying it twice would stick.
		// On a follower the batch shows up with the next poll instead.
		if err := e.Reload(); err != nil {
			e.log.Warn("spam state reload failed", "err", err)
		}
		delta, ops = spam.Delta{}, nil
		return nil
	}
	now := e.cfg.Now().Unix()
	ov := newOverlay(e.cur.Load().mem)
	cls := spam.NewClassifier(ov, e.cfg.Classifier)
	for _, p := range ps {
		if seen[p.key] {
			res.Unchanged++
			continue
		}
		seen[p.key] = true
		from, _, err := e.trainedAs(p.key)
		if err != nil {
			return res, err
		}
		if from.Class == p.class || (!override && from.Class != spam.None) {
			res.Unchanged++
			continue
		}
		to := cls.Training(p.class, cls.Score(p.tokens))
		d := spam.Retrain(p.tokens, from, to)
		if 2*(len(delta.Tokens)+len(d.Tokens))+len(ops)+3 > maxBatchOps {
			if err := flush(); err != nil {
				return res, err
			}
			// The stored state now holds the batch: start a new overlay.
			ov = newOverlay(e.cur.Load().mem)
			cls = spam.NewClassifier(ov, e.cfg.Classifier)
		}
		delta = delta.Merge(d)
		ov.add(d)
		if p.class == spam.None {
			ops = append(ops, storage.KVOp{Op: storage.KVDelete, NS: NSTrained, Key: p.key})
		} else {
			rec, _ := json.Marshal(TrainedRecord{Class: p.class.String(), Weight: to.Weight, At: now, Source: source})
			ops = append(ops, storage.KVOp{Op: storage.KVPut, NS: NSTrained, Key: p.key, Value: rec})
		}
		res.Trained++
	}
	return res, flush()
}

// deltaOps turns a Delta into KV counter additions.
func deltaOps(d spam.Delta) []storage.KVOp {
	ops := make([]storage.KVOp, 0, 2*len(d.Tokens)+2)
	if d.Spam != 0 {
		ops = append(ops, storage.KVOp{Op: storage.KVAdd, NS: NSMeta, Key: "spam", Delta: int64(d.Spam)})
	}
	if d.Ham != 0 {
		ops = append(ops, storage.KVOp{Op: storage.KVAdd, NS: NSMeta, Key: "ham", Delta: int64(d.Ham)})
	}
	for _, t := range d.Tokens {
		key := tokenKey(t.ID)
		if t.Spam != 0 {
			ops = append(ops, storage.KVOp{Op: storage.KVAdd, NS: NSTokens, Key: "s" + key, Delta: int64(t.Spam)})
		}
		if t.Ham != 0 {
			ops = append(ops, storage.KVOp{Op: storage.KVAdd, NS: NSTokens, Key: "h" + key, Delta: int64(t.Ham)})
		}
	}
	return ops
}

func tokenKey(id spam.TokenID) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(id))
	return hex.EncodeToString(b[:])
}

// autoLearn queues a confident verdict for the next batch. A full queue
// drops it: auto-learning is advisory.
func (e *Engine) autoLearn(key string, tokens []string, class spam.Class) {
	select {
	case e.queue <- pending{key: key, tokens: tokens, class: class}:
	default:
		e.log.Debug("auto-learn queue full; verdict not learned")
	}
}

// flushQueue writes the queued auto-learning as one batch.
func (e *Engine) flushQueue(ctx context.Context) {
	var ps []pending
	for {
		select {
		case p := <-e.queue:
			ps = append(ps, p)
			continue
		default:
		}
		break
	}
	if len(ps) == 0 {
		return
	}
	if _, err := e.train(ctx, ps, "auto", false); err != nil && !errors.Is(err, context.Canceled) {
		e.log.Warn("auto-learn batch lost", "messages", len(ps), "err", err)
	}
}

package lists

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
)

// AWLScore is what mail from an address the recipient wrote to scores.
const AWLScore = -5.0

// AWL is the automatic whitelist: a filter.MessageCheck that records the
// recipients of authenticated submissions, and a filter.EnvelopeCheck that
// scores mail from them to that user. Records are written in batches
// (one KV batch per flush interval) and only for pairs not yet known, so
// a user mailing the same people every day costs no writes. Close it to
// flush.
type AWL struct {
	store Store
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	pending map[string]bool // keys not yet applied
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

var (
	_ filter.MessageCheck  = (*AWL)(nil)
	_ filter.EnvelopeCheck = (*AWL)(nil)
)

// maxAWLPending bounds buffered records when the store is unavailable.
const maxAWLPending = 20000

// maxAWLPerMessage bounds what one message records (a mass mailing to a
// thousand people is not an address book).
const maxAWLPerMessage = 100

// NewAWL starts the automatic whitelist and its flush goroutine.
func NewAWL(store Store, log *slog.Logger, flushEvery time.Duration, now func() time.Time) *AWL {
	if log == nil {
		log = slog.Default()
	}
	if flushEvery <= 0 {
		flushEvery = time.Second
	}
	if now == nil {
		now = time.Now
	}
	a := &AWL{store: store, log: log, now: now, pending: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go a.loop(flushEvery)
	return a
}

// AWLKey is the key of (account address, correspondent address).
func AWLKey(account, addr string) string {
	return strings.ToLower(account) + "/" + strings.ToLower(addr)
}

// Known reports whether account wrote to addr.
func (a *AWL) Known(account, addr string) bool {
	if addr == "" {
		return false
	}
	key := AWLKey(account, addr)
	a.mu.Lock()
	p := a.pending[key]
	a.mu.Unlock()
	if p {
		return true
	}
	_, _, ok, err := a.store.KVGet(AWLNamespace, key)
	return err == nil && ok
}

// KnownTo reports whether any account rcpt delivers to wrote to env's sender.
func (a *AWL) KnownTo(env *filter.Envelope, rcpt string) bool {
	if env.From == "" {
		return false
	}
	for _, acct := range accounts(a.store, rcpt) {
		if a.Known(acct, env.From) {
			return true
		}
	}
	return false
}

// CheckEnvelope scores mail from a correspondent of the recipient.
func (a *AWL) CheckEnvelope(ctx context.Context, env *filter.Envelope, rcpt string) filter.Verdict {
	v := filter.Verdict{Stage: "awl", Action: filter.ActionAccept}
	if env.AuthAccountID != 0 {
		return v
	}
	if a.KnownTo(env, rcpt) {
		v.Score = AWLScore
		v.Reason = fmt.Sprintf("<%s> is a correspondent of <%s>", env.From, rcpt)
	}
	return v
}

// CheckMessage records the recipients of an authenticated submission.
func (a *AWL) CheckMessage(ctx context.Context, env *filter.Envelope, rcpts []string, body io.ReaderAt, size int64) filter.Verdict {
	v := filter.Verdict{Stage: "awl", Action: filter.ActionAccept}
	if env.AuthAccountID == 0 {
		return v
	}
	acct, err := a.store.AccountByID(env.AuthAccountID)
	if err != nil {
		return v
	}
	n := 0
	for _, r := range rcpts {
		if n >= maxAWLPerMessage {
			break
		}
		if strings.EqualFold(r, env.From) || strings.EqualFold(r, acct.Address) || a.Known(acct.Address, r) {
			continue
		}
		a.mu.Lock()
		if len(a.pending) < maxAWLPending {
			a.pending[AWLKey(acct.Address, r)] = true
		}
		a.mu.Unlock()
		n++
	}
	if n > 0 {
		v.Reason = fmt.Sprintf("%d new correspondents", n)
	}
	return v
}

func (a *AWL) loop(every time.Duration) {
	defer close(a.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			// A last flush, short: a node stopping without a leader must
			// not hang (losing these records only costs a retry).
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			a.Flush(ctx)
			cancel()
			return
		case <-t.C:
			a.Flush(context.Background())
		}
	}
}

// Flush applies the pending records as one KV batch.
func (a *AWL) Flush(ctx context.Context) error {
	a.mu.Lock()
	batch := a.pending
	a.pending = map[string]bool{}
	a.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	ts := []byte(strconv.FormatInt(a.now().Unix(), 10))
	keys := make([]string, 0, len(batch))
	for k := range batch {
		keys = append(keys, k)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Chunks keep each Raft entry well under the KV batch limits.
	for len(keys) > 0 {
		n := min(len(keys), 2000)
		ops := make([]storage.KVOp, n)
		for i, k := range keys[:n] {
			ops[i] = storage.KVOp{Op: storage.KVPut, NS: AWLNamespace, Key: k, Value: ts}
		}
		if err := a.store.KVApply(ctx, ops...); err != nil {
			a.log.Warn("awl: write records", "records", len(keys), "err", err)
			a.mu.Lock()
			for _, k := range keys {
				if len(a.pending) < maxAWLPending {
					a.pending[k] = true
				}
			}
			a.mu.Unlock()
			return fmt.Errorf("awl: write %d records: %w", len(keys), err)
		}
		keys = keys[n:]
	}
	return nil
}

// Close flushes and stops the goroutine.
func (a *AWL) Close() error {
	a.once.Do(func() {
		close(a.stop)
		<-a.done
	})
	return nil
}

package greylist

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
)

// KV is the part of the replicated KV store the stage uses.
type KV interface {
	KVApply(ctx context.Context, ops ...storage.KVOp) error
	KVGet(ns, key string) (value []byte, version uint64, ok bool, err error)
	KVList(ns, prefix string, fn func(key string, value []byte, version uint64) error) error
	KVRevision(ns string) uint64
}

// Config configures the stage.
type Config struct {
	KV KV // required
	// Known reports senders that pass at once: allow-listed senders and
	// IPs, addresses a local user wrote to. nil: none.
	Known func(ctx context.Context, env *filter.Envelope, rcpt string) bool
	// FlushInterval is how often buffered writes are applied (default 1 s);
	// SweepInterval how often expired records are deleted (default 1 h).
	FlushInterval, SweepInterval time.Duration
	Logger                       *slog.Logger
	Now                          func() time.Time
}

// Triplet is the stored record of one (network, sender, recipient).
type Triplet struct {
	Network string `json:"net"`
	From    string `json:"from"`
	Rcpt    string `json:"rcpt"`
	First   int64  `json:"first"`            // unix seconds of the first attempt of this round
	Passed  int64  `json:"passed,omitempty"` // unix seconds of the last pass; 0: not yet
}

// Network is the stored record of a client network's passes.
type Network struct {
	Passes int   `json:"passes"`
	Last   int64 `json:"last"`
}

// Stage is a filter.EnvelopeCheck. Close it to flush buffered writes.
type Stage struct {
	cfg Config

	mu       sync.Mutex
	flushMu  sync.Mutex // one flush at a time: a Flush returns only after every earlier write landed
	rev      uint64
	settings *Settings
	pending  map[string][]byte // key in Namespace → value not yet applied
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	closed   bool
}

var _ filter.EnvelopeCheck = (*Stage)(nil)

// maxPending bounds buffered writes when the store is unavailable;
// flushChunk is the most records in one KV batch.
const (
	maxPending = 20000
	flushChunk = 2000
)

// New starts the stage and its flush goroutine.
func New(cfg Config) *Stage {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Stage{cfg: cfg, pending: map[string][]byte{}, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

// Settings returns the current settings, reloaded when they changed.
func (s *Stage) Settings() Settings {
	rev := s.cfg.KV.KVRevision(ConfigNamespace)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settings != nil && rev == s.rev {
		return *s.settings
	}
	raw, _, _, err := s.cfg.KV.KVGet(ConfigNamespace, ConfigKey)
	st, perr := ParseSettings(raw)
	if err != nil || perr != nil {
		s.cfg.Logger.Warn("greylist: cannot read settings, keeping the previous ones", "err", errors.Join(err, perr))
		if s.settings != nil {
			return *s.settings
		}
		return Settings{}
	}
	s.rev, s.settings = rev, &st
	return st
}

// ClientNetwork is the network greylisting remembers: the /24 of an IPv4
// client, the /64 of an IPv6 one, since big senders retry from another
// address of the same pool.
func ClientNetwork(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return (&net.IPNet{IP: v4.Mask(net.CIDRMask(24, 32)), Mask: net.CIDRMask(24, 32)}).String()
	}
	if v6 := ip.To16(); v6 != nil {
		return (&net.IPNet{IP: v6.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
	}
	return "unknown"
}

func tripletKey(network, from, rcpt string) string {
	h := sha256.Sum256([]byte(network + "\x00" + strings.ToLower(from) + "\x00" + strings.ToLower(rcpt)))
	return "t/" + hex.EncodeToString(h[:16])
}

func networkKey(network string) string { return "n/" + network }

// read returns the buffered or stored value of key.
func (s *Stage) read(key string) ([]byte, bool) {
	s.mu.Lock()
	v, ok := s.pending[key]
	s.mu.Unlock()
	if ok {
		return v, true
	}
	v, _, ok, err := s.cfg.KV.KVGet(Namespace, key)
	if err != nil {
		s.cfg.Logger.Warn("greylist: read", "key", key, "err", err)
		return nil, false
	}
	return v, ok
}

func (s *Stage) write(key string, v any) {
	raw, _ := json.Marshal(v)
	s.mu.Lock()
	if len(s.pending) < maxPending {
		s.pending[key] = raw
	}
	n := len(s.pending)
	s.mu.Unlock()
	if n >= 500 {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// CheckEnvelope implements filter.EnvelopeCheck.
func (s *Stage) CheckEnvelope(ctx context.Context, env *filter.Envelope, rcpt string) filter.Verdict {
	v := filter.Verdict{Stage: "greylist", Action: filter.ActionAccept}
	st := s.Settings()
	switch {
	case !st.AppliesTo(rcpt):
		return v
	case env.AuthAccountID != 0:
		v.Reason = "authenticated client"
		return v
	case s.cfg.Known != nil && s.cfg.Known(ctx, env, rcpt):
		v.Reason = "known sender"
		return v
	}
	now := s.cfg.Now()
	network := ClientNetwork(env.ClientIP)
	if n := st.AutoPasses(); n > 0 {
		var nw Network
		if raw, ok := s.read(networkKey(network)); ok && json.Unmarshal(raw, &nw) == nil &&
			nw.Passes >= n && now.Before(time.Unix(nw.Last, 0).Add(st.PassValid())) {
			v.Reason = fmt.Sprintf("client network %s passed %d times", network, nw.Passes)
			return v
		}
	}
	from := env.From
	if from == "" {
		from = "<>"
	}
	key := tripletKey(network, from, rcpt)
	var t Triplet
	raw, ok := s.read(key)
	if ok && json.Unmarshal(raw, &t) != nil {
		ok = false
	}
	first := time.Unix(t.First, 0)
	switch {
	case ok && t.Passed != 0 && now.Before(time.Unix(t.Passed, 0).Add(st.PassValid())):
		// Known good. Extending the pass costs a write: at most one a day.
		if now.Sub(time.Unix(t.Passed, 0)) > 24*time.Hour {
			t.Passed = now.Unix()
			s.write(key, t)
		}
		v.Reason = "triplet passed before"
		return v
	case ok && t.Passed == 0 && now.Before(first.Add(st.Delay())):
		wait := first.Add(st.Delay()).Sub(now)
		return tempfail(v, wait)
	case ok && t.Passed == 0 && now.Before(first.Add(st.Expiry())):
		t.Passed = now.Unix()
		s.write(key, t)
		s.countPass(network, now)
		v.Reason = fmt.Sprintf("greylisting passed after %s", now.Sub(first).Round(time.Second))
		return v
	}
	// New, expired or an old pass: a new round.
	s.write(key, Triplet{Network: network, From: strings.ToLower(from), Rcpt: strings.ToLower(rcpt), First: now.Unix()})
	return tempfail(v, st.Delay())
}

func tempfail(v filter.Verdict, wait time.Duration) filter.Verdict {
	v.Action = filter.ActionTempFail
	secs := int64((wait + time.Second - 1) / time.Second)
	v.Reason = fmt.Sprintf("Greylisted, try again in %d seconds", max(secs, 1))
	return v
}

func (s *Stage) countPass(network string, now time.Time) {
	var nw Network
	if raw, ok := s.read(networkKey(network)); ok {
		json.Unmarshal(raw, &nw)
	}
	nw.Passes++
	nw.Last = now.Unix()
	s.write(networkKey(network), nw)
}

func (s *Stage) loop() {
	defer close(s.done)
	flush := time.NewTicker(s.cfg.FlushInterval)
	defer flush.Stop()
	sweep := time.NewTicker(s.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-s.stop:
			// A last flush, short: a node stopping without a leader must
			// not hang (losing these records only costs a retry).
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.Flush(ctx)
			cancel()
			return
		case <-flush.C:
			s.Flush(context.Background())
		case <-s.kick:
			s.Flush(context.Background())
		case <-sweep.C:
			if err := s.Sweep(context.Background()); err != nil {
				s.cfg.Logger.Warn("greylist: sweep", "err", err)
			}
		}
	}
}

// Flush applies the buffered writes as one KV batch. On failure they stay
// buffered (unless newer values replaced them) for the next flush.
func (s *Stage) Flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	batch := s.pending
	s.pending = map[string][]byte{}
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	keys := make([]string, 0, len(batch))
	for k := range batch {
		keys = append(keys, k)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Chunks keep each Raft entry well under the KV batch limits (a
	// record is at most about 700 bytes).
	for len(keys) > 0 {
		n := min(len(keys), flushChunk)
		ops := make([]storage.KVOp, n)
		for i, k := range keys[:n] {
			ops[i] = storage.KVOp{Op: storage.KVPut, NS: Namespace, Key: k, Value: batch[k]}
		}
		if err := s.cfg.KV.KVApply(ctx, ops...); err != nil {
			s.cfg.Logger.Warn("greylist: write records", "records", len(keys), "err", err)
			s.mu.Lock()
			for _, k := range keys {
				if _, newer := s.pending[k]; !newer && len(s.pending) < maxPending {
					s.pending[k] = batch[k]
				}
			}
			s.mu.Unlock()
			return fmt.Errorf("greylist: write %d records: %w", len(keys), err)
		}
		keys = keys[n:]
	}
	return nil
}

// Sweep deletes records that can no longer pass anything.
func (s *Stage) Sweep(ctx context.Context) error {
	st := s.Settings()
	now := s.cfg.Now()
	var dead []storage.KVOp
	err := s.cfg.KV.KVList(Namespace, "", func(key string, value []byte, _ uint64) error {
		expired := false
		switch {
		case strings.HasPrefix(key, "t/"):
			var t Triplet
			if json.Unmarshal(value, &t) != nil {
				expired = true
			} else if t.Passed != 0 {
				expired = !now.Before(time.Unix(t.Passed, 0).Add(st.PassValid()))
			} else {
				expired = !now.Before(time.Unix(t.First, 0).Add(st.Expiry()))
			}
		case strings.HasPrefix(key, "n/"):
			var nw Network
			expired = json.Unmarshal(value, &nw) != nil || !now.Before(time.Unix(nw.Last, 0).Add(st.PassValid()))
		}
		if expired {
			dead = append(dead, storage.KVOp{Op: storage.KVDelete, NS: Namespace, Key: key})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for len(dead) > 0 {
		n := min(len(dead), 1000)
		if err := s.cfg.KV.KVApply(ctx, dead[:n]...); err != nil {
			return fmt.Errorf("delete %d expired greylist records: %w", n, err)
		}
		dead = dead[n:]
	}
	return nil
}

// Triplets lists up to limit stored triplets (for the admin).
func (s *Stage) Triplets(limit int) ([]Triplet, error) {
	return ListTriplets(s.cfg.KV, limit)
}

// ListTriplets reads up to limit stored triplets from kv.
func ListTriplets(kv KV, limit int) ([]Triplet, error) {
	var out []Triplet
	errStop := errors.New("stop")
	err := kv.KVList(Namespace, "t/", func(_ string, value []byte, _ uint64) error {
		if len(out) >= limit {
			return errStop
		}
		var t Triplet
		if json.Unmarshal(value, &t) == nil {
			out = append(out, t)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return out, nil
}

// Close stops the flush goroutine after a last flush.
func (s *Stage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return nil
}

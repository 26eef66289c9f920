// Package outbound delivers the replicated outbound queue (SPEC M4): it
// looks up MX records (RFC 5321 §5.1, null MX per RFC 7505), connects over
// IPv6 and IPv4, uses STARTTLS opportunistically or strictly, speaks SMTP
// with PIPELINING, SIZE, 8BITMIME and SMTPUTF8 as the remote offers, retries
// with back-off until an expiry, and sends RFC 3464 DSNs. Every attempt
// leaves an SMTP transcript (SPEC L2).
//
// Mail gateway mode (SPEC M9, gateway.go, gatewaycfg.go): recipients
// queued with a backend list go to those hosts in order instead of the
// MX; Callout verifies a recipient at a backend. The gateway
// configuration is the KV namespace "gateway.domains" (GatewayNS), owned
// here. Bounce (bounce.go) is the admin's "return to sender now".
//
// At most one duplicate per connection after a crash: a connection goes
// back to the cache for its next transaction only once the outcome of its
// last one is committed (recorder.release).
//
// What this package owns: the scheduler, the SMTP client side and the DSN
// text. What it must not do: change queue state other than through the
// Store's Raft-applied methods (Enqueue, QueueAttempt), deliver while this
// node is not the leader, or log a message body or a credential.
package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// Store is the part of *storage.Store the engine uses.
type Store interface {
	Enqueue(ctx context.Context, b *storage.Blob, e storage.QueueEntry) error
	QueueDue(now time.Time, limit int) ([]storage.QueueEntry, error)
	QueueNextDue() time.Time
	QueueEntry(id string) (storage.QueueEntry, error)
	QueueAttempt(ctx context.Context, id string, results []storage.RcptResult, next time.Time, delayWarned bool, dsn *storage.QueueEntry, remove bool) error
	PutBlob(r io.Reader) (*storage.Blob, error)
	ReplicateBlob(ctx context.Context, b *storage.Blob) error
	OpenBlob(sha string) (*os.File, error)
	ResolveRecipient(addr string) ([]uint64, error)
	Deliver(ctx context.Context, b *storage.Blob, accountIDs []uint64, internalDate time.Time) error
}

// TLS modes of a smarthost.
const (
	TLSStartTLS = "starttls" // STARTTLS required, certificate verified (default)
	TLSImplicit = "tls"      // TLS from the first byte (RFC 8314 §3.3, port 465)
	TLSNone     = "none"     // plain text; AUTH is then refused
)

// Smarthost relays mail for a domain (or for all, under the "" key)
// instead of its MX hosts.
type Smarthost struct {
	Host     string // name or IP address
	Port     int    // default 587 for starttls, 465 for tls, 25 for none
	Username string // AUTH (RFC 4954) when set; only over TLS
	Password string
	TLS      string // TLSStartTLS (default), TLSImplicit or TLSNone
	// InsecureSkipVerify accepts any certificate (a smarthost with a
	// self-signed certificate on a trusted network).
	InsecureSkipVerify bool
}

// Timeouts of one SMTP session. Zero fields take the RFC 5321 §4.5.3.2
// values.
type Timeouts struct {
	Connect   time.Duration // TCP connect per address; default 30 s
	Greeting  time.Duration // §4.5.3.2.1: 5 min
	Command   time.Duration // EHLO, STARTTLS, AUTH, MAIL (§4.5.3.2.2) and RCPT (§4.5.3.2.3): 5 min
	DataInit  time.Duration // §4.5.3.2.4: 2 min
	DataBlock time.Duration // §4.5.3.2.5: 3 min per write
	DataEnd   time.Duration // §4.5.3.2.6: 10 min for the reply to "."
}

// Config configures an Engine.
type Config struct {
	Store    Store  // required; *storage.Store
	Hostname string // EHLO name and DSN sender domain
	// Resolver is the DNS server ("127.0.0.1:5353"); "" reads
	// /etc/resolv.conf.
	Resolver string
	Port     int // remote SMTP port; default 25 (tests use a high port)
	// Smarthosts route mail by recipient domain; the "" key routes all
	// other domains.
	Smarthosts map[string]Smarthost
	// StrictTLSDomains must be reached over STARTTLS with a certificate
	// valid for the MX host name; otherwise delivery is deferred.
	StrictTLSDomains []string
	RootCAs          *x509.CertPool // nil: the system roots
	Expiry           time.Duration  // give up after; default 5 days
	DelayWarning     time.Duration  // send "delayed" DSN after; default 4 h, <0 never
	// Backoff is the wait after attempt 1, 2, ...; the last value repeats.
	// Default 1 m, 5 m, 15 m, 30 m, 1 h, 2 h, then 4 h.
	Backoff        []time.Duration
	MaxConcurrency int // SMTP connections at once; default 20
	MaxAddresses   int // addresses tried per destination and attempt; default 10
	Timeouts       Timeouts
	PollInterval   time.Duration // leadership re-check while idle; default 5 s
	// ConnReuseIdle keeps a connection open this long after a clean
	// transaction for the next message to the same destination; default
	// 2 s, <0 never.
	ConnReuseIdle time.Duration
	IsLeader      func() bool // nil: always
	Transcripts   TranscriptSink
	Logger        *slog.Logger
	Now           func() time.Time
}

// defaultBackoff is the retry schedule: 1 m, 5 m, 15 m, 30 m, 1 h, 2 h, then
// every 4 h until expiry.
func defaultBackoff() []time.Duration {
	return []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute,
		30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour}
}

// Engine delivers the outbound queue. It implements filter.Outbound.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	res    *resolver
	strict map[string]bool

	cache  connCache
	wake   chan struct{}
	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // running deliveries, waited for by Run
	runs   sync.WaitGroup // running Run calls, waited for by Close

	mu       sync.Mutex
	closed   bool
	inflight map[string]bool
	hold     map[string]time.Time // entries whose last outcome could not be recorded
}

// New makes an Engine; zero fields get their defaults.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if !validHostname(cfg.Hostname) {
		// RELIABILITY #20: the EHLO name is written on the wire; a name
		// with CR, LF or spaces would inject commands.
		if cfg.Hostname != "" {
			cfg.Logger.Error("outbound: invalid hostname, using localhost", "hostname", cfg.Hostname)
		}
		cfg.Hostname = "localhost"
	}
	if cfg.Port <= 0 {
		cfg.Port = 25
	}
	if cfg.Expiry <= 0 {
		cfg.Expiry = 5 * 24 * time.Hour
	}
	if cfg.DelayWarning == 0 {
		cfg.DelayWarning = 4 * time.Hour
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = defaultBackoff()
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = 20
	}
	if cfg.MaxAddresses <= 0 {
		cfg.MaxAddresses = 10
	}
	t := &cfg.Timeouts
	for _, d := range []struct {
		p *time.Duration
		v time.Duration
	}{{&t.Connect, 30 * time.Second}, {&t.Greeting, 5 * time.Minute}, {&t.Command, 5 * time.Minute},
		{&t.DataInit, 2 * time.Minute}, {&t.DataBlock, 3 * time.Minute}, {&t.DataEnd, 10 * time.Minute}} {
		if *d.p <= 0 {
			*d.p = d.v
		}
	}
	switch {
	case cfg.ConnReuseIdle == 0:
		cfg.ConnReuseIdle = 2 * time.Second
	case cfg.ConnReuseIdle < 0:
		cfg.ConnReuseIdle = 0
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	if cfg.IsLeader == nil {
		cfg.IsLeader = func() bool { return true }
	}
	if cfg.Transcripts == nil {
		cfg.Transcripts = discardSink{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, res: newResolver(cfg.Resolver, cfg.Logger),
		strict: map[string]bool{}, wake: make(chan struct{}, 1), inflight: map[string]bool{}, hold: map[string]time.Time{}}
	for _, d := range cfg.StrictTLSDomains {
		e.strict[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	smart := map[string]Smarthost{}
	for d, sh := range cfg.Smarthosts {
		smart[strings.ToLower(strings.TrimSuffix(d, "."))] = sh
	}
	e.cfg.Smarthosts = smart
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e
}

// Wake makes the scheduler look at the queue now (after an enqueue or an
// admin "retry now").
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Close stops the engine: running deliveries are abandoned without
// recording a result (they are tried again, at-least-once) and Run returns.
func (e *Engine) Close() error {
	e.cancel()
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.runs.Wait()
	e.cache.closeAll(true)
	return nil
}

// Run is the scheduler. It delivers due entries while this node leads,
// at most MaxConcurrency at once, and returns when ctx ends or Close is
// called, after the running deliveries have stopped.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.runs.Add(1)
	e.mu.Unlock()
	defer e.runs.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()
	sl := slots{conns: make(chan struct{}, e.cfg.MaxConcurrency), attempts: make(chan struct{}, 4*e.cfg.MaxConcurrency+16)}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wait := e.cfg.PollInterval
		if e.cfg.IsLeader() {
			wait = e.dispatch(ctx, sl)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			e.wg.Wait()
			e.cache.closeAll(false)
			return nil
		case <-e.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// slots bound the work in progress: conns is held while an attempt talks
// to remote servers (MaxConcurrency), attempts until its outcome is
// committed. Releasing the connection slot first lets the next delivery
// run while Raft commits the last one, and commits batch.
type slots struct{ conns, attempts chan struct{} }

// dispatch starts deliveries of due entries and says how long to sleep.
func (e *Engine) dispatch(ctx context.Context, sl slots) time.Duration {
	now := e.cfg.Now()
	due, err := e.cfg.Store.QueueDue(now, cap(sl.attempts)+cap(sl.conns))
	if err != nil {
		e.log.Error("outbound: read queue", "err", err)
		return e.cfg.PollInterval
	}
	blocked := false
	for _, qe := range due {
		e.mu.Lock()
		busy := e.inflight[qe.ID]
		if until, ok := e.hold[qe.ID]; ok && !busy {
			if now.Before(until) {
				e.mu.Unlock()
				blocked = true // sleep PollInterval, not until its (past) due time
				continue
			}
			delete(e.hold, qe.ID)
		}
		e.mu.Unlock()
		if busy {
			blocked = true
			continue
		}
		select {
		case sl.attempts <- struct{}{}:
		default:
			return e.cfg.PollInterval // a finishing attempt wakes us
		}
		select {
		case sl.conns <- struct{}{}:
		default:
			<-sl.attempts
			return e.cfg.PollInterval
		}
		e.mu.Lock()
		e.inflight[qe.ID] = true
		e.mu.Unlock()
		e.wg.Add(1)
		go func(qe storage.QueueEntry) {
			var once sync.Once
			connDone := func() {
				once.Do(func() {
					<-sl.conns
					e.Wake()
				})
			}
			defer func() {
				connDone()
				e.mu.Lock()
				delete(e.inflight, qe.ID)
				e.mu.Unlock()
				<-sl.attempts
				e.wg.Done()
				e.Wake()
			}()
			// Read the entry again now that it is ours: the list may
			// predate an attempt that finished meanwhile, and trying its
			// stale copy would send the message twice.
			fresh, err := e.cfg.Store.QueueEntry(qe.ID)
			if err != nil || fresh.NextAttempt.After(e.cfg.Now()) {
				return
			}
			e.attempt(ctx, fresh, connDone)
		}(qe)
	}
	if blocked {
		return e.cfg.PollInterval
	}
	next := e.cfg.Store.QueueNextDue()
	if next.IsZero() {
		return e.cfg.PollInterval
	}
	return min(max(next.Sub(e.cfg.Now()), 0), e.cfg.PollInterval)
}

// validHostname accepts an LDH name (RFC 1123 §2.1) usable after EHLO.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, c := range []byte(h) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (e *Engine) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: e.cfg.RootCAs, MinVersion: tls.VersionTLS12}
}

// Package firewall is the mail firewall (SPEC F4): per-IP and per-subnet
// concurrent connection limits, per-IP message rate limits, AUTH
// brute-force detection (failed logins per client IP and per account
// within a window) and dictionary-attack detection (unknown recipients per
// client IP within a window). The fast-changing counters stay in memory on
// the node that sees the traffic; what they decide — a block — is
// replicated, so a failover keeps it.
//
// KV namespace "firewall.blocks" (owned here): key "ip:PREFIX" (an IP is
// stored as a /32 or /128 prefix, e.g. "ip:192.0.2.7/32") or
// "acct:ADDRESS" (lower-cased), value the JSON Block {reason, created,
// expires, hits}. Expiry is enforced on read; the leader prunes expired
// blocks (Prune). A zero Expires is a permanent (admin) block.
//
// The allow-list (Config.Allow) names networks never limited or blocked;
// it is empty by default, so loopback clients are limited like any other.
package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tandemmail/tandem/storage"
)

// Namespace is the KV namespace of the replicated blocks.
const Namespace = "firewall.blocks"

// Defaults of the limits (Config fields at 0).
const (
	DefaultMaxConnIP  = 100
	DefaultMaxConnNet = 300
	// The message rate is off unless the admin sets one: a big sender's
	// outbound host legitimately sends hundreds a minute.
	DefaultAuthFailures = 10
	// An account is blocked after AccountFactor times the per-IP limit of
	// failures, counted over all clients: a guesser from one address is
	// stopped by its IP block long before, so the owner keeps logging in;
	// a distributed guesser is stopped by the account block.
	AccountFactor    = 5
	DefaultBadRcpts  = 20
	DefaultWindow    = 10 * time.Minute
	DefaultBlockTime = time.Hour
)

// KV is the part of *storage.Store the firewall uses.
type KV interface {
	KVApply(ctx context.Context, ops ...storage.KVOp) error
	KVList(ns, prefix string, fn func(key string, value []byte, version uint64) error) error
	KVRevision(ns string) uint64
}

// Config sets the limits. A zero limit takes its default; a negative one
// turns the limit off.
type Config struct {
	Allow      []netip.Prefix
	MaxConnIP  int
	MaxConnNet int // per /24 (IPv4) or /64 (IPv6)
	// MsgRate is messages per minute per IP, the burst the same number;
	// 0 or negative: no limit (the default).
	MsgRate      float64
	AuthFailures int // per IP and per account within Window
	BadRcpts     int // unknown recipients per IP within Window
	Window       time.Duration
	BlockTime    time.Duration
	Now          func() time.Time
	Logger       *slog.Logger
}

// Block is one replicated block.
type Block struct {
	Key     string    `json:"key"` // "ip:PREFIX" or "acct:ADDRESS"
	Reason  string    `json:"reason"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"` // zero: until removed
	Hits    int       `json:"hits"`             // events that caused it
}

func (b Block) expired(now time.Time) bool { return !b.Expires.IsZero() && !now.Before(b.Expires) }

// Firewall holds the counters of one node and a cache of the replicated
// blocks. Safe for concurrent use.
type Firewall struct {
	cfg Config
	kv  KV
	log *slog.Logger

	mu       sync.Mutex
	conns    map[netip.Addr]int
	netConns map[netip.Prefix]int
	buckets  map[netip.Addr]*bucket
	authIP   map[netip.Addr]*window
	authAcct map[string]*window
	rcpts    map[netip.Addr]*window

	blocks  map[string]Block // cache of the KV namespace
	ipNets  []netip.Prefix   // blocked prefixes, from blocks
	blockRv uint64           // KVRevision the cache reflects
	loaded  bool
}

// New makes a Firewall over the replicated store kv.
func New(kv KV, cfg Config) *Firewall {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.MaxConnIP, DefaultMaxConnIP)
	def(&cfg.MaxConnNet, DefaultMaxConnNet)
	def(&cfg.AuthFailures, DefaultAuthFailures)
	def(&cfg.BadRcpts, DefaultBadRcpts)
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.BlockTime <= 0 {
		cfg.BlockTime = DefaultBlockTime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Firewall{cfg: cfg, kv: kv, log: cfg.Logger,
		conns: map[netip.Addr]int{}, netConns: map[netip.Prefix]int{}, buckets: map[netip.Addr]*bucket{},
		authIP: map[netip.Addr]*window{}, authAcct: map[string]*window{}, rcpts: map[netip.Addr]*window{},
		blocks: map[string]Block{}}
}

// ParseAllow reads allow-list entries: CIDRs or single addresses.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("firewall allow-list: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePrefix reads an IP ("192.0.2.7" → /32) or a CIDR, masked.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR network", s)
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())).Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR network", s)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// AddrOf turns a net.IP or a net.Addr's host into a netip.Addr (invalid
// when it has none, e.g. a unix socket peer).
func AddrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// RemoteAddr extracts the client address of a connection's remote address.
func RemoteAddr(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.TCPAddr:
		return AddrOf(v.IP)
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// subnet is the client's network for the per-subnet limit: /24 or /64.
func subnet(a netip.Addr) netip.Prefix {
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// Allowed reports whether a is on the allow-list.
func (f *Firewall) Allowed(a netip.Addr) bool {
	for _, p := range f.cfg.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ErrBlocked is wrapped by the errors of refused clients.
var ErrBlocked = errors.New("blocked by the mail firewall")

// Acquire admits one connection from a: it fails when a is blocked or
// over its connection limits. release must be called once the connection
// ends.
func (f *Firewall) Acquire(a netip.Addr) (release func(), err error) {
	if !a.IsValid() || f.Allowed(a) {
		return func() {}, nil
	}
	if b, ok := f.IPBlock(a); ok {
		return nil, fmt.Errorf("%w: %s", ErrBlocked, b.Reason)
	}
	n := subnet(a)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg.MaxConnIP > 0 && f.conns[a] >= f.cfg.MaxConnIP {
		return nil, fmt.Errorf("too many connections from %s (limit %d)", a, f.cfg.MaxConnIP)
	}
	if f.cfg.MaxConnNet > 0 && f.netConns[n] >= f.cfg.MaxConnNet {
		return nil, fmt.Errorf("too many connections from %s (limit %d)", n, f.cfg.MaxConnNet)
	}
	f.conns[a]++
	f.netConns[n]++
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.conns[a]--; f.conns[a] <= 0 {
				delete(f.conns, a)
			}
			if f.netConns[n]--; f.netConns[n] <= 0 {
				delete(f.netConns, n)
			}
		})
	}, nil
}

// AllowMessage takes one token of a's message-rate bucket; false: over
// the rate, the client should retry later.
func (f *Firewall) AllowMessage(a netip.Addr) bool {
	if !a.IsValid() || f.cfg.MsgRate <= 0 || f.Allowed(a) {
		return true
	}
	now := f.cfg.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.buckets[a]
	if b == nil {
		if len(f.buckets) > maxTracked {
			f.sweepLocked(now)
		}
		b = &bucket{tokens: f.cfg.MsgRate, last: now}
		f.buckets[a] = b
	}
	return b.take(now, f.cfg.MsgRate)
}

// maxTracked bounds each in-memory table: past it, idle entries are
// swept (a spoofing flood must not grow memory without bound).
const maxTracked = 50000

// bucket is a token bucket holding up to rate tokens, refilled at rate
// per minute.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate float64) bool {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(rate, b.tokens+el.Minutes()*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// window counts events within the detection window.
type window struct{ times []time.Time }

// add records one event at now and returns how many are within w.
func (x *window) add(now time.Time, w time.Duration, limit int) int {
	x.prune(now, w)
	x.times = append(x.times, now)
	if len(x.times) > limit { // only the newest limit matter
		x.times = x.times[len(x.times)-limit:]
	}
	return len(x.times)
}

func (x *window) prune(now time.Time, w time.Duration) {
	i := 0
	for i < len(x.times) && now.Sub(x.times[i]) >= w {
		i++
	}
	x.times = x.times[i:]
}

func (f *Firewall) sweepLocked(now time.Time) {
	for a, b := range f.buckets {
		if now.Sub(b.last).Minutes()*f.cfg.MsgRate >= f.cfg.MsgRate {
			delete(f.buckets, a) // full again: same as absent
		}
	}
	for a, w := range f.authIP {
		if w.prune(now, f.cfg.Window); len(w.times) == 0 {
			delete(f.authIP, a)
		}
	}
	for a, w := range f.authAcct {
		if w.prune(now, f.cfg.Window); len(w.times) == 0 {
			delete(f.authAcct, a)
		}
	}
	for a, w := range f.rcpts {
		if w.prune(now, f.cfg.Window); len(w.times) == 0 {
			delete(f.rcpts, a)
		}
	}
}

func count[K comparable](f *Firewall, m map[K]*window, k K, now time.Time, limit int) int {
	w := m[k]
	if w == nil {
		if len(m) > maxTracked {
			f.sweepLocked(now)
		}
		w = &window{}
		m[k] = w
	}
	n := w.add(now, f.cfg.Window, limit)
	if n >= limit {
		delete(m, k) // the block takes over; start afresh after it
	}
	return n
}

// AuthFailed records a failed login from a for account (as typed): past
// the limit within the window, the IP or the account is blocked for
// BlockTime. An account block stops guessing from many IPs; it also
// refuses the owner until it expires or the admin removes it.
func (f *Firewall) AuthFailed(ctx context.Context, a netip.Addr, account string) {
	if f.cfg.AuthFailures < 0 {
		return
	}
	now := f.cfg.Now()
	acct := normalizeAccount(account)
	var ipHits, acctHits int
	f.mu.Lock()
	if a.IsValid() && !f.Allowed(a) {
		ipHits = count(f, f.authIP, a, now, f.cfg.AuthFailures)
	}
	if acct != "" {
		acctHits = count(f, f.authAcct, acct, now, f.cfg.AuthFailures*AccountFactor)
	}
	f.mu.Unlock()
	if ipHits >= f.cfg.AuthFailures {
		p, _ := a.Prefix(a.BitLen())
		f.autoBlock(ctx, IPKey(p), fmt.Sprintf("%d failed logins within %v", ipHits, f.cfg.Window), ipHits)
	}
	if acctHits >= f.cfg.AuthFailures*AccountFactor {
		f.autoBlock(ctx, AccountKey(acct), fmt.Sprintf("%d failed logins within %v", acctHits, f.cfg.Window), acctHits)
	}
}

// UnknownRecipient records a recipient refused as unknown (550 5.1.1) for
// client a: past the limit within the window, a is blocked (a dictionary
// attack harvests addresses by trying names).
func (f *Firewall) UnknownRecipient(ctx context.Context, a netip.Addr) {
	if f.cfg.BadRcpts < 0 || !a.IsValid() || f.Allowed(a) {
		return
	}
	now := f.cfg.Now()
	f.mu.Lock()
	n := count(f, f.rcpts, a, now, f.cfg.BadRcpts)
	f.mu.Unlock()
	if n >= f.cfg.BadRcpts {
		p, _ := a.Prefix(a.BitLen())
		f.autoBlock(ctx, IPKey(p), fmt.Sprintf("dictionary attack: %d unknown recipients within %v", n, f.cfg.Window), n)
	}
}

func (f *Firewall) autoBlock(ctx context.Context, key, reason string, hits int) {
	if _, err := f.Block(ctx, key, reason, f.cfg.BlockTime, hits); err != nil {
		f.log.Error("firewall block not stored", "key", key, "reason", reason, "err", err)
		return
	}
	f.log.Warn("firewall block", "key", key, "reason", reason, "for", f.cfg.BlockTime)
}

// IPKey is the KV key of a blocked network.
func IPKey(p netip.Prefix) string { return "ip:" + p.Masked().String() }

// AccountKey is the KV key of a blocked account.
func AccountKey(addr string) string { return "acct:" + normalizeAccount(addr) }

func normalizeAccount(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) > 320 { // RFC 5321 §4.5.3.1: 64 + 1 + 255
		s = s[:320]
	}
	return s
}

// ParseTarget reads an admin's block target: an IP, a CIDR or an account
// address, and returns its KV key.
func ParseTarget(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", errors.New("empty target: want an IP address, a CIDR network or an account address")
	case strings.HasPrefix(s, "ip:"):
		return ParseTarget(s[3:])
	case strings.HasPrefix(s, "acct:"):
		s = s[5:]
		fallthrough
	case strings.Contains(s, "@"):
		if i := strings.LastIndexByte(s, '@'); i <= 0 || i == len(s)-1 || strings.ContainsAny(s, " \t\r\n") || !utf8.ValidString(s) || len(s) > 320 {
			return "", fmt.Errorf("%q is not an account address", s)
		}
		return AccountKey(s), nil
	}
	p, err := ParsePrefix(s)
	if err != nil {
		return "", err
	}
	return IPKey(p), nil
}

// Block stores a block for key (IPKey or AccountKey) through Raft; d <= 0
// blocks until removed.
func (f *Firewall) Block(ctx context.Context, key, reason string, d time.Duration, hits int) (Block, error) {
	now := f.cfg.Now().UTC()
	b := Block{Key: key, Reason: reason, Created: now, Hits: hits}
	if d > 0 {
		b.Expires = now.Add(d)
	}
	v, err := json.Marshal(b)
	if err != nil {
		return Block{}, err
	}
	if err := f.kv.KVApply(ctx, storage.KVOp{Op: storage.KVPut, NS: Namespace, Key: key, Value: v}); err != nil {
		return Block{}, fmt.Errorf("store firewall block %s: %w", key, err)
	}
	f.mu.Lock()
	f.blocks[key] = b
	f.rebuildLocked()
	f.mu.Unlock()
	return b, nil
}

// Unblock removes the block of key; false when there was none.
func (f *Firewall) Unblock(ctx context.Context, key string) (bool, error) {
	f.refresh()
	f.mu.Lock()
	_, ok := f.blocks[key]
	f.mu.Unlock()
	if err := f.kv.KVApply(ctx, storage.KVOp{Op: storage.KVDelete, NS: Namespace, Key: key}); err != nil {
		return false, fmt.Errorf("remove firewall block %s: %w", key, err)
	}
	f.mu.Lock()
	delete(f.blocks, key)
	f.rebuildLocked()
	// A removed block starts the counters afresh.
	if p, err := netip.ParsePrefix(strings.TrimPrefix(key, "ip:")); err == nil && p.IsSingleIP() {
		delete(f.authIP, p.Addr())
		delete(f.rcpts, p.Addr())
	}
	delete(f.authAcct, strings.TrimPrefix(key, "acct:"))
	f.mu.Unlock()
	return ok, nil
}

// refresh reloads the cache when the namespace changed (another node's
// block, an expiry prune).
func (f *Firewall) refresh() {
	rev := f.kv.KVRevision(Namespace)
	f.mu.Lock()
	fresh := f.loaded && rev == f.blockRv
	f.mu.Unlock()
	if fresh {
		return
	}
	m := map[string]Block{}
	err := f.kv.KVList(Namespace, "", func(key string, value []byte, _ uint64) error {
		var b Block
		if err := json.Unmarshal(value, &b); err != nil {
			f.log.Warn("bad firewall block record", "key", key, "err", err)
			return nil
		}
		b.Key = key
		m[key] = b
		return nil
	})
	if err != nil {
		f.log.Error("read firewall blocks", "err", err)
		return
	}
	f.mu.Lock()
	f.blocks, f.blockRv, f.loaded = m, rev, true
	f.rebuildLocked()
	f.mu.Unlock()
}

func (f *Firewall) rebuildLocked() {
	f.ipNets = f.ipNets[:0]
	for k := range f.blocks {
		if p, err := netip.ParsePrefix(strings.TrimPrefix(k, "ip:")); err == nil && strings.HasPrefix(k, "ip:") {
			f.ipNets = append(f.ipNets, p)
		}
	}
}

// IPBlock returns the live block covering a, if any.
func (f *Firewall) IPBlock(a netip.Addr) (Block, bool) {
	if !a.IsValid() || f.Allowed(a) {
		return Block{}, false
	}
	f.refresh()
	now := f.cfg.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.ipNets {
		if p.Contains(a) {
			if b := f.blocks[IPKey(p)]; !b.expired(now) {
				return b, true
			}
		}
	}
	return Block{}, false
}

// AccountBlock returns the live block of an account, if any.
func (f *Firewall) AccountBlock(account string) (Block, bool) {
	acct := normalizeAccount(account)
	if acct == "" {
		return Block{}, false
	}
	f.refresh()
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blocks[AccountKey(acct)]
	if !ok || b.expired(f.cfg.Now()) {
		return Block{}, false
	}
	return b, true
}

// AllowAuth says whether a login attempt from a for account may proceed:
// an error wrapping ErrBlocked when either is blocked.
func (f *Firewall) AllowAuth(a netip.Addr, account string) error {
	if b, ok := f.IPBlock(a); ok {
		return fmt.Errorf("%w: client %s: %s", ErrBlocked, a, b.Reason)
	}
	if b, ok := f.AccountBlock(account); ok {
		return fmt.Errorf("%w: account %s: %s", ErrBlocked, normalizeAccount(account), b.Reason)
	}
	return nil
}

// List returns the live blocks, newest first.
func (f *Firewall) List() []Block {
	f.refresh()
	now := f.cfg.Now()
	f.mu.Lock()
	out := make([]Block, 0, len(f.blocks))
	for _, b := range f.blocks {
		if !b.expired(now) {
			out = append(out, b)
		}
	}
	f.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Prune deletes expired blocks from the replicated store (run on the
// leader). Each delete is conditional on the version read, so a block
// renewed meanwhile survives.
func (f *Firewall) Prune(ctx context.Context) (int, error) {
	now := f.cfg.Now()
	var ops []storage.KVOp
	err := f.kv.KVList(Namespace, "", func(key string, value []byte, version uint64) error {
		var b Block
		if json.Unmarshal(value, &b) == nil && !b.expired(now) {
			return nil
		}
		ops = append(ops, storage.KVOp{Op: storage.KVDelete, NS: Namespace, Key: key, IfVersion: storage.Version(version)})
		return nil
	})
	if err != nil || len(ops) == 0 {
		return 0, err
	}
	if len(ops) > 1000 {
		ops = ops[:1000] // the rest next round; batches stay small
	}
	if err := f.kv.KVApply(ctx, ops...); err != nil {
		return 0, fmt.Errorf("prune firewall blocks: %w", err)
	}
	f.mu.Lock()
	f.sweepLocked(now)
	f.mu.Unlock()
	return len(ops), nil
}

package firewall

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
)

// memKV is an in-memory KV with versions, like storage's.
type memKV struct {
	mu   sync.Mutex
	data map[string][]byte
	ver  map[string]uint64
	rev  uint64
}

func newMemKV() *memKV { return &memKV{data: map[string][]byte{}, ver: map[string]uint64{}} }

func (m *memKV) KVApply(_ context.Context, ops ...storage.KVOp) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range ops {
		if op.IfVersion != nil && m.ver[op.Key] != *op.IfVersion {
			return storage.ErrKVConflict
		}
	}
	m.rev++
	for _, op := range ops {
		switch op.Op {
		case storage.KVPut:
			m.data[op.Key] = append([]byte(nil), op.Value...)
			m.ver[op.Key] = m.rev
		case storage.KVDelete:
			delete(m.data, op.Key)
			delete(m.ver, op.Key)
		}
	}
	return nil
}

func (m *memKV) KVList(ns, prefix string, fn func(string, []byte, uint64) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]string, 0, len(m.data))
	for k := range m.data {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(k, m.data[k], m.ver[k]); err != nil {
			return err
		}
	}
	return nil
}

func (m *memKV) KVRevision(string) uint64 { m.mu.Lock(); defer m.mu.Unlock(); return m.rev }

type clock struct{ t time.Time }

func (c *clock) now() time.Time                   { return c.t }
func (c *clock) add(d time.Duration)              { c.t = c.t.Add(d) }
func newClock() *clock                            { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func ip(s string) netip.Addr                      { return netip.MustParseAddr(s) }
func newFW(kv KV, c *clock, cfg Config) *Firewall { cfg.Now = c.now; return New(kv, cfg) }

func TestConnectionLimits(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		clients []string // connect in order
		refused []int    // indexes refused
	}{
		{"per IP", Config{MaxConnIP: 2, MaxConnNet: 10}, []string{"192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2"}, []int{2}},
		{"per /24", Config{MaxConnIP: 5, MaxConnNet: 2}, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.1"}, []int{2}},
		{"per /64", Config{MaxConnIP: 5, MaxConnNet: 2}, []string{"2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8:1::1"}, []int{2}},
		{"off", Config{MaxConnIP: -1, MaxConnNet: -1}, []string{"192.0.2.1", "192.0.2.1", "192.0.2.1"}, nil},
		{"allow-listed", Config{MaxConnIP: 1, Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, []string{"192.0.2.1", "192.0.2.1"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFW(newMemKV(), newClock(), tc.cfg)
			var releases []func()
			for i, c := range tc.clients {
				rel, err := f.Acquire(ip(c))
				refused := err != nil
				want := false
				for _, r := range tc.refused {
					want = want || r == i
				}
				if refused != want {
					t.Fatalf("connection %d from %s: err %v, want refused=%v", i, c, err, want)
				}
				if rel != nil {
					releases = append(releases, rel)
				}
			}
			for _, r := range releases {
				r()
				r() // twice is harmless
			}
			if len(f.conns) != 0 || len(f.netConns) != 0 {
				t.Fatalf("counters not released: %v %v", f.conns, f.netConns)
			}
		})
	}
}

func TestMessageRate(t *testing.T) {
	c := newClock()
	f := newFW(newMemKV(), c, Config{MsgRate: 6}) // 6 per minute, burst 6
	a := ip("192.0.2.9")
	for i := 0; i < 6; i++ {
		if !f.AllowMessage(a) {
			t.Fatalf("message %d refused within the burst", i)
		}
	}
	if f.AllowMessage(a) {
		t.Fatal("7th message in the same instant allowed")
	}
	if !f.AllowMessage(ip("192.0.2.10")) {
		t.Fatal("another client limited")
	}
	c.add(10 * time.Second) // one token back
	if !f.AllowMessage(a) || f.AllowMessage(a) {
		t.Fatal("refill: want exactly one more message after 10 s")
	}
	st := Stage{F: f}
	if v := st.CheckConn(context.Background(), &filter.Envelope{ClientIP: net.ParseIP("192.0.2.9")}); v.Action != filter.ActionTempFail {
		t.Fatalf("stage over the rate: %v", v.Action)
	}
}

func TestBruteForceBlocks(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	kv := newMemKV()
	f := newFW(kv, c, Config{AuthFailures: 3, Window: time.Minute, BlockTime: time.Hour})
	a := ip("203.0.113.5")
	// Two failures, then the window passes: no block.
	f.AuthFailed(ctx, a, "x@example.org")
	f.AuthFailed(ctx, a, "y@example.org")
	c.add(61 * time.Second)
	f.AuthFailed(ctx, a, "z@example.org")
	if err := f.AllowAuth(a, "alice@example.org"); err != nil {
		t.Fatalf("blocked after failures spread over more than the window: %v", err)
	}
	f.AuthFailed(ctx, a, "w@example.org")
	f.AuthFailed(ctx, a, "v@example.org")
	if err := f.AllowAuth(a, "alice@example.org"); err == nil {
		t.Fatal("3 failures within the window: not blocked")
	}
	// Replicated: a second node (same KV) sees it.
	g := newFW(kv, c, Config{})
	if _, ok := g.IPBlock(a); !ok {
		t.Fatal("block not visible through the KV store")
	}
	if _, err := g.Acquire(a); err == nil {
		t.Fatal("blocked client admitted by the listener check")
	}
	if v := (Stage{F: g}).CheckConn(ctx, &filter.Envelope{ClientIP: a.AsSlice()}); v.Action != filter.ActionReject {
		t.Fatalf("stage for a blocked client: %v", v.Action)
	}
	// Per account: failures from many IPs.
	for i := 1; i <= 3*AccountFactor; i++ {
		if _, ok := f.AccountBlock("bob@example.org"); ok {
			t.Fatalf("account blocked after %d failures", i-1)
		}
		f.AuthFailed(ctx, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), "Bob@Example.org")
	}
	if _, ok := f.AccountBlock("bob@example.org"); !ok {
		t.Fatal("account not blocked after failures from several IPs")
	}
	if len(f.List()) != 2 {
		t.Fatalf("list: %+v", f.List())
	}
	// Expiry on read, then the prune removes the records.
	c.add(time.Hour + time.Second)
	if err := f.AllowAuth(a, "bob@example.org"); err != nil {
		t.Fatalf("expired blocks still apply: %v", err)
	}
	if len(f.List()) != 0 {
		t.Fatalf("expired blocks listed: %+v", f.List())
	}
	if n, err := f.Prune(ctx); err != nil || n != 2 || len(kv.data) != 0 {
		t.Fatalf("prune: %d %v, left %v", n, err, kv.data)
	}
}

func TestDictionaryAttack(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	f := newFW(newMemKV(), c, Config{BadRcpts: 5, Window: time.Minute})
	st := Stage{F: f}
	env := &filter.Envelope{ClientIP: net.ParseIP("192.0.2.77")}
	unknown := &filter.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Msg: "No such user here"}
	relay := &filter.Reject{Code: 554, Enhanced: [3]int{5, 7, 1}, Msg: "Relay access denied"}
	for i := 0; i < 10; i++ {
		st.ObserveRcptReject(ctx, env, "x", relay) // other refusals do not count
	}
	for i := 0; i < 4; i++ {
		st.ObserveRcptReject(ctx, env, "x", unknown)
	}
	if _, ok := f.IPBlock(ip("192.0.2.77")); ok {
		t.Fatal("blocked below the limit")
	}
	st.ObserveRcptReject(ctx, env, "x", unknown)
	b, ok := f.IPBlock(ip("192.0.2.77"))
	if !ok || !strings.Contains(b.Reason, "dictionary attack") || b.Hits != 5 {
		t.Fatalf("dictionary attack block: %+v %v", b, ok)
	}
	if ok, err := f.Unblock(ctx, b.Key); !ok || err != nil {
		t.Fatalf("unblock: %v %v", ok, err)
	}
	if _, ok := f.IPBlock(ip("192.0.2.77")); ok {
		t.Fatal("still blocked after unblock")
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.7", "ip:192.0.2.7/32"},
		{"192.0.2.7/24", "ip:192.0.2.0/24"},
		{"::ffff:192.0.2.7", "ip:192.0.2.7/32"},
		{"2001:db8::1", "ip:2001:db8::1/128"},
		{"2001:db8::1/64", "ip:2001:db8::/64"},
		{"ip:192.0.2.7", "ip:192.0.2.7/32"},
		{"Alice@Example.org", "acct:alice@example.org"},
		{"acct:bob@example.org", "acct:bob@example.org"},
		{"", ""},
		{"not-an-ip", ""},
		{"192.0.2.300", ""},
		{"@example.org", ""},
		{"alice@", ""},
		{"10.0.0.0/33", ""},
	}
	for _, tc := range tests {
		got, err := ParseTarget(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseTarget(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseTarget(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "2001:db8::/64", "a@b.c", "ip:1.2.3.4/8", "acct:x@y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseTarget(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(k, "ip:") && !strings.HasPrefix(k, "acct:") {
			t.Fatalf("ParseTarget(%q) = %q", s, k)
		}
		if k2, err := ParseTarget(k); err != nil || k2 != k {
			t.Fatalf("ParseTarget not idempotent: %q → %q → %q, %v", s, k, k2, err)
		}
	})
}

// Many goroutines connecting, failing logins and reading blocks at once:
// the counters stay consistent (run with -race).
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	f := newFW(newMemKV(), newClock(), Config{MaxConnIP: 1000, AuthFailures: 50})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := netip.AddrFrom4([4]byte{192, 0, 2, 1})
			for i := 0; i < 200; i++ {
				rel, err := f.Acquire(a)
				if err == nil {
					rel()
				}
				f.AuthFailed(ctx, a, "x@example.org")
				f.AllowMessage(a)
				f.List()
			}
		}()
	}
	wg.Wait()
	if len(f.conns) != 0 {
		t.Fatalf("connection counters leaked: %v", f.conns)
	}
	if _, ok := f.IPBlock(ip("192.0.2.1")); !ok {
		t.Fatal("1600 failures did not block")
	}
}

// BenchmarkAdmit is the per-connection and per-message cost: listener
// admission, the stage's block lookup and the rate bucket.
func BenchmarkAdmit(b *testing.B) {
	f := newFW(newMemKV(), newClock(), Config{MsgRate: 1e9})
	f.Block(context.Background(), "ip:198.51.100.0/24", "test", time.Hour, 0)
	st := Stage{F: f}
	env := &filter.Envelope{ClientIP: net.ParseIP("192.0.2.1")}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rel, err := f.Acquire(ip("192.0.2.1"))
			if err != nil {
				b.Fatal(err)
			}
			st.CheckConn(context.Background(), env)
			rel()
		}
	})
}

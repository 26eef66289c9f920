package greylist

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func putSettings(t *testing.T, st *storage.Store, s Settings) {
	t.Helper()
	raw, _ := json.Marshal(s)
	if err := st.KVPutValue(context.Background(), ConfigNamespace, ConfigKey, raw); err != nil {
		t.Fatal(err)
	}
}

func newStage(t *testing.T, known func(context.Context, *filter.Envelope, string) bool) (*Stage, *storage.Store, *clock) {
	t.Helper()
	st := storetest.New(t)
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	s := New(Config{KV: st, Known: known, Now: c.now, FlushInterval: time.Hour})
	t.Cleanup(func() { s.Close() })
	return s, st, c
}

func check(s *Stage, ip, from, rcpt string) filter.Verdict {
	return s.CheckEnvelope(context.Background(), &filter.Envelope{ClientIP: net.ParseIP(ip), From: from}, rcpt)
}

func TestTriplet(t *testing.T) {
	s, st, c := newStage(t, nil)
	putSettings(t, st, Settings{Enabled: true, DelaySeconds: 60, ExpirySeconds: 3600, AutoWhitelistPasses: -1})
	steps := []struct {
		name       string
		advance    time.Duration
		ip, from   string
		want       filter.Action
		wantReason string
	}{
		{"first attempt", 0, "192.0.2.10", "a@sender.test", filter.ActionTempFail, "Greylisted, try again in 60 seconds"},
		{"retry too early", 20 * time.Second, "192.0.2.10", "a@sender.test", filter.ActionTempFail, "try again in 40 seconds"},
		{"other sender is new", 0, "192.0.2.10", "b@sender.test", filter.ActionTempFail, "in 60 seconds"},
		{"retry from the same /24 after the delay", 45 * time.Second, "192.0.2.77", "A@Sender.test", filter.ActionAccept, "passed after 1m5s"},
		{"passed triplet passes at once", time.Hour, "192.0.2.10", "a@sender.test", filter.ActionAccept, "passed before"},
		{"other network is new", 0, "198.51.100.1", "a@sender.test", filter.ActionTempFail, ""},
		{"retry after the expiry starts again", 2 * time.Hour, "198.51.100.1", "a@sender.test", filter.ActionTempFail, "in 60 seconds"},
		{"IPv6 /64", 0, "2001:db8:1:2::1", "a@sender.test", filter.ActionTempFail, ""},
		{"IPv6 same /64 retries", 61 * time.Second, "2001:db8:1:2::99", "a@sender.test", filter.ActionAccept, ""},
		{"pass expires after 36 days", 37 * 24 * time.Hour, "192.0.2.10", "a@sender.test", filter.ActionTempFail, ""},
	}
	for i, step := range steps {
		c.add(step.advance)
		v := check(s, step.ip, step.from, "user@example.test")
		if v.Action != step.want || !strings.Contains(v.Reason, step.wantReason) {
			t.Fatalf("step %d %s: %v %q, want %v %q", i, step.name, v.Action, v.Reason, step.want, step.wantReason)
		}
		if i == 3 {
			// Written through Raft on flush, and read back from the store.
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			n := len(s.pending)
			s.mu.Unlock()
			if n != 0 {
				t.Fatalf("%d writes still pending after flush", n)
			}
			if _, _, ok, _ := st.KVGet(Namespace, tripletKey("192.0.2.0/24", "a@sender.test", "user@example.test")); !ok {
				t.Fatal("passed triplet not stored")
			}
		}
	}
}

func TestWriteVolume(t *testing.T) {
	s, st, c := newStage(t, nil)
	putSettings(t, st, Settings{Enabled: true, DelaySeconds: 60})
	check(s, "192.0.2.1", "a@x.test", "u@example.test")
	c.add(2 * time.Minute)
	check(s, "192.0.2.1", "a@x.test", "u@example.test")
	s.Flush(context.Background())
	rev := st.KVRevision(Namespace)
	// A thousand messages of a known triplet: reads only.
	for range 1000 {
		c.add(time.Second)
		if v := check(s, "192.0.2.1", "a@x.test", "u@example.test"); v.Action != filter.ActionAccept {
			t.Fatalf("known triplet: %+v", v)
		}
	}
	s.Flush(context.Background())
	if got := st.KVRevision(Namespace); got != rev {
		t.Errorf("known triplet wrote to the store (revision %d → %d)", rev, got)
	}
}

func TestKnownSenders(t *testing.T) {
	known := func(_ context.Context, env *filter.Envelope, _ string) bool { return env.From == "friend@x.test" }
	s, st, c := newStage(t, known)
	putSettings(t, st, Settings{Domains: []string{"Example.TEST"}, DelaySeconds: 60, AutoWhitelistPasses: 2})
	if v := check(s, "192.0.2.1", "friend@x.test", "u@example.test"); v.Action != filter.ActionAccept || v.Reason != "known sender" {
		t.Errorf("allow-listed sender: %+v", v)
	}
	if v := s.CheckEnvelope(context.Background(), &filter.Envelope{ClientIP: net.ParseIP("192.0.2.1"), AuthAccountID: 3}, "u@example.test"); v.Action != filter.ActionAccept {
		t.Errorf("authenticated: %+v", v)
	}
	if v := check(s, "192.0.2.1", "x@x.test", "u@other.test"); v.Action != filter.ActionAccept || v.Reason != "" {
		t.Errorf("domain without greylisting: %+v", v)
	}
	// Two passes whitelist the network.
	for _, from := range []string{"a@x.test", "b@x.test"} {
		check(s, "192.0.2.1", from, "u@example.test")
		c.add(61 * time.Second)
		if v := check(s, "192.0.2.1", from, "u@example.test"); v.Action != filter.ActionAccept {
			t.Fatalf("retry: %+v", v)
		}
	}
	if v := check(s, "192.0.2.200", "new@y.test", "u@example.test"); v.Action != filter.ActionAccept || !strings.Contains(v.Reason, "passed 2 times") {
		t.Errorf("auto-whitelisted network: %+v", v)
	}
	// Survives a restart of the stage (state is in the store).
	s.Close()
	s2 := New(Config{KV: st, Now: c.now})
	defer s2.Close()
	if v := check(s2, "192.0.2.9", "new2@y.test", "u@example.test"); v.Action != filter.ActionAccept {
		t.Errorf("after restart: %+v", v)
	}
}

func TestSweep(t *testing.T) {
	s, st, c := newStage(t, nil)
	putSettings(t, st, Settings{Enabled: true, DelaySeconds: 60, ExpirySeconds: 600})
	check(s, "192.0.2.1", "a@x.test", "u@example.test") // never retried
	check(s, "192.0.2.2", "b@x.test", "u@example.test")
	c.add(2 * time.Minute)
	check(s, "192.0.2.2", "b@x.test", "u@example.test") // passed
	s.Flush(context.Background())
	c.add(time.Hour)
	if err := s.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts, _ := ListTriplets(st, 100)
	if len(ts) != 1 || ts[0].From != "b@x.test" || ts[0].Passed == 0 {
		t.Errorf("after sweep: %+v, want only the passed triplet", ts)
	}
}

func TestSettingsNormalize(t *testing.T) {
	for _, c := range []struct {
		s       Settings
		wantErr string
	}{
		{Settings{Enabled: true}, ""},
		{Settings{DelaySeconds: 600, ExpirySeconds: 300}, "longer than the delay"},
		{Settings{DelaySeconds: -1}, "between 0"},
		{Settings{Domains: []string{"not a domain"}}, "not a domain"},
		{Settings{Domains: []string{"a@b.c"}}, "not a domain"},
	} {
		err := c.s.Normalize()
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("Normalize(%+v) = %v, want %q", c.s, err, c.wantErr)
		}
	}
}

func FuzzParseSettings(f *testing.F) {
	f.Add([]byte(`{"enabled":true,"domains":["example.com"],"delay_seconds":120}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := ParseSettings(raw)
		if err == nil && s.Expiry() <= s.Delay() {
			t.Fatalf("accepted %+v", s)
		}
	})
}

// BenchmarkKnownTriplet: the per-recipient cost of greylisting for a
// triplet that passed before (reads only).
func BenchmarkKnownTriplet(b *testing.B) {
	st := storetest.New(b)
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	s := New(Config{KV: st, Now: c.now, FlushInterval: time.Hour})
	defer s.Close()
	raw, _ := json.Marshal(Settings{Enabled: true, DelaySeconds: 60, AutoWhitelistPasses: -1})
	st.KVPutValue(context.Background(), ConfigNamespace, ConfigKey, raw)
	check(s, "192.0.2.1", "a@x.test", "u@example.test")
	c.add(2 * time.Minute)
	check(s, "192.0.2.1", "a@x.test", "u@example.test")
	s.Flush(context.Background())
	for b.Loop() {
		if v := check(s, "192.0.2.1", "a@x.test", "u@example.test"); v.Action != filter.ActionAccept {
			b.Fatal(v)
		}
	}
}

func TestFlushInChunks(t *testing.T) {
	s, st, _ := newStage(t, nil)
	putSettings(t, st, Settings{Enabled: true})
	long := strings.Repeat("x", 200)
	for i := range 5000 {
		check(s, "192.0.2.1", fmt.Sprintf("%s%d@%s.test", long, i, long), "u@example.test")
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts, err := ListTriplets(st, 10000)
	if err != nil || len(ts) != 5000 {
		t.Errorf("%d triplets stored (%v), want 5000", len(ts), err)
	}
}

package dnsbl

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage/storetest"
)

// testZone serves A records for names (fully qualified) on loopback and
// counts the queries it answered.
type testZone struct {
	mu      sync.Mutex
	records map[string]string // name → address
	delay   map[string]time.Duration
	queries atomic.Int64
	addr    string
}

func serveZone(t *testing.T, records map[string]string) *testZone {
	t.Helper()
	z := &testZone{records: records, delay: map[string]time.Duration{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		z.queries.Add(1)
		q := r.Question[0]
		m := new(dns.Msg)
		m.SetReply(r)
		z.mu.Lock()
		a, ok := z.records[strings.ToLower(q.Name)]
		d := z.delay[strings.ToLower(q.Name)]
		z.mu.Unlock()
		time.Sleep(d)
		if ok && q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Name + " 600 IN A " + a)
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
			soa, _ := dns.NewRR("test. 60 IN SOA ns.test. admin.test. 1 3600 600 86400 60")
			m.Ns = append(m.Ns, soa)
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return z
}

func (z *testZone) setDelay(name string, d time.Duration) {
	z.mu.Lock()
	z.delay[name] = d
	z.mu.Unlock()
}

func TestQueryName(t *testing.T) {
	for _, c := range []struct{ ip, want string }{
		// RFC 5782 §2.1 and §2.4 examples.
		{"192.0.2.99", "99.2.0.192.bl.example."},
		{"2001:db8:1:2:3:4:567:89ab", "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example."},
		{"::ffff:10.0.0.1", "1.0.0.10.bl.example."},
	} {
		if got := QueryName(net.ParseIP(c.ip), "bl.example"); got != c.want {
			t.Errorf("QueryName(%s) = %s, want %s", c.ip, got, c.want)
		}
	}
}

func TestZoneNormalize(t *testing.T) {
	for _, c := range []struct {
		z       Zone
		wantErr string
	}{
		{Zone{Zone: "zen.example.", Kind: "block"}, ""},
		{Zone{Zone: "wl.example", Kind: "allow", Score: 2}, ""},
		{Zone{Zone: ""}, "DNS name is required"},
		{Zone{Zone: "bad zone"}, "not allowed"},
		{Zone{Zone: "a..b"}, "empty"},
		{Zone{Zone: "x.example", Kind: "maybe"}, "block or allow"},
		{Zone{Zone: "x.example", Kind: "allow", Reject: true}, "cannot reject"},
		{Zone{Zone: "x.example", Match: []string{"127.0.0.5-127.0.0.2"}}, "ends before"},
		{Zone{Zone: "x.example", Match: []string{"localhost"}}, "not an IPv4"},
		{Zone{Zone: "x.example", Score: 5000}, "out of range"},
	} {
		err := c.z.Normalize()
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("Normalize(%+v) = %v, want error containing %q", c.z, err, c.wantErr)
		}
	}
}

func setZones(t *testing.T, kv interface {
	KVPutValue(ctx context.Context, ns, key string, value []byte) error
}, zs []Zone) {
	t.Helper()
	raw, _ := json.Marshal(zs)
	if err := kv.KVPutValue(context.Background(), Namespace, ZonesKey, raw); err != nil {
		t.Fatal(err)
	}
}

func TestCheckConn(t *testing.T) {
	z := serveZone(t, map[string]string{
		"2.0.0.127.bl.test.":     "127.0.0.2",
		"3.0.0.127.reject.test.": "127.0.0.10", // outside the match range
		"5.0.0.127.wl.test.":     "127.0.2.1",
		"5.0.0.127.reject.test.": "127.0.0.4",
		"9.0.0.127.bl.test.":     "127.255.255.254", // "query refused" error code
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test.": "127.0.0.2",
	})
	st := storetest.New(t)
	setZones(t, st, []Zone{
		{Zone: "bl.test", Kind: KindBlock, Score: 2.5},
		{Zone: "reject.test", Kind: KindBlock, Reject: true, Match: []string{"127.0.0.2-127.0.0.9"}},
		{Zone: "wl.test", Kind: KindAllow, Score: 4},
	})
	s := New(Config{KV: st, Resolver: NewDNSResolver(z.addr), Timeout: time.Second})
	for _, c := range []struct {
		name       string
		ip         string
		auth       uint64
		wantAction filter.Action
		wantScore  float64
		wantReason string
	}{
		{"listed on a scoring list", "127.0.0.2", 0, filter.ActionTag, 2.5, "bl.test lists"},
		{"listed on a rejecting list", "127.0.0.3", 0, filter.ActionAccept, 0, ""},
		{"allow list prevents the reject", "127.0.0.5", 0, filter.ActionAccept, -1, "wl.test allows"},
		{"error code ignored", "127.0.0.9", 0, filter.ActionAccept, 0, ""},
		{"not listed", "192.0.2.1", 0, filter.ActionAccept, 0, ""},
		{"IPv6 nibbles", "2001:db8::1", 0, filter.ActionTag, 2.5, "bl.test lists"},
		{"authenticated clients skipped", "127.0.0.2", 7, filter.ActionAccept, 0, "authenticated"},
	} {
		v := s.CheckConn(context.Background(), &filter.Envelope{ClientIP: net.ParseIP(c.ip), AuthAccountID: c.auth})
		if v.Action != c.wantAction || v.Score != c.wantScore || !strings.Contains(v.Reason, c.wantReason) {
			t.Errorf("%s: verdict %+v, want action %v score %g reason %q", c.name, v, c.wantAction, c.wantScore, c.wantReason)
		}
	}
	if !s.Allowed(context.Background(), net.ParseIP("127.0.0.5")) || s.Allowed(context.Background(), net.ParseIP("127.0.0.2")) {
		t.Error("Allowed: want true only for the DNSWL-listed address")
	}
	// A rejecting list: reject.test lists 127.0.0.2 → 127.0.0.4 in range.
	z.mu.Lock()
	z.records["2.0.0.127.reject.test."] = "127.0.0.4"
	z.records["7.0.0.127.reject.test."] = "127.0.0.4"
	z.mu.Unlock()
	v := s.CheckConn(context.Background(), &filter.Envelope{ClientIP: net.ParseIP("127.0.0.7")})
	if v.Action != filter.ActionReject || !strings.Contains(v.Reason, "reject.test") || !strings.Contains(v.Reason, "127.0.0.7") {
		t.Errorf("reject list: verdict %+v", v)
	}
}

func TestCacheAndTimeout(t *testing.T) {
	z := serveZone(t, map[string]string{"2.0.0.127.bl.test.": "127.0.0.2", "3.0.0.127.slow.test.": "127.0.0.2"})
	z.setDelay("3.0.0.127.slow.test.", 2*time.Second)
	st := storetest.New(t)
	setZones(t, st, []Zone{{Zone: "bl.test"}, {Zone: "slow.test"}})
	now := time.Unix(1_700_000_000, 0)
	var clock atomic.Int64
	clock.Store(now.Unix())
	s := New(Config{KV: st, Resolver: NewDNSResolver(z.addr), Timeout: 200 * time.Millisecond,
		Now: func() time.Time { return time.Unix(clock.Load(), 0) }})
	env := &filter.Envelope{ClientIP: net.ParseIP("127.0.0.2")}
	for range 3 {
		if v := s.CheckConn(context.Background(), env); v.Score != DefaultScore {
			t.Fatalf("verdict %+v", v)
		}
	}
	// One query per zone (both negative and positive answers cached).
	if n := z.queries.Load(); n != 2 {
		t.Errorf("%d queries for three checks, want 2 (cached)", n)
	}
	// The record's TTL is 600 s: after it the name is asked again.
	clock.Add(601)
	s.CheckConn(context.Background(), env)
	if n := z.queries.Load(); n != 4 {
		t.Errorf("%d queries after the TTL, want 4", n)
	}
	// A slow list is cut off by the timeout and does not count.
	start := time.Now()
	v := s.CheckConn(context.Background(), &filter.Envelope{ClientIP: net.ParseIP("127.0.0.3")})
	if d := time.Since(start); d > time.Second {
		t.Errorf("check took %v with a 200 ms timeout", d)
	}
	if v.Score != 0 {
		t.Errorf("timed-out list counted: %+v", v)
	}
}

func TestCacheBounded(t *testing.T) {
	c := newCache(100)
	now := time.Now()
	for i := range 1000 {
		c.put(strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), nil, time.Hour, now)
	}
	if n := c.len(); n > 100 {
		t.Errorf("cache holds %d entries, bound 100", n)
	}
}

func FuzzParseZones(f *testing.F) {
	f.Add([]byte(`[{"zone":"zen.example","kind":"block","score":3,"reject":true,"match":["127.0.0.2-127.0.0.11"]}]`))
	f.Add([]byte(`[{"zone":"a"},{"zone":"a"}]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		zs, err := ParseZones(raw)
		if err != nil {
			return
		}
		for _, z := range zs {
			if z.Zone == "" || (z.Kind != KindBlock && z.Kind != KindAllow) || z.Score <= 0 {
				t.Fatalf("accepted invalid zone %+v", z)
			}
			if QueryName(net.ParseIP("192.0.2.1"), z.Zone) == "" {
				t.Fatal("no query name")
			}
		}
	})
}

func TestExempt(t *testing.T) {
	z := serveZone(t, map[string]string{"2.0.0.127.bl.test.": "127.0.0.2"})
	st := storetest.New(t)
	setZones(t, st, []Zone{{Zone: "bl.test", Reject: true}})
	s := New(Config{KV: st, Resolver: NewDNSResolver(z.addr), Exempt: func(ip net.IP) bool { return ip.Equal(net.ParseIP("127.0.0.2")) }})
	if v := s.CheckConn(context.Background(), &filter.Envelope{ClientIP: net.ParseIP("127.0.0.2")}); v.Action != filter.ActionAccept || z.queries.Load() != 0 {
		t.Errorf("exempt client: %+v after %d queries", v, z.queries.Load())
	}
}

func TestConcurrentLookupsJoin(t *testing.T) {
	z := serveZone(t, map[string]string{"4.0.0.127.bl.test.": "127.0.0.2"})
	z.setDelay("4.0.0.127.bl.test.", 100*time.Millisecond)
	st := storetest.New(t)
	setZones(t, st, []Zone{{Zone: "bl.test"}})
	s := New(Config{KV: st, Resolver: NewDNSResolver(z.addr), Timeout: time.Second})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v := s.CheckConn(context.Background(), &filter.Envelope{ClientIP: net.ParseIP("127.0.0.4")}); v.Score != DefaultScore {
				t.Errorf("verdict %+v", v)
			}
		}()
	}
	wg.Wait()
	if n := z.queries.Load(); n != 1 {
		t.Errorf("20 concurrent checks asked %d times, want 1", n)
	}
}

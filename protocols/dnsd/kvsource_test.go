package dnsd

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tandemmail/tandem/storage"
)

// fakeKV is the KV contract of storage/kv.go in memory: versions are a global
// counter (the Raft index in the real store), IfVersion 0 means "absent".
type fakeKV struct {
	mu      sync.Mutex
	index   uint64
	data    map[string]map[string]fakeVal
	rev     map[string]uint64
	domains []storage.Domain
	// beforeApply runs (unlocked) before an apply, to simulate a concurrent writer.
	beforeApply func()
}

type fakeVal struct {
	v   []byte
	ver uint64
}

func newFakeKV(domains ...string) *fakeKV {
	f := &fakeKV{data: map[string]map[string]fakeVal{}, rev: map[string]uint64{}}
	for _, d := range domains {
		f.domains = append(f.domains, storage.Domain{Name: d, Created: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)})
	}
	return f
}

func (f *fakeKV) KVApply(_ context.Context, ops ...storage.KVOp) error {
	if hook := f.beforeApply; hook != nil {
		f.beforeApply = nil
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, op := range ops {
		if op.IfVersion != nil && f.data[op.NS][op.Key].ver != *op.IfVersion {
			return storage.ErrKVConflict
		}
	}
	f.index++
	for _, op := range ops {
		if f.data[op.NS] == nil {
			f.data[op.NS] = map[string]fakeVal{}
		}
		switch op.Op {
		case storage.KVPut:
			f.data[op.NS][op.Key] = fakeVal{v: op.Value, ver: f.index}
		case storage.KVDelete:
			delete(f.data[op.NS], op.Key)
		default:
			return errors.New("fakeKV: unsupported op " + op.Op)
		}
		f.rev[op.NS] = f.index
	}
	return nil
}

func (f *fakeKV) KVGet(ns, key string) ([]byte, uint64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.data[ns][key]
	return v.v, v.ver, ok, nil
}

func (f *fakeKV) KVList(ns, prefix string, fn func(string, []byte, uint64) error) error {
	f.mu.Lock()
	var keys []string
	for k := range f.data[ns] {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	vals := make([]fakeVal, len(keys))
	for i, k := range keys {
		vals[i] = f.data[ns][k]
	}
	f.mu.Unlock()
	for i, k := range keys {
		if err := fn(k, vals[i].v, vals[i].ver); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeKV) KVRevision(ns string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rev[ns]
}

func (f *fakeKV) Domains() ([]storage.Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.domains), nil
}

func (f *fakeKV) putDKIM(t *testing.T, domain, sel, state, txt string) {
	t.Helper()
	raw := `{"domain":"` + domain + `","selector":"` + sel + `","algorithm":"ed25519-sha256","public_txt":"` + txt + `","state":"` + state + `"}`
	if err := f.KVApply(context.Background(), storage.KVOp{Op: storage.KVPut, NS: nsDKIM, Key: domain + "/" + sel, Value: []byte(raw)}); err != nil {
		t.Fatal(err)
	}
}

var testHost = HostConfig{Hostname: "box.example.net", V4: []net.IP{net.ParseIP("192.0.2.25")}, V6: []net.IP{net.ParseIP("2001:db8::25")}}

func newTestZones(kv *fakeKV) *KVZones {
	return NewKVZones(kv, testHost, discardLogger(), func() time.Time { return time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC) })
}

func zoneHas(z Zone, name, typ, valuePart string) bool {
	for _, r := range z.Records {
		if r.Name == name && r.Type == typ && strings.Contains(r.Value, valuePart) {
			return true
		}
	}
	return false
}

func TestKVZonesDerived(t *testing.T) {
	kv := newFakeKV("example.com")
	kv.putDKIM(t, "example.com", "s1", "active", "v=DKIM1; k=ed25519; p=AAAA")
	kv.putDKIM(t, "example.com", "s2", "published", "v=DKIM1; k=ed25519; p=BBBB")
	kv.putDKIM(t, "example.com", "s0", "retired", "v=DKIM1; k=ed25519; p=OLD0")
	kv.putDKIM(t, "example.com", "sx", "pending", "v=DKIM1; k=ed25519; p=XXXX")
	kv.putDKIM(t, "other.org", "s1", "active", "v=DKIM1; k=ed25519; p=OTHR")
	k := newTestZones(kv)
	zs := k.Zones()
	if len(zs) != 1 || zs[0].Origin != "example.com." {
		t.Fatalf("zones = %v, want example.com. only", zs)
	}
	z := *zs[0]
	if z.Serial != 2026030400 {
		t.Errorf("serial of a never-changed zone = %d, want the date it was added 2026030400", z.Serial)
	}
	for _, c := range []struct{ name, typ, part string }{
		{"example.com.", "SOA", "ns1.example.com."},
		{"example.com.", "NS", "ns1.example.com."},
		{"example.com.", "MX", "10 mail.example.com."},
		{"mail.example.com.", "A", "192.0.2.25"},
		{"mail.example.com.", "AAAA", "2001:db8::25"},
		{"ns1.example.com.", "A", "192.0.2.25"},
		{"example.com.", "TXT", "v=spf1 mx -all"},
		{"_dmarc.example.com.", "TXT", "p=quarantine"},
		{"s1._domainkey.example.com.", "TXT", "p=AAAA"},
		{"s2._domainkey.example.com.", "TXT", "p=BBBB"},
		{"s0._domainkey.example.com.", "TXT", "p=OLD0"},
	} {
		if !zoneHas(z, c.name, c.typ, c.part) {
			t.Errorf("zone lacks %s %s %q:\n%s", c.name, c.typ, c.part, z.ZoneFile())
		}
	}
	if zoneHas(z, "sx._domainkey.example.com.", "TXT", "") {
		t.Error("a key in an unknown state is published")
	}
	if err := z.Validate(); err != nil {
		t.Errorf("derived zone invalid: %v", err)
	}

	// The node's host name inside the domain is the MX target.
	k2 := NewKVZones(kv, HostConfig{Hostname: "mx.example.com", V4: testHost.V4}, nil, nil)
	z2, err := k2.Zone("EXAMPLE.com.")
	if err != nil {
		t.Fatal(err)
	}
	if !zoneHas(z2, "example.com.", "MX", "10 mx.example.com.") || !zoneHas(z2, "mx.example.com.", "A", "192.0.2.25") {
		t.Errorf("host name inside the domain not used:\n%s", z2.ZoneFile())
	}
}

func TestKVZonesSerialBumps(t *testing.T) {
	ctx := context.Background()
	kv := newFakeKV("example.com")
	k := newTestZones(kv)
	serial := func() uint32 {
		t.Helper()
		z, err := k.Zone("example.com")
		if err != nil {
			t.Fatal(err)
		}
		return z.Serial
	}
	prev := serial()
	v := k.Version()
	step := func(what string, f func()) {
		t.Helper()
		f()
		s := serial()
		if int32(s-prev) <= 0 {
			t.Fatalf("%s: serial %d, not after %d", what, s, prev)
		}
		if nv := k.Version(); nv == v {
			t.Fatalf("%s: Version did not change", what)
		} else {
			v = nv
		}
		prev = s
	}
	step("add A", func() {
		if _, err := k.AddRecord(ctx, "example.com", Record{Name: "www", Type: "a", Value: "192.0.2.80"}); err != nil {
			t.Fatal(err)
		}
	})
	if prev != 2026030500 {
		t.Errorf("first change serial %d, want today's date form 2026030500", prev)
	}
	step("add TXT", func() {
		if _, err := k.AddRecord(ctx, "example.com", Record{Name: "@", Type: "TXT", Value: "hello world"}); err != nil {
			t.Fatal(err)
		}
	})
	step("dkim key", func() { kv.putDKIM(t, "example.com", "s1", "active", "v=DKIM1; k=ed25519; p=AAAA") })
	// Reconcile persists the bump without changing the served serial.
	before := serial()
	if err := k.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if serial() != before {
		t.Fatalf("reconcile changed the served serial %d → %d", before, serial())
	}
	v = k.Version()
	step("del A", func() {
		if n, err := k.DeleteRecords(ctx, "example.com", "www", "A", ""); err != nil || n != 1 {
			t.Fatalf("delete = %d, %v", n, err)
		}
	})
	step("dkim retire", func() { kv.putDKIM(t, "example.com", "s1", "gone", "v=DKIM1; k=ed25519; p=AAAA") })
	step("add after dkim", func() {
		if _, err := k.AddRecord(ctx, "example.com", Record{Name: "ftp", Type: "CNAME", Value: "www.example.org."}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestKVZonesConcurrentEdit(t *testing.T) {
	ctx := context.Background()
	kv := newFakeKV("example.com")
	k := newTestZones(kv)
	other := newTestZones(kv)
	// Another node's edit lands between this writer's read and its write.
	kv.beforeApply = func() {
		if _, err := other.AddRecord(ctx, "example.com", Record{Name: "b", Type: "A", Value: "192.0.2.2"}); err != nil {
			t.Error(err)
		}
	}
	if _, err := k.AddRecord(ctx, "example.com", Record{Name: "a", Type: "A", Value: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	rs, err := k.Records("example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("records after two concurrent adds = %v, want both", rs)
	}
}

func TestKVZonesOverrides(t *testing.T) {
	ctx := context.Background()
	kv := newFakeKV("example.com")
	k := newTestZones(kv)
	for _, r := range []Record{
		{Name: "@", Type: "TXT", Value: "v=spf1 mx a:out.example.com -all"},
		{Name: "@", Type: "TXT", Value: "google-site-verification=abc"},
		{Name: "@", Type: "MX", Value: "20 backup.example.org."},
		{Name: "mail", Type: "CNAME", Value: "box.example.net."},
	} {
		if _, err := k.AddRecord(ctx, "example.com", r); err != nil {
			t.Fatalf("add %v: %v", r, err)
		}
	}
	z, _ := k.Zone("example.com")
	if zoneHas(z, "example.com.", "TXT", "v=spf1 mx -all") || !zoneHas(z, "example.com.", "TXT", "a:out.example.com") {
		t.Errorf("admin SPF does not replace the derived one:\n%s", z.ZoneFile())
	}
	if !zoneHas(z, "example.com.", "TXT", "google-site-verification") || !zoneHas(z, "_dmarc.example.com.", "TXT", "DMARC1") {
		t.Errorf("unrelated TXT records lost:\n%s", z.ZoneFile())
	}
	if zoneHas(z, "example.com.", "MX", "mail.example.com.") || !zoneHas(z, "example.com.", "MX", "backup.example.org.") {
		t.Errorf("admin MX does not replace the derived one:\n%s", z.ZoneFile())
	}
	if zoneHas(z, "mail.example.com.", "A", "") || !zoneHas(z, "mail.example.com.", "CNAME", "box.example.net.") {
		t.Errorf("admin CNAME does not replace derived addresses:\n%s", z.ZoneFile())
	}
	if err := z.Validate(); err != nil {
		t.Errorf("zone invalid: %v", err)
	}
}

func TestKVZonesErrors(t *testing.T) {
	ctx := context.Background()
	kv := newFakeKV("example.com")
	k := newTestZones(kv)
	if _, err := k.AddRecord(ctx, "example.com", Record{Name: "www", Type: "A", Value: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	var recErr *RecordError
	for _, c := range []struct {
		name   string
		domain string
		r      Record
		is     error
		asRec  bool
		substr string
	}{
		{"unknown domain", "nothere.org", Record{Name: "x", Type: "A", Value: "192.0.2.1"}, ErrNoZone, false, "no such hosted domain"},
		{"bad domain", "bad domain", Record{Name: "x", Type: "A", Value: "192.0.2.1"}, ErrNoZone, false, ""},
		{"SOA", "example.com", Record{Name: "@", Type: "SOA", Value: "a. b. 1 2 3 4 5"}, nil, true, "type not allowed"},
		{"NS", "example.com", Record{Name: "@", Type: "NS", Value: "ns.example.org."}, nil, true, "type not allowed"},
		{"bad A", "example.com", Record{Name: "x", Type: "A", Value: "300.1.1.1"}, nil, true, "cannot parse"},
		{"outside", "example.com", Record{Name: "x.example.org.", Type: "A", Value: "192.0.2.1"}, nil, true, "outside"},
		{"duplicate", "example.com", Record{Name: "www", Type: "A", Value: "192.0.2.1"}, ErrRecordExists, false, ""},
		{"cname beside A", "example.com", Record{Name: "www", Type: "CNAME", Value: "x.example.org."}, nil, false, "CNAME and other"},
		{"bad MX", "example.com", Record{Name: "@", Type: "MX", Value: "mail.example.com."}, nil, true, ""},
		{"bad SRV", "example.com", Record{Name: "_x._tcp", Type: "SRV", Value: "1 2 host"}, nil, true, ""},
		{"bad CAA", "example.com", Record{Name: "@", Type: "CAA", Value: "0 issue"}, nil, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := k.AddRecord(ctx, c.domain, c.r)
			if err == nil {
				t.Fatal("no error")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("err = %v, want %v", err, c.is)
			}
			if c.asRec && !errors.As(err, &recErr) {
				t.Errorf("err = %v (%T), want a RecordError", err, err)
			}
			if !strings.Contains(err.Error(), c.substr) {
				t.Errorf("err = %v, want it to mention %q", err, c.substr)
			}
		})
	}
	if _, err := k.DeleteRecords(ctx, "example.com", "www", "A", "192.0.2.9"); !errors.Is(err, ErrNoRecord) {
		t.Errorf("delete of an absent value: %v", err)
	}
	if _, err := k.DeleteRecords(ctx, "example.com", "@", "MX", ""); !errors.Is(err, ErrNoRecord) {
		t.Errorf("delete of a derived record: %v", err)
	}
	rs, _ := k.Records("example.com")
	if len(rs) != 1 {
		t.Errorf("failed edits changed the zone: %v", rs)
	}
}

func TestKVZonesDeletedDomain(t *testing.T) {
	ctx := context.Background()
	kv := newFakeKV("example.com", "example.org")
	k := newTestZones(kv)
	if _, err := k.AddRecord(ctx, "example.org", Record{Name: "www", Type: "A", Value: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	v := k.Version()
	kv.mu.Lock()
	kv.domains = kv.domains[:1]
	kv.mu.Unlock()
	if k.Version() == v {
		t.Error("Version unchanged after a domain was deleted")
	}
	if zs := k.Zones(); len(zs) != 1 || zs[0].Origin != "example.com." {
		t.Fatalf("zones after delete: %v", zs)
	}
	if _, err := k.Zone("example.org"); !errors.Is(err, ErrNoZone) {
		t.Errorf("zone of a deleted domain: %v", err)
	}
	if err := k.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := kv.KVGet(NSZones, "example.org"); ok {
		t.Error("reconcile kept the document of a deleted domain")
	}
	if _, _, ok, _ := kv.KVGet(NSZones, "example.com"); !ok {
		t.Error("reconcile did not persist the serial of example.com")
	}
}

// TestKVZonesServes answers queries from a server fed by KVZones, and sees a
// change after Refresh.
func TestKVZonesServes(t *testing.T) {
	kv := newFakeKV("example.com")
	k := newTestZones(kv)
	s, err := New(Config{Addrs: []string{"127.0.0.1:0"}, Zones: k})
	if err != nil {
		t.Fatal(err)
	}
	s.Refresh()
	r := ask(t, s, question("mail.example.com.", dns.TypeA), false)
	if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "192.0.2.25") {
		t.Fatalf("A mail.example.com = %v", r.Answer)
	}
	if _, err := k.AddRecord(context.Background(), "example.com", Record{Name: "www", Type: "AAAA", Value: "2001:db8::80"}); err != nil {
		t.Fatal(err)
	}
	s.Refresh()
	r = ask(t, s, question("www.example.com.", dns.TypeAAAA), false)
	if len(r.Answer) != 1 {
		t.Fatalf("AAAA www after add = %v", r)
	}
	r = ask(t, s, question("example.com.", dns.TypeSOA), false)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != 2026030500 {
		t.Fatalf("SOA after change = %v", r.Answer)
	}
	if r := ask(t, s, question("example.net.", dns.TypeA), false); r.Rcode != dns.RcodeRefused {
		t.Errorf("foreign zone rcode %s", dns.RcodeToString[r.Rcode])
	}
}

func TestCheckRecords(t *testing.T) {
	want := []Record{
		{Name: "example.com.", Type: "MX", TTL: 3600, Value: "10 mail.example.com."},
		{Name: "example.com.", Type: "TXT", TTL: 3600, Value: `"v=spf1 mx -all"`},
		{Name: "_dmarc.example.com.", Type: "TXT", TTL: 3600, Value: `"v=DMARC1; p=quarantine"`},
		{Name: "mail.example.com.", Type: "A", TTL: 3600, Value: "192.0.2.25"},
		{Name: "s1._domainkey.example.com.", Type: "TXT", TTL: 3600, Value: `"v=DKIM1; p=X"`},
	}
	served := map[string][]string{
		"example.com. MX": {"example.com. 60 IN MX 10 mail.example.com."},
		// A verification string beside a wrong SPF record: SPF is wrong, not missing.
		"example.com. TXT":        {`example.com. 60 IN TXT "google=1"`, `example.com. 60 IN TXT "v=spf1 a -all"`},
		"_dmarc.example.com. TXT": {`_dmarc.example.com. 60 IN TXT "other text"`},
		"mail.example.com. A":     {"mail.example.com. 60 IN A 192.0.2.25"},
	}
	lookup := func(_ context.Context, name string, qtype uint16) ([]dns.RR, error) {
		if strings.HasPrefix(name, "s1.") {
			return nil, errors.New("timeout")
		}
		var out []dns.RR
		for _, s := range served[name+" "+dns.TypeToString[qtype]] {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rr)
		}
		return out, nil
	}
	got := CheckRecords(context.Background(), want, lookup)
	wantStatus := []string{CheckPresent, CheckWrong, CheckMissing, CheckPresent, CheckError}
	for i, g := range got {
		if g.Status != wantStatus[i] {
			t.Errorf("%s %s: status %s, want %s (found %v)", g.Record.Name, g.Record.Type, g.Status, wantStatus[i], g.Found)
		}
	}
	if len(got[1].Found) != 1 || got[1].Found[0] != `"v=spf1 a -all"` {
		t.Errorf("wrong SPF found = %q, want the served SPF only", got[1].Found)
	}
}

// FuzzAddRecord feeds admin input through AddRecord and DeleteRecords: no
// panic, an accepted record leaves a valid zone that the server can compile,
// and a rejected one changes nothing.
func FuzzAddRecord(f *testing.F) {
	f.Add("www", "A", "192.0.2.1", uint32(0))
	f.Add("@", "TXT", "v=spf1 -all", uint32(60))
	f.Add("_dmarc", "TXT", `"v=DMARC1; p=none"`, uint32(0))
	f.Add("mail", "CNAME", "x.example.org.", uint32(0))
	f.Add("@", "MX", "5 mx.example.org.", uint32(0))
	f.Add("_s._tcp", "SRV", "1 2 3 host", uint32(0))
	f.Add("@", "CAA", `0 issue "ca.example"`, uint32(0))
	f.Add("p", "PTR", "host.", uint32(1))
	f.Fuzz(func(t *testing.T, name, typ, value string, ttl uint32) {
		ctx := context.Background()
		kv := newFakeKV("example.com")
		k := newTestZones(kv)
		before := k.Version()
		r, err := k.AddRecord(ctx, "example.com", Record{Name: name, Type: typ, TTL: ttl, Value: value})
		if err != nil {
			if k.Version() != before {
				t.Fatalf("rejected record %q %q %q changed the store: %v", name, typ, value, err)
			}
			return
		}
		z, err := k.Zone("example.com")
		if err != nil {
			t.Fatal(err)
		}
		if err := z.Validate(); err != nil {
			t.Fatalf("accepted %v leaves an invalid zone: %v", r, err)
		}
		if _, problems := buildTable(1, []*Zone{&z}); len(problems) > 0 {
			t.Fatalf("accepted %v, server skips: %v", r, problems)
		}
		if n, err := k.DeleteRecords(ctx, "example.com", r.Name, r.Type, r.Value); err != nil || n != 1 {
			t.Fatalf("delete of accepted %v: %d, %v", r, n, err)
		}
	})
}

func TestKVZonesSetRecords(t *testing.T) {
	ctx := context.Background()
	kv := newFakeKV("example.com")
	k := newTestZones(kv)
	for _, v := range []string{"192.0.2.1", "192.0.2.2"} {
		if _, err := k.AddRecord(ctx, "example.com", Record{Name: "www", Type: "A", Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.AddRecord(ctx, "example.com", Record{Name: "www", Type: "AAAA", Value: "2001:db8::1"}); err != nil {
		t.Fatal(err)
	}
	before, _ := k.Zone("example.com")
	got, err := k.SetRecords(ctx, "example.com", "www", "a", 120, []string{"192.0.2.9", "192.0.2.9", "192.0.2.10"})
	if err != nil || len(got) != 2 {
		t.Fatalf("SetRecords = %v, %v", got, err)
	}
	z, _ := k.Zone("example.com")
	if int32(z.Serial-before.Serial) <= 0 {
		t.Errorf("serial %d after set, was %d", z.Serial, before.Serial)
	}
	if slices.Contains(z.Records, Record{Name: "www.example.com.", Type: "A", TTL: 3600, Value: "192.0.2.1"}) || !zoneHas(z, "www.example.com.", "A", "192.0.2.10") ||
		!zoneHas(z, "www.example.com.", "AAAA", "2001:db8::1") {
		t.Errorf("after set:\n%s", z.ZoneFile())
	}
	// Editing a derived RRset: the MX.
	if _, err := k.SetRecords(ctx, "example.com", "@", "MX", 0, []string{"5 mx1.example.org.", "10 mx2.example.org."}); err != nil {
		t.Fatal(err)
	}
	z, _ = k.Zone("example.com")
	if zoneHas(z, "example.com.", "MX", "mail.example.com.") || !zoneHas(z, "example.com.", "MX", "mx2.example.org.") {
		t.Errorf("MX not replaced:\n%s", z.ZoneFile())
	}
	// Bad input changes nothing.
	v := k.Version()
	for _, c := range []struct {
		name, typ string
		values    []string
	}{
		{"www", "A", nil},
		{"www", "A", []string{"192.0.2.1", "bad"}},
		{"www", "SOA", []string{"a. b. 1 2 3 4 5"}},
		{"www", "CNAME", []string{"x.example.org."}}, // beside the AAAA
		{"bad name", "A", []string{"192.0.2.1"}},
	} {
		if _, err := k.SetRecords(ctx, "example.com", c.name, c.typ, 0, c.values); err == nil {
			t.Errorf("SetRecords(%q %q %q) accepted", c.name, c.typ, c.values)
		}
	}
	if k.Version() != v {
		t.Error("rejected sets changed the store")
	}
}

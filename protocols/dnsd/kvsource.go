package dnsd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/tandemmail/tandem/storage"
)

// KV namespaces. The zones are replicated state (SPEC D1): every node derives
// the same zones from the same Raft-applied state, so followers answer exactly
// like the leader.
//
//	dns.zones  "DOMAIN" → ZoneDoc (JSON): the admin's own records of the domain
//	           and the SOA serial last written. Owned by this package.
//	dkim.keys  "DOMAIN/SELECTOR" → DKIM key (JSON), owned by filter/dkimsign;
//	           read here to publish SELECTOR._domainkey.DOMAIN.
const (
	NSZones = "dns.zones"
	nsDKIM  = "dkim.keys"
)

// Errors the API maps to replies.
var (
	ErrNoZone       = errors.New("no such hosted domain")
	ErrNoRecord     = errors.New("no such record")
	ErrRecordExists = errors.New("record already exists")
)

// AdminTypes are the record types an admin may add to a hosted zone (SPEC D1);
// SOA and NS are made by the server.
var AdminTypes = []string{"A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "PTR"}

// KV is the part of *storage.Store the zone source uses.
type KV interface {
	KVApply(ctx context.Context, ops ...storage.KVOp) error
	KVGet(ns, key string) (value []byte, version uint64, ok bool, err error)
	KVList(ns, prefix string, fn func(key string, value []byte, version uint64) error) error
	KVRevision(ns string) uint64
	Domains() ([]storage.Domain, error)
}

// ZoneDoc is the stored form of a zone in dns.zones. Only the admin's records
// are stored; SOA, NS, mail host addresses, MX, SPF, DMARC and DKIM are derived
// at read time from the domain list and dkim.keys, so adding a domain needs no
// hook and a deleted domain's zone disappears with it.
type ZoneDoc struct {
	// Serial is the SOA serial written with the last change.
	Serial uint32 `json:"serial"`
	// AutoHash identifies the derived records Serial was written for; when the
	// derived records change (a DKIM key, the mail host addresses) the served
	// serial is Serial+1 until the leader writes that bump (Reconcile).
	AutoHash string   `json:"auto_hash,omitempty"`
	Records  []Record `json:"records"`
}

// HostConfig says where the mail host is: its name (used as MX target when it
// lies inside the domain, else mail.DOMAIN) and its addresses (the VIP in a
// cluster).
type HostConfig struct {
	Hostname string
	V4, V6   []net.IP
}

// KVZones is the ZoneSource backed by the replicated KV store, plus the record
// management the admin API uses. It is safe for concurrent use.
type KVZones struct {
	kv   KV
	host HostConfig
	log  *slog.Logger
	now  func() time.Time

	mu    sync.Mutex
	last  []*Zone // last good Zones result, served when the store fails
	lastV uint64
}

// NewKVZones returns a zone source reading kv. now may be nil (time.Now).
func NewKVZones(kv KV, host HostConfig, log *slog.Logger, now func() time.Time) *KVZones {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &KVZones{kv: kv, host: host, log: log, now: now}
}

// Version implements ZoneSource: a hash of the revisions of the two namespaces
// and of the domain list (which has no revision of its own).
func (k *KVZones) Version() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", k.kv.KVRevision(NSZones), k.kv.KVRevision(nsDKIM))
	ds, err := k.kv.Domains()
	if err != nil {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.lastV // keep serving what we have
	}
	for _, d := range ds {
		fmt.Fprintf(h, "|%s@%d", d.Name, d.Created.UnixNano())
	}
	v := h.Sum64()
	k.mu.Lock()
	k.lastV = v
	k.mu.Unlock()
	return v
}

// Zones implements ZoneSource.
func (k *KVZones) Zones() []*Zone {
	states, err := k.loadAll()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.log.Warn("dns zones: reading the store failed; serving the previous zones", "err", err)
		return k.last
	}
	out := make([]*Zone, 0, len(states))
	for _, st := range states {
		z := st.zone()
		out = append(out, &z)
	}
	k.last = out
	return out
}

// zoneState is everything one zone is derived from.
type zoneState struct {
	domain   storage.Domain
	origin   string
	doc      ZoneDoc
	version  uint64 // KV version of doc; 0: no doc stored
	auto     []Record
	autoHash string
}

// serial is the serial served for the state: deterministic from replicated
// state, so every node serves the same one.
func (st *zoneState) serial() uint32 {
	switch {
	case st.version == 0:
		// No change was ever written: the date the domain was added.
		if st.domain.Created.IsZero() {
			return 1
		}
		return NextSerial(0, st.domain.Created)
	case st.doc.AutoHash != st.autoHash:
		return st.doc.Serial + 1
	default:
		return st.doc.Serial
	}
}

func (st *zoneState) zone() Zone {
	z := Zone{Origin: st.origin, Serial: st.serial(), Records: merge(st.auto, st.doc.Records)}
	// The SOA shown to the admin carries the served serial too (the server
	// and ZoneFile override it anyway).
	for i, r := range z.Records {
		if f := strings.Fields(r.Value); r.Type == "SOA" && len(f) == 7 {
			f[2] = strconv.FormatUint(uint64(z.Serial), 10)
			z.Records[i].Value = strings.Join(f, " ")
		}
	}
	return z
}

// dkimRecord is the part of filter/dkimsign.KeyRecord the DNS server reads (a
// fixed JSON contract with that package).
type dkimRecord struct {
	Domain    string `json:"domain"`
	Selector  string `json:"selector"`
	PublicTXT string `json:"public_txt"`
	State     string `json:"state"`
}

// loadAll reads every hosted domain's state in three store reads.
func (k *KVZones) loadAll() ([]*zoneState, error) {
	ds, err := k.kv.Domains()
	if err != nil {
		return nil, fmt.Errorf("read domains: %w", err)
	}
	docs := map[string]*zoneState{}
	var out []*zoneState
	for _, d := range ds {
		name := normDomain(d.Name)
		st := &zoneState{domain: d, origin: name + "."}
		docs[name] = st
		out = append(out, st)
	}
	err = k.kv.KVList(NSZones, "", func(key string, value []byte, version uint64) error {
		st := docs[key]
		if st == nil {
			return nil // left over from a deleted domain; Reconcile removes it
		}
		if err := json.Unmarshal(value, &st.doc); err != nil {
			k.log.Warn("dns zone document unreadable; serving derived records only", "domain", key, "err", err)
			st.doc = ZoneDoc{}
		}
		st.version = version
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", NSZones, err)
	}
	keys := map[string][]dkimRecord{}
	err = k.kv.KVList(nsDKIM, "", func(key string, value []byte, _ uint64) error {
		var dk dkimRecord
		if json.Unmarshal(value, &dk) != nil {
			return nil
		}
		d, sel, ok := strings.Cut(key, "/")
		if !ok {
			return nil
		}
		dk.Domain, dk.Selector = normDomain(d), strings.ToLower(sel)
		keys[dk.Domain] = append(keys[dk.Domain], dk)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", nsDKIM, err)
	}
	for _, st := range out {
		st.auto = k.autoRecords(st.origin, keys[strings.TrimSuffix(st.origin, ".")])
		st.autoHash = hashRecords(st.auto)
	}
	return out, nil
}

// load reads one domain's state.
func (k *KVZones) load(domain string) (*zoneState, error) {
	name := normDomain(domain)
	if _, err := normalizeOrigin(name); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrNoZone, domain)
	}
	states, err := k.loadAll()
	if err != nil {
		return nil, err
	}
	for _, st := range states {
		if st.origin == name+"." {
			return st, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoZone, name)
}

// mailHost is the MX target of domain origin: the node's host name when it is
// inside the domain, else mail.<domain>.
func (k *KVZones) mailHost(origin string) string {
	if h := dns.CanonicalName(k.host.Hostname); k.host.Hostname != "" && h != origin && dns.IsSubDomain(origin, h) {
		return h
	}
	return "mail." + origin
}

// autoRecords are the records every hosted mail domain gets (SPEC D1).
func (k *KVZones) autoRecords(origin string, keys []dkimRecord) []Record {
	z := DefaultZone(origin, k.mailHost(origin), k.host.V4, k.host.V6, "", "")
	sort.Slice(keys, func(i, j int) bool { return keys[i].Selector < keys[j].Selector })
	for _, key := range keys {
		// "retired" keys stay in DNS until dkimsign deletes them, so mail signed
		// just before a rotation still verifies (RFC 6376 §3.6.2 lookups).
		switch key.State {
		case "active", "published", "retired":
		default:
			continue
		}
		if key.PublicTXT == "" {
			continue
		}
		r, err := ParseRecord(origin, Record{Name: key.Selector + "._domainkey", Type: "TXT", TTL: DefaultTTL, Value: key.PublicTXT})
		if err != nil {
			k.log.Warn("dkim key not publishable in dns", "domain", key.Domain, "selector", key.Selector, "err", err)
			continue
		}
		z.Records = append(z.Records, r)
	}
	return z.Records
}

func hashRecords(rs []Record) string {
	h := sha256.New()
	for _, r := range rs {
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00%s\n", r.Name, r.Type, r.TTL, r.Value)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// rrsetKey groups records an admin record replaces: the same name and type,
// and for TXT also the same "v=" tag, so an admin SPF record replaces the
// derived one while a site-verification TXT sits beside it.
func rrsetKey(r Record) string {
	k := r.Name + " " + r.Type
	if r.Type == "TXT" {
		k += " " + txtTag(r.Value)
	}
	return k
}

// txtTag returns the lower-case "v=..." tag a TXT value starts with, or "".
func txtTag(value string) string {
	v := strings.TrimPrefix(strings.TrimSpace(value), `"`)
	end := strings.IndexAny(v, " ;\"")
	if end >= 0 {
		v = v[:end]
	}
	v = strings.ToLower(v)
	if !strings.HasPrefix(v, "v=") {
		return ""
	}
	return v
}

// merge puts the admin's records over the derived ones: an admin RRset
// replaces the derived RRset of the same key, and an admin CNAME replaces every
// derived record of its name (RFC 1034 §3.6.2).
func merge(auto, admin []Record) []Record {
	replaced := map[string]bool{}
	cname := map[string]bool{}
	for _, r := range admin {
		replaced[rrsetKey(r)] = true
		if r.Type == "CNAME" {
			cname[r.Name] = true
		}
	}
	out := make([]Record, 0, len(auto)+len(admin))
	for _, r := range auto {
		if r.Type != "SOA" && (replaced[rrsetKey(r)] || cname[r.Name]) {
			continue
		}
		out = append(out, r)
	}
	return append(out, admin...)
}

func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// Zone returns the zone served for domain.
func (k *KVZones) Zone(domain string) (Zone, error) {
	st, err := k.load(domain)
	if err != nil {
		return Zone{}, err
	}
	return st.zone(), nil
}

// Records returns the admin's own records of domain.
func (k *KVZones) Records(domain string) ([]Record, error) {
	st, err := k.load(domain)
	if err != nil {
		return nil, err
	}
	return append([]Record{}, st.doc.Records...), nil
}

// AddRecord validates r (relative names are completed with the domain) and
// adds it to the zone, advancing the serial. It returns the stored form.
func (k *KVZones) AddRecord(ctx context.Context, domain string, r Record) (Record, error) {
	if !slices.Contains(AdminTypes, strings.ToUpper(strings.TrimSpace(r.Type))) {
		return Record{}, &RecordError{Record: r, Reason: "type not allowed here (want " + strings.Join(AdminTypes, ", ") + ")"}
	}
	var added Record
	err := k.update(ctx, domain, func(st *zoneState, doc *ZoneDoc) error {
		nr, err := ParseRecord(st.origin, r)
		if err != nil {
			return err
		}
		for _, old := range doc.Records {
			if old.Name == nr.Name && old.Type == nr.Type && old.Value == nr.Value {
				return fmt.Errorf("%w: %s %s %s", ErrRecordExists, nr.Name, nr.Type, nr.Value)
			}
		}
		doc.Records = append(doc.Records, nr)
		z := Zone{Origin: st.origin, Records: merge(st.auto, doc.Records)}
		if err := z.Validate(); err != nil {
			return err
		}
		added = nr
		return nil
	})
	return added, err
}

// SetRecords replaces the admin's records of name and type with one record per
// value (the edit of an RRset, atomic: one KV write), which also overrides the
// derived records of that name and type. It returns the stored records.
func (k *KVZones) SetRecords(ctx context.Context, domain, name, typ string, ttl uint32, values []string) ([]Record, error) {
	typ = strings.ToUpper(strings.TrimSpace(typ))
	if !slices.Contains(AdminTypes, typ) {
		return nil, &RecordError{Record: Record{Name: name, Type: typ}, Reason: "type not allowed here (want " + strings.Join(AdminTypes, ", ") + ")"}
	}
	if len(values) == 0 {
		return nil, &RecordError{Record: Record{Name: name, Type: typ}, Reason: "no values (to remove the records, delete them)"}
	}
	var set []Record
	err := k.update(ctx, domain, func(st *zoneState, doc *ZoneDoc) error {
		owner, err := ownerName(st.origin, name)
		if err != nil {
			return &RecordError{Record: Record{Name: name, Type: typ}, Reason: "bad owner name", Err: err}
		}
		set = set[:0]
		for _, v := range values {
			nr, err := ParseRecord(st.origin, Record{Name: owner, Type: typ, TTL: ttl, Value: v})
			if err != nil {
				return err
			}
			if !slices.Contains(set, nr) {
				set = append(set, nr)
			}
		}
		kept := doc.Records[:0:0]
		for _, r := range doc.Records {
			if r.Name != owner || r.Type != typ {
				kept = append(kept, r)
			}
		}
		doc.Records = append(kept, set...)
		z := Zone{Origin: st.origin, Records: merge(st.auto, doc.Records)}
		return z.Validate()
	})
	if err != nil {
		return nil, err
	}
	return set, nil
}

// DeleteRecords removes the admin's records of domain with name and type, and
// value when it is not empty. It returns how many it removed; none is
// ErrNoRecord. Derived records cannot be deleted, only replaced.
func (k *KVZones) DeleteRecords(ctx context.Context, domain, name, typ, value string) (int, error) {
	typ = strings.ToUpper(strings.TrimSpace(typ))
	removed := 0
	err := k.update(ctx, domain, func(st *zoneState, doc *ZoneDoc) error {
		owner, err := ownerName(st.origin, name)
		if err != nil {
			return &RecordError{Record: Record{Name: name, Type: typ, Value: value}, Reason: "bad owner name", Err: err}
		}
		want := ""
		if strings.TrimSpace(value) != "" {
			nr, err := ParseRecord(st.origin, Record{Name: owner, Type: typ, Value: value})
			if err != nil {
				return err
			}
			want = nr.Value
		}
		kept := doc.Records[:0:0]
		removed = 0
		for _, r := range doc.Records {
			if r.Name == owner && r.Type == typ && (want == "" || r.Value == want) {
				removed++
				continue
			}
			kept = append(kept, r)
		}
		if removed == 0 {
			return fmt.Errorf("%w: %s %s %s in %s (only records added by the admin can be deleted)",
				ErrNoRecord, owner, typ, value, strings.TrimSuffix(st.origin, "."))
		}
		doc.Records = kept
		return nil
	})
	return removed, err
}

// update is the read-modify-write of one zone document: fn edits a copy, the
// writer computes the next serial from the served one (not the FSM, so every
// node applies the same bytes), and IfVersion makes a concurrent edit retry
// instead of being lost.
func (k *KVZones) update(ctx context.Context, domain string, fn func(st *zoneState, doc *ZoneDoc) error) error {
	for try := 0; ; try++ {
		st, err := k.load(domain)
		if err != nil {
			return err
		}
		doc := ZoneDoc{Records: slices.Clone(st.doc.Records)}
		if err := fn(st, &doc); err != nil {
			return err
		}
		doc.Serial = NextSerial(st.serial(), k.now())
		doc.AutoHash = st.autoHash
		raw, err := json.Marshal(doc)
		if err != nil {
			return fmt.Errorf("encode zone %s: %w", st.origin, err)
		}
		err = k.kv.KVApply(ctx, storage.KVOp{Op: storage.KVPut, NS: NSZones, Key: strings.TrimSuffix(st.origin, "."),
			Value: raw, IfVersion: storage.Version(st.version)})
		if errors.Is(err, storage.ErrKVConflict) && try < 5 {
			continue
		}
		if err != nil {
			return fmt.Errorf("store zone %s: %w", st.origin, err)
		}
		return nil
	}
}

// Reconcile persists what the derived state implies, and is run by the
// leader: a bump of the serial after the derived records changed (so later
// changes count up from the served serial), and the removal of documents of
// deleted domains (so a domain added again starts clean). Conflicts are left
// to the next run.
func (k *KVZones) Reconcile(ctx context.Context) error {
	states, err := k.loadAll()
	if err != nil {
		return err
	}
	hosted := map[string]bool{}
	var ops []storage.KVOp
	for _, st := range states {
		key := strings.TrimSuffix(st.origin, ".")
		hosted[key] = true
		if st.version != 0 && st.doc.AutoHash == st.autoHash {
			continue
		}
		doc := st.doc
		doc.Serial, doc.AutoHash = st.serial(), st.autoHash
		if doc.Records == nil {
			doc.Records = []Record{}
		}
		raw, err := json.Marshal(doc)
		if err != nil {
			return fmt.Errorf("encode zone %s: %w", key, err)
		}
		ops = append(ops, storage.KVOp{Op: storage.KVPut, NS: NSZones, Key: key, Value: raw, IfVersion: storage.Version(st.version)})
	}
	err = k.kv.KVList(NSZones, "", func(key string, _ []byte, version uint64) error {
		if !hosted[key] {
			ops = append(ops, storage.KVOp{Op: storage.KVDelete, NS: NSZones, Key: key, IfVersion: storage.Version(version)})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", NSZones, err)
	}
	var errs []error
	for _, op := range ops {
		// One op per batch: one domain's conflict must not hold up the others.
		if err := k.kv.KVApply(ctx, op); err != nil && !errors.Is(err, storage.ErrKVConflict) {
			errs = append(errs, fmt.Errorf("dns zone %s: %w", op.Key, err))
		}
	}
	return errors.Join(errs...)
}

// Published returns the records a domain whose DNS is hosted elsewhere must
// publish there: the zone without SOA, NS and the name server's addresses.
func (k *KVZones) Published(domain string) ([]Record, error) {
	z, err := k.Zone(domain)
	if err != nil {
		return nil, err
	}
	ns := "ns1." + z.Origin
	var out []Record
	for _, r := range z.Records {
		if r.Type == "SOA" || r.Type == "NS" || r.Name == ns && k.mailHost(z.Origin) != ns {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

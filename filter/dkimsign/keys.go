// Package dkimsign authenticates Tandem's outbound mail: per-domain DKIM
// keys (RSA-2048, RFC 6376 §3.3, and Ed25519, RFC 8463) kept in the
// replicated KV store with selector rotation, DKIM signing of outgoing
// messages, and the secure-signature link (SPEC S1, S2).
//
// KV namespaces owned by this package:
//
//	dkim.keys          "DOMAIN/SELECTOR" → KeyRecord (JSON). The DNS server
//	                   (protocols/dns) reads it to publish every key whose
//	                   state is "published" or "active" or "retired".
//	signature.domains  "DOMAIN" → SignatureDomain (JSON): domains opted in
//	                   to the secure signature.
//	signature.records  "TOKEN" → SignatureRecord (JSON): what was sent,
//	                   looked up by the verification page.
//
// All writes go through Raft (storage.KVApply) with IfVersion conditions, so
// two nodes or two goroutines never both create or rotate a key.
package dkimsign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/filter/auth"
	"github.com/tandemmail/tandem/storage"
)

// NSKeys is the KV namespace of DKIM keys.
const NSKeys = "dkim.keys"

// Key algorithms as written in KeyRecord.Algorithm (the a= tag of RFC 6376
// §3.5 and RFC 8463 §3).
const (
	AlgRSA     = "rsa-sha256"
	AlgEd25519 = "ed25519-sha256"
)

// Key states. A rotation creates "published" keys (in DNS, not signing);
// activating them makes them "active" and the previous keys "retired"
// (still in DNS so mail signed shortly before can be verified, then
// removed).
const (
	StatePublished = "published"
	StateActive    = "active"
	StateRetired   = "retired"
)

// KeyRecord is the stored form of one DKIM key. Its JSON shape is a fixed
// contract with the DNS server: do not rename fields.
type KeyRecord struct {
	Domain     string `json:"domain"`
	Selector   string `json:"selector"`
	Algorithm  string `json:"algorithm"`
	PrivatePEM string `json:"private_pem"`
	PublicTXT  string `json:"public_txt"`
	State      string `json:"state"`
	Created    int64  `json:"created"`
	Activated  int64  `json:"activated"`
	Retired    int64  `json:"retired"`

	version uint64 // KV version, for conditional updates
}

// Store is the part of *storage.Store the package uses.
type Store interface {
	KVApply(ctx context.Context, ops ...storage.KVOp) error
	KVGet(ns, key string) (value []byte, version uint64, ok bool, err error)
	KVList(ns, prefix string, fn func(key string, value []byte, version uint64) error) error
	KVRevision(ns string) uint64
	Domains() ([]storage.Domain, error)
	HasDomain(name string) bool
}

// Errors callers map to replies.
var (
	ErrNoDomain       = errors.New("dkim: domain is not hosted here")
	ErrNoKey          = errors.New("dkim: no such key")
	ErrPending        = errors.New("dkim: a rotation is already pending")
	ErrNotPublishable = errors.New("dkim: key is not in state published")
)

// SigningKey is an active key ready for signing.
type SigningKey struct {
	Domain, Selector, Algorithm string
	Key                         auth.Key
}

// Keys manages the DKIM keys of all hosted domains.
type Keys struct {
	st Store

	mu       sync.Mutex
	cacheRev uint64
	cache    map[string][]SigningKey // domain → parsed active keys
}

// NewKeys returns a key manager over st.
func NewKeys(st Store) *Keys {
	return &Keys{st: st}
}

func keyName(domain, selector string) string { return domain + "/" + selector }

func normDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// List returns the keys of one domain, or of all domains when domain is "",
// ordered by domain, then creation time, then selector.
func (k *Keys) List(domain string) ([]KeyRecord, error) {
	prefix := ""
	if domain != "" {
		prefix = normDomain(domain) + "/"
	}
	var out []KeyRecord
	err := k.st.KVList(NSKeys, prefix, func(key string, value []byte, version uint64) error {
		var r KeyRecord
		if err := json.Unmarshal(value, &r); err != nil {
			return fmt.Errorf("dkim key %s: %w", key, err)
		}
		r.version = version
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		if a.Created != b.Created {
			return a.Created < b.Created
		}
		return a.Selector < b.Selector
	})
	return out, nil
}

// selectorBase strips the algorithm letter: "t202611r" → "t202611".
func selectorBase(sel string) string {
	if len(sel) < 2 {
		return sel
	}
	return sel[:len(sel)-1]
}

// newPair generates an RSA-2048 and an Ed25519 key with fresh selectors
// "t" + yyyymm (+ "b", "c", ... when taken) + "r" / "e".
func newPair(domain, state string, existing []KeyRecord, now time.Time) ([]KeyRecord, error) {
	used := map[string]bool{}
	for _, r := range existing {
		used[selectorBase(r.Selector)] = true
	}
	base := "t" + now.UTC().Format("200601")
	cand := base
	for c := 'b'; used[cand]; c++ {
		if c > 'z' {
			return nil, fmt.Errorf("dkim: no free selector for %s in %s", domain, base)
		}
		cand = base + string(c)
	}
	var out []KeyRecord
	for _, spec := range []struct{ gen, alg, suffix string }{
		{auth.AlgRSA2048, AlgRSA, "r"}, {auth.AlgEd25519, AlgEd25519, "e"},
	} {
		key, err := auth.GenerateKey(spec.gen)
		if err != nil {
			return nil, err
		}
		pemb, err := key.MarshalPEM()
		if err != nil {
			return nil, err
		}
		txt, err := key.DNSRecord()
		if err != nil {
			return nil, err
		}
		r := KeyRecord{Domain: domain, Selector: cand + spec.suffix, Algorithm: spec.alg, PrivatePEM: string(pemb),
			PublicTXT: txt, State: state, Created: now.Unix()}
		if state == StateActive {
			r.Activated = now.Unix()
		}
		out = append(out, r)
	}
	return out, nil
}

func putOp(r KeyRecord, ifVersion uint64) (storage.KVOp, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return storage.KVOp{}, fmt.Errorf("dkim: encode key %s: %w", keyName(r.Domain, r.Selector), err)
	}
	return storage.KVOp{Op: storage.KVPut, NS: NSKeys, Key: keyName(r.Domain, r.Selector), Value: b,
		IfVersion: storage.Version(ifVersion)}, nil
}

func (k *Keys) write(ctx context.Context, recs []KeyRecord, versions []uint64) error {
	ops := make([]storage.KVOp, 0, len(recs))
	for i, r := range recs {
		op, err := putOp(r, versions[i])
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	return k.st.KVApply(ctx, ops...)
}

// Ensure gives domain an active key pair when it has no active key. It
// reports whether it created one. Keys are generated outside the FSM and
// written with IfVersion(0): when another node wrote the same selectors
// first, the batch fails with storage.ErrKVConflict and nothing changes.
func (k *Keys) Ensure(ctx context.Context, domain string, now time.Time) (bool, error) {
	domain = normDomain(domain)
	recs, err := k.List(domain)
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		if r.State == StateActive {
			return false, nil
		}
	}
	pair, err := newPair(domain, StateActive, recs, now)
	if err != nil {
		return false, err
	}
	if err := k.write(ctx, pair, []uint64{0, 0}); err != nil {
		return false, fmt.Errorf("dkim: store new keys of %s: %w", domain, err)
	}
	return true, nil
}

// Rotate creates the next key pair of domain in state "published": it is
// in DNS from now on but does not sign until activated (by Activate, or by
// Maintain once the publish delay has passed).
func (k *Keys) Rotate(ctx context.Context, domain string, now time.Time) ([]KeyRecord, error) {
	domain = normDomain(domain)
	if !k.st.HasDomain(domain) {
		return nil, fmt.Errorf("%w: %s", ErrNoDomain, domain)
	}
	recs, err := k.List(domain)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.State == StatePublished {
			return nil, fmt.Errorf("%w for %s (selector %s): activate it with 'tandem dkim activate %s %s' or wait for the publish delay",
				ErrPending, domain, r.Selector, domain, r.Selector)
		}
	}
	pair, err := newPair(domain, StatePublished, recs, now)
	if err != nil {
		return nil, err
	}
	if err := k.write(ctx, pair, []uint64{0, 0}); err != nil {
		return nil, fmt.Errorf("dkim: store new keys of %s: %w", domain, err)
	}
	return pair, nil
}

// Activate makes the published key selector of domain, and the published
// key of the other algorithm from the same rotation (the selector that
// differs only in its last letter), active; the keys they replace (active
// keys of the same algorithms) become retired.
func (k *Keys) Activate(ctx context.Context, domain, selector string, now time.Time) ([]KeyRecord, error) {
	domain = normDomain(domain)
	recs, err := k.List(domain)
	if err != nil {
		return nil, err
	}
	var target *KeyRecord
	for i := range recs {
		if recs[i].Selector == selector {
			target = &recs[i]
		}
	}
	if target == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoKey, keyName(domain, selector))
	}
	if target.State != StatePublished {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotPublishable, keyName(domain, selector), target.State)
	}
	base := selectorBase(selector)
	algs := map[string]bool{}
	var changed []KeyRecord
	var versions []uint64
	for _, r := range recs {
		if r.State == StatePublished && selectorBase(r.Selector) == base {
			algs[r.Algorithm] = true
			versions = append(versions, r.version)
			r.State, r.Activated = StateActive, now.Unix()
			changed = append(changed, r)
		}
	}
	for _, r := range recs {
		if r.State == StateActive && algs[r.Algorithm] {
			versions = append(versions, r.version)
			r.State, r.Retired = StateRetired, now.Unix()
			changed = append(changed, r)
		}
	}
	if err := k.write(ctx, changed, versions); err != nil {
		return nil, fmt.Errorf("dkim: activate %s: %w", keyName(domain, selector), err)
	}
	return changed, nil
}

// Maintain is the leader's periodic pass: every hosted domain without an
// active key gets one; published keys older than publishDelay become
// active; retired keys older than retireDelay are removed (and with them
// their DNS records); keys of domains no longer hosted are removed.
func (k *Keys) Maintain(ctx context.Context, now time.Time, publishDelay, retireDelay time.Duration) error {
	ds, err := k.st.Domains()
	if err != nil {
		return fmt.Errorf("dkim: list domains: %w", err)
	}
	hosted := map[string]bool{}
	var errs []error
	for _, d := range ds {
		name := normDomain(d.Name)
		hosted[name] = true
		if _, err := k.Ensure(ctx, name, now); err != nil {
			errs = append(errs, err)
		}
	}
	recs, err := k.List("")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	activated := map[string]bool{}
	for _, r := range recs {
		switch {
		case !hosted[r.Domain]:
			err = k.st.KVApply(ctx, storage.KVOp{Op: storage.KVDelete, NS: NSKeys, Key: keyName(r.Domain, r.Selector),
				IfVersion: storage.Version(r.version)})
		case r.State == StatePublished && !activated[r.Domain+"/"+selectorBase(r.Selector)] &&
			now.Sub(time.Unix(r.Created, 0)) >= publishDelay:
			activated[r.Domain+"/"+selectorBase(r.Selector)] = true
			_, err = k.Activate(ctx, r.Domain, r.Selector, now)
		case r.State == StateRetired && now.Sub(time.Unix(r.Retired, 0)) >= retireDelay:
			err = k.st.KVApply(ctx, storage.KVOp{Op: storage.KVDelete, NS: NSKeys, Key: keyName(r.Domain, r.Selector),
				IfVersion: storage.Version(r.version)})
		default:
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("dkim: maintain %s: %w", keyName(r.Domain, r.Selector), err))
		}
	}
	return errors.Join(errs...)
}

// Signers returns the parsed active keys of domain (nil when it has none).
// Parsed keys are cached until the namespace changes.
func (k *Keys) Signers(domain string) ([]SigningKey, error) {
	domain = normDomain(domain)
	rev := k.st.KVRevision(NSKeys)
	k.mu.Lock()
	if k.cache != nil && k.cacheRev == rev {
		s := k.cache[domain]
		k.mu.Unlock()
		return s, nil
	}
	k.mu.Unlock()
	recs, err := k.List("")
	if err != nil {
		return nil, err
	}
	cache := map[string][]SigningKey{}
	var errs []error
	for _, r := range recs {
		if r.State != StateActive {
			continue
		}
		key, err := auth.ParseKeyPEM([]byte(r.PrivatePEM))
		if err != nil {
			errs = append(errs, fmt.Errorf("dkim key %s: %w", keyName(r.Domain, r.Selector), err))
			continue
		}
		cache[r.Domain] = append(cache[r.Domain], SigningKey{Domain: r.Domain, Selector: r.Selector, Algorithm: r.Algorithm, Key: key})
	}
	k.mu.Lock()
	k.cache, k.cacheRev = cache, rev
	k.mu.Unlock()
	return cache[domain], errors.Join(errs...)
}

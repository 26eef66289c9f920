package outbound

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// GatewayNS is the replicated KV namespace of the gateway configuration:
// key = domain (lower case), value = GatewayDomain as JSON. It is owned
// by this package; the node reads it, the admin API writes it.
const GatewayNS = "gateway.domains"

// Recipient verification modes of a gateway domain.
const (
	VerifyCallout = "callout" // ask a backend (RCPT callout, cached)
	VerifyList    = "list"    // a static list of valid addresses
	VerifyNone    = "none"    // accept every address; the backend decides later
)

// MaxGatewayRecipients bounds a static recipient list (the KV value must
// stay under storage.MaxKVValue).
const MaxGatewayRecipients = 20000

// GatewayDomain is one gateway domain's configuration.
type GatewayDomain struct {
	Domain     string    `json:"domain"`
	Backends   []string  `json:"backends"`             // "host:port", in order of preference
	Verify     string    `json:"verify"`               // VerifyCallout, VerifyList or VerifyNone
	Recipients []string  `json:"recipients,omitempty"` // VerifyList: valid addresses, lower case
	Updated    time.Time `json:"updated"`
}

// Normalize checks g and puts it in its stored form: lower-case domain
// and recipients, sorted and de-duplicated, the default verify mode
// (callout). Every error names the field at fault.
func (g *GatewayDomain) Normalize() error {
	g.Domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(g.Domain), "."))
	if !validHostname(g.Domain) || !strings.Contains(g.Domain, ".") || slices.Contains(strings.Split(g.Domain, "."), "") {
		return fmt.Errorf("domain %q: not a domain name", g.Domain)
	}
	if err := ValidBackends(g.Backends); err != nil {
		return fmt.Errorf("backends: %w", err)
	}
	if g.Verify == "" {
		g.Verify = VerifyCallout
	}
	switch g.Verify {
	case VerifyCallout, VerifyNone:
		if len(g.Recipients) > 0 {
			return fmt.Errorf("recipients: only used with verify %q", VerifyList)
		}
	case VerifyList:
		if len(g.Recipients) == 0 {
			return errors.New("recipients: verify \"list\" needs at least one address")
		}
	default:
		return fmt.Errorf("verify %q: want callout, list or none", g.Verify)
	}
	if len(g.Recipients) > MaxGatewayRecipients {
		return fmt.Errorf("recipients: %d addresses, at most %d", len(g.Recipients), MaxGatewayRecipients)
	}
	seen := map[string]bool{}
	out := make([]string, 0, len(g.Recipients))
	for _, r := range g.Recipients {
		r = strings.ToLower(strings.TrimSpace(r))
		_, dom, ok := splitAddr(r)
		if !ok || strings.ContainsAny(r, " \t\r\n\x00<>,;") {
			return fmt.Errorf("recipients: %q is not an address", r)
		}
		if dom != g.Domain {
			return fmt.Errorf("recipients: %q is not in %s", r, g.Domain)
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	g.Recipients = out
	return nil
}

// HasRecipient reports whether addr is on the static list (case-blind).
func (g *GatewayDomain) HasRecipient(addr string) bool {
	addr = strings.ToLower(addr)
	for _, r := range g.Recipients {
		if r == addr {
			return true
		}
	}
	return false
}

// GatewayKV is the part of *storage.Store that reads the configuration.
type GatewayKV interface {
	KVGet(ns, key string) (value []byte, version uint64, ok bool, err error)
	KVList(ns, prefix string, fn func(key string, value []byte, version uint64) error) error
}

// LoadGateway reads one domain's configuration; ok is false when the
// domain is not a gateway domain.
func LoadGateway(kv GatewayKV, domain string) (g GatewayDomain, ok bool, err error) {
	v, _, ok, err := kv.KVGet(GatewayNS, strings.ToLower(domain))
	if err != nil || !ok {
		return g, false, err
	}
	if err := json.Unmarshal(v, &g); err != nil {
		return g, false, fmt.Errorf("gateway configuration of %s: %w", domain, err)
	}
	return g, true, nil
}

// ListGateways reads every gateway domain, by name.
func ListGateways(kv GatewayKV) ([]GatewayDomain, error) {
	out := []GatewayDomain{}
	err := kv.KVList(GatewayNS, "", func(key string, v []byte, _ uint64) error {
		var g GatewayDomain
		if err := json.Unmarshal(v, &g); err != nil {
			return fmt.Errorf("gateway configuration of %s: %w", key, err)
		}
		out = append(out, g)
		return nil
	})
	return out, err
}

var _ GatewayKV = (*storage.Store)(nil)

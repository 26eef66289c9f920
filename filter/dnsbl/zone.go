// Package dnsbl is the IP reputation stage: it asks DNS block lists
// (DNSBL) and allow lists (DNSWL) about the client's address (RFC 5782)
// and turns their answers into a connection verdict.
//
// It owns the KV namespace "filter.dnsbl": key "zones" holds the JSON list
// of configured zones ([]Zone). It writes nothing else; answers are cached
// in memory only (a bounded, TTL-respecting cache), never replicated.
//
// What it must not do: block authenticated clients (they passed AUTH and
// are judged by the firewall), or let a slow or broken list delay mail
// beyond the per-query timeout.
package dnsbl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
)

// KV names the stage owns.
const (
	Namespace = "filter.dnsbl"
	ZonesKey  = "zones"
)

// Zone kinds.
const (
	KindBlock = "block" // DNSBL: a hit adds Score (or rejects)
	KindAllow = "allow" // DNSWL: a hit subtracts Score and prevents rejects
)

// Zone is one configured list.
type Zone struct {
	Zone   string  `json:"zone"`             // e.g. "zen.spamhaus.org"
	Kind   string  `json:"kind"`             // block or allow
	Score  float64 `json:"score"`            // points; applied positive for block, negative for allow
	Reject bool    `json:"reject,omitempty"` // block lists only: a hit refuses the client
	// Match lists the answers that count as a hit: single addresses
	// ("127.0.0.2") or ranges ("127.0.0.2-127.0.0.255"). Empty: any
	// answer in 127.0.0.0/8 except the 127.255.255.0/24 error codes.
	Match []string `json:"match,omitempty"`

	ranges []addrRange
}

type addrRange struct{ lo, hi uint32 }

// DefaultScore applies when a zone's score is zero.
const DefaultScore = 3.0

// Normalize checks z and fills defaults; it returns a clear error for the
// admin.
func (z *Zone) Normalize() error {
	z.Zone = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(z.Zone)), ".")
	if z.Zone == "" {
		return errors.New("zone: a DNS name is required")
	}
	if len(z.Zone) > 200 {
		return fmt.Errorf("zone %q: longer than 200 characters (the query adds up to 64 labels)", z.Zone)
	}
	for _, l := range strings.Split(z.Zone, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("zone %q: empty or over-long label", z.Zone)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("zone %q: character %q not allowed in a DNS label", z.Zone, r)
			}
		}
	}
	switch z.Kind {
	case "":
		z.Kind = KindBlock
	case KindBlock, KindAllow:
	default:
		return fmt.Errorf("zone %s: kind %q must be block or allow", z.Zone, z.Kind)
	}
	if z.Reject && z.Kind == KindAllow {
		return fmt.Errorf("zone %s: an allow list cannot reject", z.Zone)
	}
	if z.Score < 0 {
		z.Score = -z.Score
	}
	if z.Score == 0 {
		z.Score = DefaultScore
	}
	if z.Score > 1000 {
		return fmt.Errorf("zone %s: score %g out of range (at most 1000)", z.Zone, z.Score)
	}
	z.ranges = z.ranges[:0]
	for _, m := range z.Match {
		r, err := parseRange(m)
		if err != nil {
			return fmt.Errorf("zone %s: %w", z.Zone, err)
		}
		z.ranges = append(z.ranges, r)
	}
	return nil
}

func parseRange(s string) (addrRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err := parseV4(lo)
	if err != nil {
		return addrRange{}, fmt.Errorf("match %q: %w", s, err)
	}
	b := a
	if isRange {
		if b, err = parseV4(hi); err != nil {
			return addrRange{}, fmt.Errorf("match %q: %w", s, err)
		}
	}
	if b < a {
		return addrRange{}, fmt.Errorf("match %q: range ends before it starts", s)
	}
	return addrRange{a, b}, nil
}

func parseV4(s string) (uint32, error) {
	ip := net.ParseIP(strings.TrimSpace(s)).To4()
	if ip == nil {
		return 0, fmt.Errorf("%q is not an IPv4 address", s)
	}
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3]), nil
}

// hit reports whether an answer counts. RFC 5782 §2.1: answers are in
// 127.0.0.0/8; 127.255.255.0/24 is what Spamhaus and others return for
// refused or malformed queries (e.g. through a public resolver), which
// must never count as a listing.
func (z *Zone) hit(a net.IP) bool {
	v4 := a.To4()
	if v4 == nil || isErrorCode(v4) {
		return false
	}
	u := uint32(v4[0])<<24 | uint32(v4[1])<<16 | uint32(v4[2])<<8 | uint32(v4[3])
	if len(z.ranges) == 0 {
		return v4[0] == 127
	}
	for _, r := range z.ranges {
		if u >= r.lo && u <= r.hi {
			return true
		}
	}
	return false
}

func isErrorCode(v4 net.IP) bool { return v4[0] == 127 && v4[1] == 255 && v4[2] == 255 }

// ParseZones decodes and checks the stored configuration.
func ParseZones(raw []byte) ([]Zone, error) {
	var zs []Zone
	if len(raw) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(raw, &zs); err != nil {
		return nil, fmt.Errorf("dnsbl zones: %w", err)
	}
	seen := map[string]bool{}
	for i := range zs {
		if err := zs[i].Normalize(); err != nil {
			return nil, err
		}
		if seen[zs[i].Zone] {
			return nil, fmt.Errorf("zone %s listed twice", zs[i].Zone)
		}
		seen[zs[i].Zone] = true
	}
	return zs, nil
}

// QueryName is the name asked for ip in zone (RFC 5782 §2.1 for IPv4:
// octets reversed; §2.4 for IPv6: 32 nibbles reversed).
func QueryName(ip net.IP, zone string) string {
	if v4 := ip.To4(); v4 != nil {
		return fmt.Sprintf("%d.%d.%d.%d.%s.", v4[3], v4[2], v4[1], v4[0], zone)
	}
	v6 := ip.To16()
	if v6 == nil {
		return ""
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := len(v6) - 1; i >= 0; i-- {
		b.WriteByte(hex[v6[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[v6[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString(zone)
	b.WriteByte('.')
	return b.String()
}

// Package greylist is the greylisting stage (the triplet method): the
// first attempt of an unknown (client network, sender, recipient) is
// refused with 451 4.7.1; a retry after the delay and before the expiry
// passes and is remembered. Real MTAs retry (RFC 5321 §4.5.4.1); most
// spam software does not.
//
// KV namespaces it owns:
//   - "filter.greylist", key "config": the Settings document (JSON);
//   - "greylist": "t/<hash>" one Triplet per (network, sender, recipient)
//     and "n/<network>" one Network record per client network that passed.
//
// Write volume: a greylist must not turn every incoming message into a
// Raft entry. It writes only when a triplet is first seen, when it passes,
// and at most once a day to extend a passed triplet; everything else is a
// local read. Writes are buffered and applied as one KV batch per flush
// interval (1 s by default), so the Raft log sees at most one greylisting
// entry per second whatever the mail rate; a spam wave of N new triplets a
// second costs N puts of about 200 bytes in that entry. Losing a buffered
// write (a crash within the interval) only greylists that sender again.
// Expired records are deleted by a sweep once an hour.
package greylist

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// KV names.
const (
	ConfigNamespace = "filter.greylist"
	ConfigKey       = "config"
	Namespace       = "greylist"
)

// Defaults.
const (
	DefaultDelay      = 5 * time.Minute
	DefaultExpiry     = 24 * time.Hour
	DefaultPassValid  = 36 * 24 * time.Hour
	DefaultAutoPasses = 5
)

// Settings is the stored configuration.
type Settings struct {
	// Enabled turns greylisting on for every local recipient; otherwise
	// only for recipients in Domains.
	Enabled bool     `json:"enabled"`
	Domains []string `json:"domains,omitempty"`
	// Delay is how long a new triplet must wait before a retry passes;
	// Expiry how long after the first attempt a retry is still accepted;
	// PassValid how long a passed triplet passes at once. Seconds; 0 is
	// the default (300, 86400, 36 days).
	DelaySeconds     int64 `json:"delay_seconds,omitempty"`
	ExpirySeconds    int64 `json:"expiry_seconds,omitempty"`
	PassValidSeconds int64 `json:"pass_valid_seconds,omitempty"`
	// AutoWhitelistPasses: a client network whose triplets passed this
	// many times passes at once (0: default 5; negative: never).
	AutoWhitelistPasses int `json:"auto_whitelist_passes,omitempty"`
}

// Normalize checks s and lower-cases its domains.
func (s *Settings) Normalize() error {
	for _, v := range []struct {
		name string
		n    int64
	}{{"delay_seconds", s.DelaySeconds}, {"expiry_seconds", s.ExpirySeconds}, {"pass_valid_seconds", s.PassValidSeconds}} {
		if v.n < 0 || v.n > 400*24*3600 {
			return fmt.Errorf("greylist %s %d: must be between 0 and 400 days", v.name, v.n)
		}
	}
	if s.Expiry() <= s.Delay() {
		return fmt.Errorf("greylist expiry (%v) must be longer than the delay (%v)", s.Expiry(), s.Delay())
	}
	seen := map[string]bool{}
	out := s.Domains[:0]
	for _, d := range s.Domains {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if d == "" || strings.ContainsAny(d, "@ \t/") || !strings.Contains(d, ".") && d != "localhost" {
			return fmt.Errorf("greylist domain %q: not a domain name", d)
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	s.Domains = out
	return nil
}

func secondsOr(n int64, def time.Duration) time.Duration {
	if n <= 0 {
		return def
	}
	return time.Duration(n) * time.Second
}

// Delay is the wait before a retry passes.
func (s *Settings) Delay() time.Duration { return secondsOr(s.DelaySeconds, DefaultDelay) }

// Expiry is how long a first attempt stays retryable.
func (s *Settings) Expiry() time.Duration { return secondsOr(s.ExpirySeconds, DefaultExpiry) }

// PassValid is how long a passed triplet passes at once.
func (s *Settings) PassValid() time.Duration { return secondsOr(s.PassValidSeconds, DefaultPassValid) }

// AutoPasses is the passes after which a network is whitelisted (0: never).
func (s *Settings) AutoPasses() int {
	switch {
	case s.AutoWhitelistPasses < 0:
		return 0
	case s.AutoWhitelistPasses == 0:
		return DefaultAutoPasses
	}
	return s.AutoWhitelistPasses
}

// AppliesTo reports whether mail to rcpt is greylisted.
func (s *Settings) AppliesTo(rcpt string) bool {
	if s.Enabled {
		return true
	}
	_, dom, _ := strings.Cut(rcpt, "@")
	dom = strings.ToLower(dom)
	for _, d := range s.Domains {
		if d == dom {
			return true
		}
	}
	return false
}

// ParseSettings decodes the stored document (nil: defaults, off).
func ParseSettings(raw []byte) (Settings, error) {
	var s Settings
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &s); err != nil {
			return Settings{}, fmt.Errorf("greylist settings: %w", err)
		}
	}
	if err := s.Normalize(); err != nil {
		return Settings{}, err
	}
	return s, nil
}

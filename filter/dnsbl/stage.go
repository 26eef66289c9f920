package dnsbl

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/filter"
	"golang.org/x/sync/singleflight"
)

// ConfigSource is the part of the replicated KV store the stage reads.
type ConfigSource interface {
	KVGet(ns, key string) (value []byte, version uint64, ok bool, err error)
	KVRevision(ns string) uint64
}

// Config configures the stage.
type Config struct {
	KV       ConfigSource // required
	Resolver Resolver     // required
	// Exempt reports clients the admin trusts (the global IP allow
	// list); they are not looked up. nil: none.
	Exempt  func(ip net.IP) bool
	Timeout time.Duration
	// CacheSize bounds the answer cache (entries); default 50,000.
	CacheSize int
	Logger    *slog.Logger
	Now       func() time.Time
}

// Stage is a filter.ConnCheck.
type Stage struct {
	cfg   Config
	cache *cache
	// inflight joins concurrent questions for one name: a burst of
	// connections from one client asks each list once.
	inflight singleflight.Group

	mu    sync.Mutex
	rev   uint64
	zones []Zone
}

var _ filter.ConnCheck = (*Stage)(nil)

// New returns the stage.
func New(cfg Config) *Stage {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 50000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Stage{cfg: cfg, cache: newCache(cfg.CacheSize)}
}

// Zones returns the configured zones, reloading them when the namespace
// changed since the last call.
func (s *Stage) Zones() []Zone {
	rev := s.cfg.KV.KVRevision(Namespace)
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev == s.rev && s.zones != nil {
		return s.zones
	}
	raw, _, _, err := s.cfg.KV.KVGet(Namespace, ZonesKey)
	if err != nil {
		s.cfg.Logger.Warn("dnsbl: read zones", "err", err)
		return s.zones
	}
	zs, err := ParseZones(raw)
	if err != nil {
		// Writers validate; a bad document keeps the last good list.
		s.cfg.Logger.Warn("dnsbl: stored zones are invalid, keeping the previous list", "err", err)
		return s.zones
	}
	if zs == nil {
		zs = []Zone{}
	}
	s.rev, s.zones = rev, zs
	return zs
}

// Hit is one zone that lists the address.
type Hit struct {
	Zone   *Zone
	Answer net.IP
}

// Lookup asks every zone about ip in parallel, each within the timeout.
// Zones that fail or time out are logged and skipped: an unreachable list
// must not stop mail.
func (s *Stage) Lookup(ctx context.Context, ip net.IP) []Hit {
	zones := s.Zones()
	if len(zones) == 0 || ip == nil {
		return nil
	}
	hits := make([][]net.IP, len(zones))
	var wg sync.WaitGroup
	for i := range zones {
		name := QueryName(ip, zones[i].Zone)
		if name == "" {
			continue
		}
		if ips, ok := s.cache.get(name, s.cfg.Now()); ok {
			hits[i] = ips
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err, _ := s.inflight.Do(name, func() (any, error) {
				// Not the caller's context: a joined question must not
				// fail because the first asker hung up.
				qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
				defer cancel()
				ips, ttl, err := s.cfg.Resolver.LookupA(qctx, name)
				if err != nil {
					return nil, err
				}
				s.cache.put(name, ips, ttl, s.cfg.Now())
				return ips, nil
			})
			if err != nil {
				s.cfg.Logger.Warn("dnsbl: lookup failed", "zone", zones[i].Zone, "client_ip", ip.String(), "err", err)
				return
			}
			hits[i] = res.([]net.IP)
		}()
	}
	wg.Wait()
	var out []Hit
	for i := range zones {
		for _, a := range hits[i] {
			if a4 := a.To4(); a4 != nil && isErrorCode(a4) {
				s.cfg.Logger.Warn("dnsbl: zone refused the query (error code answer); check the resolver or the list's terms",
					"zone", zones[i].Zone, "answer", a.String())
				break
			}
			if zones[i].hit(a) {
				out = append(out, Hit{Zone: &zones[i], Answer: a})
				break
			}
		}
	}
	return out
}

// CheckConn implements filter.ConnCheck.
func (s *Stage) CheckConn(ctx context.Context, env *filter.Envelope) filter.Verdict {
	v := filter.Verdict{Stage: "dnsbl", Action: filter.ActionAccept}
	if env.AuthAccountID != 0 {
		v.Reason = "authenticated client"
		return v
	}
	if s.cfg.Exempt != nil && s.cfg.Exempt(env.ClientIP) {
		v.Reason = "client on the allow list"
		return v
	}
	hits := s.Lookup(ctx, env.ClientIP)
	if len(hits) == 0 {
		return v
	}
	allowed := false
	for _, h := range hits {
		if h.Zone.Kind == KindAllow {
			allowed = true
		}
	}
	var reasons []string
	var rejectBy string
	for _, h := range hits {
		switch h.Zone.Kind {
		case KindAllow:
			v.Score -= h.Zone.Score
			reasons = append(reasons, fmt.Sprintf("%s allows (%s)", h.Zone.Zone, h.Answer))
		default:
			v.Score += h.Zone.Score
			reasons = append(reasons, fmt.Sprintf("%s lists (%s)", h.Zone.Zone, h.Answer))
			if h.Zone.Reject && !allowed && rejectBy == "" {
				rejectBy = h.Zone.Zone
			}
		}
	}
	if rejectBy != "" {
		v.Action = filter.ActionReject
		v.Reason = fmt.Sprintf("Client host %s blocked using %s", env.ClientIP, rejectBy)
		return v
	}
	v.Reason = strings.Join(reasons, "; ")
	if v.Score > 0 {
		v.Action = filter.ActionTag
	}
	return v
}

// Allowed reports whether an allow list (DNSWL) names ip; greylisting lets
// such clients pass at once. The answers come from the cache when the
// connection check asked already.
func (s *Stage) Allowed(ctx context.Context, ip net.IP) bool {
	for _, h := range s.Lookup(ctx, ip) {
		if h.Zone.Kind == KindAllow {
			return true
		}
	}
	return false
}

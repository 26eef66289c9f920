package lists

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
)

// Store is the part of *storage.Store the stages use.
type Store interface {
	KVApply(ctx context.Context, ops ...storage.KVOp) error
	KVGet(ns, key string) (value []byte, version uint64, ok bool, err error)
	KVList(ns, prefix string, fn func(key string, value []byte, version uint64) error) error
	KVRevision(ns string) uint64
	ResolveRecipient(addr string) ([]uint64, error)
	AccountByID(id uint64) (storage.Account, error)
}

// accounts lists the addresses (lower case) of the accounts mail to rcpt
// is delivered to: the account itself, or an alias's targets.
func accounts(store Store, rcpt string) []string {
	ids, err := store.ResolveRecipient(rcpt)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if a, err := store.AccountByID(id); err == nil {
			out = append(out, strings.ToLower(a.Address))
		}
	}
	return out
}

// AllowScore is the score of an allow-list hit: far below any spam
// threshold, so the spam stage delivers the message to INBOX.
const AllowScore = -100.0

// nsCache keeps a whole namespace parsed in memory and reloads it when its
// KV revision changes (lists and rules are small and read on every
// message).
type nsCache[T any] struct {
	store Store
	ns    string
	parse func(raw []byte) (T, error)
	log   *slog.Logger

	mu   sync.Mutex
	rev  uint64
	docs map[string]T
}

func (c *nsCache[T]) get() map[string]T {
	rev := c.store.KVRevision(c.ns)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.docs != nil && rev == c.rev {
		return c.docs
	}
	docs := map[string]T{}
	err := c.store.KVList(c.ns, "", func(key string, value []byte, _ uint64) error {
		d, err := c.parse(value)
		if err != nil {
			// Writers validate; skip a bad document rather than all.
			c.log.Warn("filter lists: invalid stored document", "ns", c.ns, "key", key, "err", err)
			return nil
		}
		docs[key] = d
		return nil
	})
	if err != nil {
		c.log.Warn("filter lists: reload", "ns", c.ns, "err", err)
		if c.docs != nil {
			return c.docs
		}
	}
	c.rev, c.docs = rev, docs
	return docs
}

type compiled struct{ block, allow matcher }

// Stage is the allow/block list stage: a filter.ConnCheck for the global
// IP lists and a filter.EnvelopeCheck for everything per recipient.
type Stage struct {
	store Store
	log   *slog.Logger
	lists nsCache[compiled]
}

var (
	_ filter.ConnCheck     = (*Stage)(nil)
	_ filter.EnvelopeCheck = (*Stage)(nil)
)

// NewStage returns the list stage.
func NewStage(store Store, log *slog.Logger) *Stage {
	if log == nil {
		log = slog.Default()
	}
	s := &Stage{store: store, log: log}
	s.lists = nsCache[compiled]{store: store, ns: Namespace, log: log, parse: func(raw []byte) (compiled, error) {
		l, err := ParseLists(raw)
		if err != nil {
			return compiled{}, err
		}
		return compiled{block: compile(l.Block), allow: compile(l.Allow)}, nil
	}}
	return s
}

// CheckConn applies the global IP lists, before anything else is said.
func (s *Stage) CheckConn(ctx context.Context, env *filter.Envelope) filter.Verdict {
	v := filter.Verdict{Stage: "lists", Action: filter.ActionAccept}
	if env.AuthAccountID != 0 {
		return v
	}
	g, ok := s.lists.get()[GlobalScope]
	if !ok {
		return v
	}
	if e, ok := g.allow.ip(env.ClientIP); ok {
		v.Score, v.Reason = AllowScore, fmt.Sprintf("client %s on the global allow list (%s)", env.ClientIP, e)
		return v
	}
	if e, ok := g.block.ip(env.ClientIP); ok {
		v.Action, v.Reason = filter.ActionReject, fmt.Sprintf("Client host %s is blocked (%s)", env.ClientIP, e)
	}
	return v
}

// decision is what the lists say about a sender to a recipient.
type decision struct {
	allow, block bool
	byIP         bool // the client's address matched, not the sender
	scope, entry string
}

// decide walks the scopes from the most specific; the first that matches
// decides.
func (s *Stage) decide(env *filter.Envelope, rcpt string) decision {
	docs := s.lists.get()
	if len(docs) == 0 {
		return decision{}
	}
	from := strings.ToLower(env.From)
	var scopes []string
	for _, a := range accounts(s.store, rcpt) {
		scopes = append(scopes, UserScope(a))
	}
	if _, dom, ok := strings.Cut(rcpt, "@"); ok {
		scopes = append(scopes, DomainScope(dom))
	}
	scopes = append(scopes, GlobalScope)
	for _, sc := range scopes {
		c, ok := docs[sc]
		if !ok {
			continue
		}
		ipToo := sc != GlobalScope // the global IP lists ran at connect
		for _, m := range []struct {
			mt    *matcher
			allow bool
		}{{&c.allow, true}, {&c.block, false}} {
			if e, hit := m.mt.sender(from); hit {
				return decision{allow: m.allow, block: !m.allow, scope: sc, entry: e}
			}
			if !ipToo {
				continue
			}
			if e, hit := m.mt.ip(env.ClientIP); hit {
				return decision{allow: m.allow, block: !m.allow, byIP: true, scope: sc, entry: e}
			}
		}
	}
	return decision{}
}

// AllowedIP reports whether the global allow list names ip (the DNSBL
// stage does not look such clients up).
func (s *Stage) AllowedIP(ip net.IP) bool {
	g, ok := s.lists.get()[GlobalScope]
	if !ok {
		return false
	}
	_, hit := g.allow.ip(ip)
	return hit
}

// Allowed reports whether the lists allow mail from env's sender and
// client to rcpt (greylisting lets such mail pass at once).
func (s *Stage) Allowed(env *filter.Envelope, rcpt string) bool {
	return s.AllowedIP(env.ClientIP) || s.decide(env, rcpt).allow
}

// CheckEnvelope applies the sender lists and the per-domain and per-user
// IP lists for one recipient: a block refuses this recipient (550 5.7.1),
// an allow scores AllowScore.
func (s *Stage) CheckEnvelope(ctx context.Context, env *filter.Envelope, rcpt string) filter.Verdict {
	v := filter.Verdict{Stage: "lists", Action: filter.ActionAccept}
	if env.AuthAccountID != 0 {
		return v
	}
	d := s.decide(env, rcpt)
	what := "sender <" + env.From + ">"
	if d.byIP {
		what = "client " + env.ClientIP.String()
	}
	switch {
	case d.block:
		v.Action = filter.ActionReject
		v.Reason = fmt.Sprintf("Mail from %s to <%s> is blocked by the %s list", what, rcpt, scopeName(d.scope))
		s.log.InfoContext(ctx, "lists: blocked", "msg_id", env.ID, "scope", d.scope, "entry", d.entry, "rcpt", rcpt)
	case d.allow:
		v.Score = AllowScore
		v.Reason = fmt.Sprintf("%s allowed by the %s list (%s)", what, scopeName(d.scope), d.entry)
	}
	return v
}

func scopeName(scope string) string {
	switch {
	case scope == GlobalScope:
		return "global"
	case strings.HasPrefix(scope, "domain/"):
		return "domain"
	}
	return "recipient's personal"
}

package node

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/protocols/outbound"
	"github.com/tandemmail/tandem/storage"
)

// Mail gateway mode (SPEC M9). A gateway domain is a hosted domain whose
// configuration sits in the replicated KV namespace outbound.GatewayNS
// ("gateway.domains", key = domain, JSON outbound.GatewayDomain). Its
// mail is accepted from anyone (it is our MX), filtered like any mail, and
// queued for its backend hosts instead of being stored. Recipients are
// checked at RCPT against a static list, or by asking a backend (callout)
// with the answers cached in memory: the cache is per node and short-lived
// by design, a backend's user list is its own state, not ours to
// replicate.

// calloutTimeout bounds one recipient verification, all backends included.
const calloutTimeout = 30 * time.Second

// maxCallouts bounds the verifications running at once on a node, so a
// dictionary attack (many unknown addresses) cannot turn this node into a
// flood of connections against the backends; a recipient that waits more
// than calloutQueueWait for a turn gets 451 and is retried by its sender.
const (
	maxCallouts      = 32
	calloutQueueWait = 5 * time.Second
)

// gatewayRouter implements filter.Gateway.
type gatewayRouter struct {
	store  *storage.Store
	engine *outbound.Engine
	cache  *calloutCache
	now    func() time.Time
	slots  chan struct{} // maxCallouts
}

var _ filter.Gateway = (*gatewayRouter)(nil)

func (n *Node) gatewayRouter(e *outbound.Engine) *gatewayRouter {
	pos, neg, size := n.cfg.GatewayCalloutPositiveTTL, n.cfg.GatewayCalloutNegativeTTL, n.cfg.GatewayCalloutCacheSize
	if pos <= 0 {
		pos = time.Hour
	}
	if neg <= 0 {
		neg = 10 * time.Minute
	}
	if size <= 0 {
		size = 10000
	}
	return &gatewayRouter{store: n.store, engine: e, cache: newCalloutCache(size, pos, neg), now: time.Now,
		slots: make(chan struct{}, maxCallouts)}
}

// config returns the gateway configuration of addr's domain, if it is a
// gateway domain that is still hosted here.
func (g *gatewayRouter) config(addr string) (outbound.GatewayDomain, bool, error) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return outbound.GatewayDomain{}, false, nil
	}
	domain := strings.ToLower(addr[i+1:])
	cfg, ok, err := outbound.LoadGateway(g.store, domain)
	if err != nil || !ok {
		return cfg, false, err
	}
	if !g.store.HasDomain(domain) {
		// A gateway domain must be hosted; once it is removed its mail
		// is no longer ours to accept.
		return cfg, false, nil
	}
	return cfg, true, nil
}

func (g *gatewayRouter) GatewayRecipient(ctx context.Context, env *filter.Envelope, addr string) (bool, error) {
	cfg, ok, err := g.config(addr)
	if err != nil {
		return true, err // answered 451 by the pipeline
	}
	if !ok {
		return false, nil
	}
	unknown := &filter.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Msg: "No such user here"}
	switch cfg.Verify {
	case outbound.VerifyNone:
		return true, nil
	case outbound.VerifyList:
		if cfg.HasRecipient(addr) {
			return true, nil
		}
		return true, unknown
	}
	key := strings.ToLower(addr) + " " + strings.Join(cfg.Backends, ",")
	if valid, hit := g.cache.get(key, g.now()); hit {
		if valid {
			return true, nil
		}
		return true, unknown
	}
	if g.slots != nil {
		wait := time.NewTimer(calloutQueueWait)
		defer wait.Stop()
		select {
		case g.slots <- struct{}{}:
			defer func() { <-g.slots }()
		case <-wait.C:
			return true, &filter.Reject{Code: 451, Enhanced: [3]int{4, 4, 3}, Msg: "Too many recipient verifications in progress, try again later"}
		case <-ctx.Done():
			return true, &filter.Reject{Code: 451, Enhanced: [3]int{4, 4, 3}, Msg: "Recipient cannot be verified now, try again later", Err: ctx.Err()}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, calloutTimeout)
	defer cancel()
	res, err := g.engine.Callout(cctx, cfg.Backends, addr)
	if err != nil {
		// RFC 3463 §3.5 X.4.3: routing server failure; the sender retries.
		return true, &filter.Reject{Code: 451, Enhanced: [3]int{4, 4, 3}, Msg: "Recipient cannot be verified now, try again later", Err: err}
	}
	g.cache.put(key, res.Valid, g.now())
	if !res.Valid {
		unknown.Err = fmt.Errorf("backend %s: %s", res.Backend, res.Reply)
		return true, unknown
	}
	return true, nil
}

func (g *gatewayRouter) Relay(ctx context.Context, env *filter.Envelope, rcpts []string, blob *storage.Blob) error {
	relay := map[string][]string{}
	for _, r := range rcpts {
		cfg, ok, err := g.config(r)
		if err != nil {
			return err
		}
		if !ok {
			// Reconfigured between RCPT and the end of DATA: the sender
			// tries again and gets the new answer.
			return &filter.Reject{Code: 451, Enhanced: [3]int{4, 3, 0}, Msg: "Gateway configuration changed, try again later"}
		}
		relay[r] = cfg.Backends
	}
	return g.engine.EnqueueRelay(ctx, env, rcpts, relay, blob)
}

// calloutCache remembers backend answers: positive ones for pos, negative
// ones for neg, at most size of them (least recently used out first).
type calloutCache struct {
	mu       sync.Mutex
	size     int
	pos, neg time.Duration
	order    *list.List // of *calloutEntry, most recent first
	byKey    map[string]*list.Element
}

type calloutEntry struct {
	key     string
	valid   bool
	expires time.Time
}

func newCalloutCache(size int, pos, neg time.Duration) *calloutCache {
	return &calloutCache{size: size, pos: pos, neg: neg, order: list.New(), byKey: map[string]*list.Element{}}
}

func (c *calloutCache) get(key string, now time.Time) (valid, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.byKey[key]
	if el == nil {
		return false, false
	}
	ce := el.Value.(*calloutEntry)
	if !now.Before(ce.expires) {
		c.order.Remove(el)
		delete(c.byKey, key)
		return false, false
	}
	c.order.MoveToFront(el)
	return ce.valid, true
}

func (c *calloutCache) put(key string, valid bool, now time.Time) {
	ttl := c.neg
	if valid {
		ttl = c.pos
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.byKey[key]; el != nil {
		ce := el.Value.(*calloutEntry)
		ce.valid, ce.expires = valid, now.Add(ttl)
		c.order.MoveToFront(el)
		return
	}
	c.byKey[key] = c.order.PushFront(&calloutEntry{key: key, valid: valid, expires: now.Add(ttl)})
	for c.order.Len() > c.size {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.byKey, old.Value.(*calloutEntry).key)
	}
}

// len is the number of cached answers (tests).
func (c *calloutCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// engineBouncer is the admin API's Bouncer: the engine starts with the
// mail services, after the admin socket.
type engineBouncer struct{ n *Node }

func (b engineBouncer) Bounce(ctx context.Context, id, reason string) error {
	e := b.n.outbound.Load()
	if e == nil {
		return errors.New("the outbound engine is not running on this node")
	}
	return e.Bounce(ctx, id, reason)
}

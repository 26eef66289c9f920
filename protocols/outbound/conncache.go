package outbound

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// maxConnUses bounds the transactions one connection carries.
const maxConnUses = 100

// connCache keeps connections that ended a transaction cleanly, per
// destination, for a short idle time: the next message to the same
// destination skips connect, greeting, EHLO and STARTTLS (as Postfix's
// connection cache does under load). A cached connection is tested with
// RSET before it is used (RFC 5321 §4.1.1.5).
type connCache struct {
	mu     sync.Mutex
	idle   map[string][]*idleConn
	closed bool
}

type idleConn struct {
	c     *smtpConn
	uses  int
	timer *time.Timer
}

// put caches c for key; false if it was not taken (then the caller ends it).
func (cc *connCache) put(key string, c *smtpConn, uses, limit int, idle time.Duration) bool {
	if idle <= 0 || uses >= maxConnUses {
		return false
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed || len(cc.idle[key]) >= limit {
		return false
	}
	if cc.idle == nil {
		cc.idle = map[string][]*idleConn{}
	}
	ic := &idleConn{c: c, uses: uses}
	ic.timer = time.AfterFunc(idle, func() {
		if cc.remove(key, ic) {
			ic.c.quit()
			ic.c.nc.Close()
		}
	})
	cc.idle[key] = append(cc.idle[key], ic)
	return true
}

// remove takes ic out of the cache if it is still there.
func (cc *connCache) remove(key string, ic *idleConn) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	l := cc.idle[key]
	for i, x := range l {
		if x == ic {
			cc.idle[key] = append(l[:i:i], l[i+1:]...)
			return true
		}
	}
	return false
}

// idleCount is the number of connections cached for key.
func (cc *connCache) idleCount(key string) int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.idle[key])
}

// get takes the most recently cached connection for key.
func (cc *connCache) get(key string) *idleConn {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	l := cc.idle[key]
	if len(l) == 0 {
		return nil
	}
	ic := l[len(l)-1]
	cc.idle[key] = l[:len(l)-1]
	ic.timer.Stop()
	return ic
}

// closeAll ends every cached connection; if final, later puts are
// refused.
func (cc *connCache) closeAll(final bool) {
	cc.mu.Lock()
	all := cc.idle
	cc.idle = nil
	cc.closed = cc.closed || final
	cc.mu.Unlock()
	for _, l := range all {
		for _, ic := range l {
			ic.timer.Stop()
			ic.c.quit()
			ic.c.nc.Close()
		}
	}
}

// keep caches a connection after a clean transaction, or ends it.
func (e *Engine) keep(d destination, c *smtpConn, uses int) {
	if !e.cache.put(d.Name, c, uses, e.cfg.MaxConcurrency, e.cfg.ConnReuseIdle) {
		c.quit()
		c.nc.Close()
	}
}

// reuse runs the transaction on a cached connection; ok is false when
// there was none or it no longer works (the caller then connects anew).
func (e *Engine) reuse(ctx context.Context, qe storage.QueueEntry, d destination, rec *recorder) (map[string]rcptOutcome, bool) {
	ic := e.cache.get(d.Name)
	if ic == nil {
		return nil, false
	}
	c := ic.c
	c.rec = rec
	rec.note(fmt.Sprintf("reusing the connection to %s %s (transaction %d on it)", c.host, c.addr, ic.uses+1))
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	r, err := c.cmd("RSET", e.cfg.Timeouts.Command)
	if err != nil || r.Code != 250 {
		stop()
		c.nc.Close()
		rec.note("the cached connection no longer works; connecting anew")
		return nil, false
	}
	rec.tls(c.tlsDesc + " (reused connection)")
	res := e.transaction(c, qe, d, c.host)
	rec.t.Addresses = append(rec.t.Addresses, AddressTry{Host: c.host, Addr: c.addr})
	if stop() && res.keep && ctx.Err() == nil {
		rec.kept = append(rec.kept, keptConn{d, c, ic.uses + 1})
	} else {
		c.nc.Close()
	}
	return res.results, true
}

package dnsd

import (
	"net/netip"
	"sync"
	"time"
)

// Response rate limiting: a token bucket per client network (/24 for IPv4, /56 for
// IPv6), as in BIND's RRL, so spoofed-source floods cannot turn the server into an
// amplifier. Over the limit most responses are dropped; every slip-th one is sent
// as an empty TC=1 answer, so a real client behind the flood retries over TCP, which
// cannot be spoofed and is not limited. Only UDP is limited.

type rateAction int

const (
	rateAllow rateAction = iota
	rateDrop
	rateSlip
)

const (
	rateShards     = 64
	rateShardLimit = 1024 // networks tracked per shard; bounds memory under a spoofed flood
)

type rateLimiter struct {
	rate   float64 // responses per second per network, also the burst
	slip   int
	now    func() time.Time
	shards [rateShards]rateShard
}

type rateShard struct {
	mu sync.Mutex
	m  map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
	over   int // responses over the limit, for slip
}

func newRateLimiter(rate, slip int, now func() time.Time) *rateLimiter {
	rl := &rateLimiter{rate: float64(rate), slip: slip, now: now}
	for i := range rl.shards {
		rl.shards[i].m = map[netip.Prefix]*bucket{}
	}
	return rl
}

// clientNet is the network a client's responses are counted against.
func clientNet(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 56
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

func (rl *rateLimiter) check(client netip.Addr) rateAction {
	p := clientNet(client)
	b16 := p.Addr().As16()
	var h uint32
	for _, c := range b16 {
		h = h*31 + uint32(c)
	}
	sh := &rl.shards[h%rateShards]
	now := rl.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[p]
	if b == nil {
		if len(sh.m) >= rateShardLimit {
			sh.evict(now)
		}
		b = &bucket{tokens: rl.rate, last: now}
		sh.m[p] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(rl.rate, b.tokens+el.Seconds()*rl.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return rateAllow
	}
	b.over++
	if rl.slip > 0 && b.over%rl.slip == 0 {
		return rateSlip
	}
	return rateDrop
}

// evict drops networks idle for over a second (their bucket is full again, the
// same as a new one); if none is, it drops an arbitrary one.
func (sh *rateShard) evict(now time.Time) {
	for p, b := range sh.m {
		if now.Sub(b.last) > time.Second {
			delete(sh.m, p)
		}
	}
	for p := range sh.m {
		if len(sh.m) < rateShardLimit {
			break
		}
		delete(sh.m, p)
	}
}

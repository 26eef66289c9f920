package hardware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// VIP is what the cluster code drives: virtual addresses that at most one
// node holds at a time (DESIGN §4). *VIPLease implements it.
type VIP interface {
	// Acquire waits until notBefore (when any earlier holder's lease must
	// have run out; zero: no wait), checks stillLeader, adds the addresses
	// and starts renewing and announcing them. It returns once they are in
	// place; a lease already held returns nil at once. The lease keeps
	// calling stillLeader before each renewal and drops the addresses the
	// first time it reports false. A nil stillLeader counts as always true.
	Acquire(ctx context.Context, notBefore time.Time, stillLeader func() bool) error
	// Release deletes the addresses at once (also if not held: it then
	// cleans up) and stops renewing; it ends a waiting Acquire too.
	Release() error
	// Held reports whether the addresses are in place and renewed.
	Held() bool
	// Close releases the addresses and frees the lease; later calls to
	// Acquire return ErrClosed.
	Close() error
}

// Errors from Acquire.
var (
	ErrNotLeader = errors.New("virtual IP not taken: not the leader any more")
	ErrReleased  = errors.New("virtual IP not taken: released while waiting")
	ErrBusy      = errors.New("virtual IP not taken: another Acquire is under way")
	ErrClosed    = errors.New("virtual IP lease closed")
)

// backend is the kernel side of a lease: netlink for real, FakeNet in
// tests. The lease serialises all calls but openAnnouncer and close.
type backend interface {
	// add installs the addresses, or refreshes them, with the lifetime.
	add(lifetime time.Duration) error
	// remove deletes the addresses if present.
	remove() error
	openAnnouncer() (announcer, error)
	close() error
}

// announcer sends one round of announcements of the addresses.
type announcer interface {
	announce() error
	close() error
}

type leaseState int

const (
	stateIdle leaseState = iota
	stateWaiting
	stateHeld
	stateClosed
)

// renewSlack is how close to the end of its lifetime an address may be
// renewed. The kernel deletes an address as soon as its age, rounded to
// the second after adding HZ/50, reaches valid_lft, so it can go 20 ms
// early; the rest is for the netlink call. A renewal later than that might
// re-create an address the kernel has expired, perhaps after a new leader
// has taken it: the lease drops the address instead.
const renewSlack = 100 * time.Millisecond

// announceGaps is the schedule of announcements after taking the
// addresses: dense at first, so that a client caught in the middle of
// address resolution, or one that missed a frame, is corrected soon, then
// sparser. RFC 4861 §7.2.6 suggests up to MAX_NEIGHBOR_ADVERTISEMENT (3)
// unsolicited advertisements; a failover favours a few more.
func announceGaps() []time.Duration {
	ms := []time.Duration{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 500, 1000, 2000}
	for i := range ms {
		ms[i] *= time.Millisecond
	}
	return ms
}

// VIPLease holds the virtual addresses on this node while it is leader.
type VIPLease struct {
	cfg      Config
	lifetime time.Duration
	log      *slog.Logger
	be       backend
	now      func() time.Time // tests move it

	mu      sync.Mutex
	state   leaseState
	abort   chan struct{} // closed to end a waiting Acquire
	cur     *hold         // the goroutine renewing and announcing
	lastAdd time.Time     // start of the last successful add or renewal
	// lapsedUntil: after a lapse (see currentLocked) the addresses are not
	// taken again before this.
	lapsedUntil time.Time
}

// hold is one stretch of holding the addresses and the goroutine that
// renews and announces them.
type hold struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has returned
}

func newLease(cfg Config, be backend) (*VIPLease, error) {
	lifetime, err := cfg.lifetime()
	if err != nil {
		return nil, err
	}
	cfg.Lifetime = lifetime
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &VIPLease{cfg: cfg, lifetime: lifetime, be: be, now: time.Now,
		log: log.With("vip", cfg.String())}, nil
}

// Lifetime is the kernel-enforced lifetime of the addresses: the caller
// adds it (plus its margin) to its last contact with an old holder to get
// Acquire's notBefore.
func (l *VIPLease) Lifetime() time.Duration { return l.lifetime }

// Acquire implements VIP.
func (l *VIPLease) Acquire(ctx context.Context, notBefore time.Time, stillLeader func() bool) error {
	if stillLeader == nil {
		stillLeader = func() bool { return true }
	}
	l.mu.Lock()
	switch l.state {
	case stateClosed:
		l.mu.Unlock()
		return ErrClosed
	case stateHeld:
		if l.currentLocked(l.cur) {
			l.mu.Unlock()
			return nil
		}
		// It lapsed: currentLocked dropped it; take it anew.
	case stateWaiting:
		l.mu.Unlock()
		return ErrBusy
	}
	abort := make(chan struct{})
	l.state, l.abort = stateWaiting, abort
	if l.lapsedUntil.After(notBefore) {
		notBefore = l.lapsedUntil
	}
	l.mu.Unlock()

	waited, err := l.wait(ctx, notBefore, abort)
	if err == nil && !stillLeader() {
		err = ErrNotLeader
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.abort != abort {
		// Release or Close came while we waited; the state is theirs.
		if l.state == stateClosed {
			return ErrClosed
		}
		return ErrReleased
	}
	l.abort = nil
	l.state = stateIdle
	if err != nil {
		return err
	}
	start := l.now()
	if err := l.be.add(l.lifetime); err != nil {
		if rerr := l.be.remove(); rerr != nil {
			l.log.Error("remove half-added virtual IP", "err", rerr)
		}
		return fmt.Errorf("take virtual IP %s: %w", l.cfg, err)
	}
	l.lastAdd = start
	l.state = stateHeld
	hctx, cancel := context.WithCancel(context.Background())
	h := &hold{ctx: hctx, cancel: cancel, done: make(chan struct{})}
	l.cur = h
	go l.run(h, stillLeader)
	l.log.Info("took the virtual IP", "waited", waited.Round(time.Millisecond), "lifetime", l.lifetime)
	return nil
}

// wait sleeps until notBefore unless ctx ends or Release closes abort.
func (l *VIPLease) wait(ctx context.Context, notBefore time.Time, abort <-chan struct{}) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d := time.Until(notBefore)
	if d <= 0 {
		return 0, nil
	}
	l.log.Info("waiting for the previous holder's lease on the virtual IP to run out", "wait", d.Round(time.Millisecond))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return d, ctx.Err()
	case <-abort:
		return d, ErrReleased
	case <-t.C:
		return d, nil
	}
}

// run renews the addresses every quarter lifetime and announces them on
// the announceGaps schedule until the hold ends.
func (l *VIPLease) run(h *hold, stillLeader func() bool) {
	defer close(h.done)
	ann, err := l.be.openAnnouncer()
	if err != nil {
		l.log.Warn("cannot announce the virtual IP: clients may keep the old holder's MAC until their ARP/neighbour entries age out", "err", err)
	}
	if ann != nil {
		defer ann.close()
		l.announce(h, ann)
	}
	gaps := announceGaps()
	annTimer := time.NewTimer(gaps[0])
	defer annTimer.Stop()
	annC := annTimer.C
	if ann == nil {
		annC = nil
	}
	renew := time.NewTicker(l.lifetime / 4)
	defer renew.Stop()
	for i := 1; ; {
		select {
		case <-h.ctx.Done():
			return
		case <-renew.C:
			if !l.renew(h, stillLeader()) {
				return
			}
		case <-annC:
			if !l.announce(h, ann) {
				return
			}
			if i < len(gaps) {
				annTimer.Reset(gaps[i])
				i++
			} else {
				annC = nil
			}
		}
	}
}

// announce sends one round while the hold is current: never after the
// addresses are gone, or clients would follow us to nothing.
func (l *VIPLease) announce(h *hold, a announcer) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.currentLocked(h) {
		return false
	}
	if err := a.announce(); err != nil {
		l.log.Warn("announce virtual IP", "err", err)
	}
	return true
}

// renew refreshes the lifetime, or drops the addresses when the caller no
// longer leads or when the renewal comes too late to be safe.
func (l *VIPLease) renew(h *hold, leader bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.currentLocked(h) {
		return false
	}
	if !leader {
		l.log.Warn("not the leader any more: dropping the virtual IP")
		l.dropLocked()
		return false
	}
	start := l.now()
	if err := l.be.add(l.lifetime); err != nil {
		// Keep trying: if this goes on, the check above ends the lease.
		l.log.Error("renew virtual IP", "err", err)
		return true
	}
	if late := l.now().Sub(l.lastAdd); late >= l.lifetime-renewSlack {
		// The renewal itself stalled and may have re-created an address
		// the kernel had expired.
		l.log.Error("virtual IP renewal came too late: dropping it", "since_renewal", late.Round(time.Millisecond),
			"retake_after", l.lifetime)
		l.dropLocked()
		l.lapsedUntil = time.Now().Add(l.lifetime)
		return false
	}
	l.lastAdd = start
	return true
}

// currentLocked reports whether h is the current hold and its addresses
// are surely still in place. If they may have expired (the lease lapsed:
// the process stalled past the lifetime), it drops the hold: neither a
// renewal, which would re-create the addresses, nor an announcement, which
// would pull clients over, may follow, as a new leader may hold the
// addresses by now. Nor may an Acquire for a lifetime: a stalled leader's
// own view that it leads is stale too, and raft needs a moment (at most
// its leader lease) after the stall to notice that it was deposed.
func (l *VIPLease) currentLocked(h *hold) bool {
	if l.cur != h {
		return false
	}
	if late := l.now().Sub(l.lastAdd); late >= l.lifetime-renewSlack {
		l.log.Error("virtual IP lease lapsed before its renewal (process stalled?): dropping it, not re-adding it",
			"since_renewal", late.Round(time.Millisecond), "retake_after", l.lifetime)
		l.dropLocked()
		l.lapsedUntil = time.Now().Add(l.lifetime)
		return false
	}
	return true
}

// dropLocked ends the current hold and deletes the addresses.
func (l *VIPLease) dropLocked() {
	l.cur.cancel()
	l.cur = nil
	l.state = stateIdle
	if err := l.be.remove(); err != nil {
		l.log.Error("drop virtual IP", "err", err)
	}
}

// stopLocked ends a waiting Acquire and the current hold, if any, and
// returns the hold to wait for.
func (l *VIPLease) stopLocked() *hold {
	if l.abort != nil {
		close(l.abort)
		l.abort = nil
	}
	h := l.cur
	if h != nil {
		h.cancel()
		l.cur = nil
	}
	if l.state != stateClosed {
		l.state = stateIdle
	}
	return h
}

// Release implements VIP.
func (l *VIPLease) Release() error {
	l.mu.Lock()
	if l.state == stateClosed {
		l.mu.Unlock()
		return nil
	}
	wasHeld := l.state == stateHeld
	h := l.stopLocked()
	err := l.be.remove()
	l.mu.Unlock()
	if h != nil {
		<-h.done
	}
	if err != nil {
		return fmt.Errorf("release virtual IP %s: %w", l.cfg, err)
	}
	if wasHeld {
		l.log.Info("released the virtual IP")
	}
	return nil
}

// Held implements VIP.
func (l *VIPLease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state == stateHeld && l.now().Sub(l.lastAdd) < l.lifetime
}

// Close implements VIP.
func (l *VIPLease) Close() error {
	l.mu.Lock()
	if l.state == stateClosed {
		l.mu.Unlock()
		return nil
	}
	h := l.stopLocked()
	l.state = stateClosed
	err := l.be.remove()
	l.mu.Unlock()
	if h != nil {
		<-h.done
	}
	if err != nil {
		err = fmt.Errorf("release virtual IP %s: %w", l.cfg, err)
	}
	return errors.Join(err, l.be.close())
}

// halt stops the lease as a crash would: no renewals, no removal; the
// kernel (or FakeNet's clock) expires the addresses.
func (l *VIPLease) halt() {
	l.mu.Lock()
	if l.state == stateClosed {
		l.mu.Unlock()
		return
	}
	h := l.stopLocked()
	l.state = stateClosed
	l.mu.Unlock()
	if h != nil {
		<-h.done
	}
	l.be.close()
}

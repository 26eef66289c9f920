package node

import (
	"context"
	"time"

	"github.com/tandemmail/tandem/hardware"
)

// vipLoop makes the VIP follow leadership (DESIGN §4): the leader holds it
// while it leads with quorum contact, a node that stops leading drops it at
// once, and a new leader takes it only when any earlier holder's
// kernel-enforced lease must have run out.
func (n *Node) vipLoop(vip hardware.VIP, lifetime time.Duration) {
	defer n.wg.Done()
	var lastContact time.Time
	// Beyond the lifetime, a margin for the two ways an old holder can
	// outlive its last contact with us:
	//  - hung or dead: it stopped renewing when it stopped heartbeating, so
	//    the kernel drops the VIP a lifetime after our last contact, plus
	//    the kernel's expiry timer slack (well under 100 ms);
	//  - cut off but alive: it steps down within two leader leases and its
	//    renewal loop deletes the VIP within a quarter lifetime after that,
	//    i.e. before lifetime + one lease has passed (lease 300 ms, lifetime
	//    1 s: by 850 ms against our 1.4 s).
	margin := n.raft.LeaderLease() + 100*time.Millisecond
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	acquiring := false
	var acquireCancel context.CancelFunc
	done := make(chan struct{}, 1)
	// A holder that stepped down cleanly deletes the VIP and says so: the
	// new leader then need not wait out its lease (a leadership transfer
	// moves the VIP in milliseconds).
	released := make(chan time.Time, 4)
	var releasedAt time.Time
	n.raft.OnVIPReleased(func(from string) {
		n.log.Info("former VIP holder released it", "from", from)
		select {
		case released <- time.Now():
		default:
		}
	})
	for {
		select {
		case <-n.stopSweep:
			vip.Close()
			return
		case <-done:
			acquiring = false
		case r := <-released:
			releasedAt = r
			if acquiring && acquireCancel != nil {
				acquireCancel() // stop waiting out a lease that is already gone
			}
			continue
		case <-t.C:
		}
		leader := n.raft.IsLeader()
		switch {
		case !leader:
			if c := n.raft.LastLeaderContact(); c.After(lastContact) {
				lastContact = c
			}
			if vip.Held() {
				n.log.Warn("not the leader any more: releasing the virtual IP")
				if err := vip.Release(); err != nil {
					n.log.Error("release virtual IP", "err", err)
				} else {
					go func() {
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						defer cancel()
						n.raft.TellVIPReleased(ctx)
					}()
				}
			}
		case leader && !vip.Held() && !acquiring:
			notBefore := time.Time{}
			if !lastContact.IsZero() && !releasedAt.After(lastContact.Add(-time.Second)) {
				notBefore = lastContact.Add(lifetime + margin)
			}
			acquiring = true
			ctx, cancel := context.WithTimeout(context.Background(), lifetime+margin+5*time.Second)
			acquireCancel = cancel
			go func() {
				defer cancel()
				if err := vip.Acquire(ctx, notBefore, n.raft.IsLeader); err != nil {
					n.log.Warn("virtual IP not taken", "err", err)
				}
				done <- struct{}{}
			}()
		}
	}
}

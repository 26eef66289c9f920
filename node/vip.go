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
	// Beyond the lifetime: the old leader may renew until raft notices the
	// lost quorum (up to two lease checks) and the kernel checks expiry a
	// little late.
	margin := 2*n.raft.LeaderLease() + 100*time.Millisecond
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	acquiring := false
	done := make(chan struct{}, 1)
	for {
		select {
		case <-n.stopSweep:
			vip.Close()
			return
		case <-done:
			acquiring = false
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
				}
			}
		case leader && !vip.Held() && !acquiring:
			notBefore := time.Time{}
			if !lastContact.IsZero() {
				notBefore = lastContact.Add(lifetime + margin)
			}
			acquiring = true
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), lifetime+margin+5*time.Second)
				defer cancel()
				if err := vip.Acquire(ctx, notBefore, n.raft.IsLeader); err != nil {
					n.log.Warn("virtual IP not taken", "err", err)
				}
				done <- struct{}{}
			}()
		}
	}
}

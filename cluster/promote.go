package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Promote makes this node a cluster of one when it cannot reach a quorum:
// the survivor of a pair without a witness (DESIGN §5). It is the operator's
// explicit decision: if the other box is in fact alive and serving, there
// would be two clusters. The lost members are dropped from the
// configuration; they must be wiped and joined again.
//
// hashicorp/raft cannot change a configuration without a quorum, so Raft is
// stopped, the configuration is rewritten with raft.RecoverCluster, and Raft
// is started again.
func (n *Node) Promote(ctx context.Context, reason string) error {
	r := n.r()
	if r.State() == raft.Leader {
		return errors.New("promote: this node already leads")
	}
	// Refuse while any peer answers: then it is not a lost pair.
	for _, p := range n.Peers() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := n.PeerStatus(cctx, p.Addr)
		cancel()
		if err == nil {
			return fmt.Errorf("promote: member %s (%s) is reachable; fix the cluster instead of splitting it", p.ID, p.Addr)
		}
	}
	n.log.Warn("PROMOTING this node to a cluster of one by operator decision", "node", n.cfg.NodeID, "reason", reason)
	n.stopEvents()
	if err := r.Shutdown().Error(); err != nil {
		return fmt.Errorf("promote: stop raft: %w", err)
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.NodeID),
		Address: n.transport.LocalAddr()}}}
	if err := raft.RecoverCluster(n.rc, n.fsm, n.logStore, n.logStore, n.snaps, n.transport, conf); err != nil {
		return fmt.Errorf("promote: rewrite configuration: %w", err)
	}
	nr, err := raft.NewRaft(n.rc, n.fsm, n.logStore, n.logStore, n.snaps, n.transport)
	if err != nil {
		return fmt.Errorf("promote: restart raft: %w", err)
	}
	n.raftMu.Lock()
	n.raft = nr
	n.raftMu.Unlock()
	n.watchLeadership()
	n.events.mu.Lock()
	n.events.events = append(n.events.events, Event{Time: time.Now(), Leader: n.cfg.NodeID, Kind: "promote"})
	n.events.mu.Unlock()
	return n.WaitLeader(ctx)
}

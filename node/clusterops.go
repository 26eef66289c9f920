package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/cluster"
)

// Member is one node as the status page shows it.
type Member struct {
	ID           string `json:"id"`
	Addr         string `json:"addr"`
	Voter        bool   `json:"voter"`
	Self         bool   `json:"self"`
	Role         string `json:"role"`             // Leader, Follower, Candidate, ...
	Health       string `json:"health"`           // ok, unreachable
	Gossip       string `json:"gossip,omitempty"` // alive, suspect, dead (memberlist's view from this node)
	DiskFree     uint64 `json:"disk_free_bytes,omitempty"`
	Witness      bool   `json:"witness,omitempty"`
	HoldsVIP     bool   `json:"holds_vip,omitempty"`
	Error        string `json:"error,omitempty"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// Lag is how many committed entries this member has not applied yet,
	// measured against the leader's commit index.
	Lag uint64 `json:"lag"`
}

// ClusterStatus is /api/cluster (SPEC W4).
type ClusterStatus struct {
	Node    string          `json:"node"`
	Leader  string          `json:"leader"`
	Term    uint64          `json:"term"`
	Quorum  int             `json:"quorum"`
	VIP     string          `json:"vip,omitempty"`        // the virtual addresses, if configured
	VIPHeld string          `json:"vip_holder,omitempty"` // who holds them now
	Members []Member        `json:"members"`
	Events  []cluster.Event `json:"events"`
	Time    time.Time       `json:"time"`
}

type clusterOps struct{ n *Node }

func (c clusterOps) ClusterStatus() any { return c.n.ClusterStatus(context.Background()) }

// ClusterStatus gathers every member's own view, asking peers directly so
// the page shows who is unreachable.
func (n *Node) ClusterStatus(ctx context.Context) ClusterStatus {
	self := n.raft.Status()
	st := ClusterStatus{Node: self.NodeID, Leader: self.LeaderID, Term: self.Term, Quorum: n.raft.Quorum(),
		Events: n.raft.Events(), Time: time.Now().UTC()}
	st.Members = append(st.Members, Member{ID: self.NodeID, Addr: n.raft.Addr(), Voter: true, Self: true,
		Role: self.State, Health: "ok", Term: self.Term, CommitIndex: self.CommitIndex, AppliedIndex: self.AppliedIndex,
		HoldsVIP: self.HoldsVIP})
	peers := n.raft.Peers()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func(p cluster.Peer) {
			defer wg.Done()
			m := Member{ID: p.ID, Addr: p.Addr, Voter: p.Voter, Health: "ok"}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			ps, err := n.raft.PeerStatus(cctx, p.Addr)
			cancel()
			if err != nil {
				m.Health, m.Error, m.Role = "unreachable", err.Error(), "unknown"
			} else {
				m.Role, m.Term, m.CommitIndex, m.AppliedIndex = ps.State, ps.Term, ps.CommitIndex, ps.AppliedIndex
				m.HoldsVIP = ps.HoldsVIP
			}
			mu.Lock()
			st.Members = append(st.Members, m)
			mu.Unlock()
		}(p)
	}
	wg.Wait()
	var commit uint64
	for _, m := range st.Members {
		if m.Role == "Leader" {
			commit = m.CommitIndex
		}
	}
	for i := range st.Members {
		if st.Members[i].Health == "ok" && commit > st.Members[i].AppliedIndex {
			st.Members[i].Lag = commit - st.Members[i].AppliedIndex
		}
	}
	if g := n.raft.Gossip(); g != nil {
		seen := map[string]cluster.GossipMember{}
		for _, gm := range g.Members() {
			seen[gm.ID] = gm
		}
		for i := range st.Members {
			m := &st.Members[i]
			if gm, ok := seen[m.ID]; ok {
				m.Gossip, m.DiskFree, m.Witness = gm.State, gm.Health.DiskFree, gm.Health.Witness
			} else {
				m.Gossip = "dead"
			}
		}
	}
	st.VIP = strings.Trim(n.cfg.VIP4+" "+n.cfg.VIP6, " ")
	for _, m := range st.Members {
		if m.HoldsVIP {
			if st.VIPHeld != "" {
				st.VIPHeld += ","
			}
			st.VIPHeld += m.ID
		}
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st
}

func (c clusterOps) JoinCommand() (string, error) {
	secret, err := os.ReadFile(filepath.Join(c.n.cfg.DataDir, "cluster-secret"))
	if err != nil {
		return "", fmt.Errorf("read cluster secret: %w", err)
	}
	leader := c.n.raft.LeaderAddr()
	if leader == "" {
		return "", cluster.ErrNotLeader
	}
	return fmt.Sprintf("tandem serve --node-id NEW-ID --cluster-addr NEW-IP:%s --join %s --cluster-secret %s",
		portOf(leader), leader, strings.TrimSpace(string(secret))), nil
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return "7400"
}

func (c clusterOps) Promote(ctx context.Context, reason string) error {
	return c.n.raft.Promote(ctx, reason)
}

func (c clusterOps) Drill(ctx context.Context, kill bool, target string) (any, error) {
	rep, err := c.n.Drill(ctx, DrillOptions{Kill: kill, Target: target})
	if err != nil {
		return nil, err
	}
	return struct {
		DrillReport
		Text string `json:"text"`
	}{rep, rep.Text()}, nil
}

func (c clusterOps) Leave(ctx context.Context) error { return c.n.raft.Leave(ctx) }

func (c clusterOps) Remove(ctx context.Context, id string) error {
	if id == c.n.cfg.NodeID {
		return fmt.Errorf("remove: %s is this node; use 'cluster leave'", id)
	}
	return c.n.raft.Remove(ctx, id)
}

func (c clusterOps) TransferLeadership(ctx context.Context, id string) error {
	if c.n.raft.IsLeader() {
		return c.n.raft.TransferLeadership(id)
	}
	return fmt.Errorf("transfer leadership: run it on the leader (%s): %w", c.n.raft.LeaderAddr(), cluster.ErrNotLeader)
}

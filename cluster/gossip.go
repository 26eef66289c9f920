package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Health is what each node gossips about itself (DESIGN §5: memberlist
// gossips health for the status page and fast failure detection; Raft
// alone decides leadership).
type Health struct {
	Version     string `json:"v"`
	Role        string `json:"r"`
	Applied     uint64 `json:"a"`
	Commit      uint64 `json:"c"`
	DiskFree    uint64 `json:"d"`
	ClusterAddr string `json:"ca"`
	Witness     bool   `json:"w,omitempty"`
}

// GossipMember is a node as gossip sees it.
type GossipMember struct {
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	State  string `json:"state"` // alive, suspect, dead, left
	Health Health `json:"health"`
}

// Gossip runs memberlist beside Raft.
type Gossip struct {
	ml     *memberlist.Memberlist
	node   *Node
	health func() Health
	done   chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	meta []byte
}

type gossipDelegate struct{ g *Gossip }

func (d gossipDelegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.meta) > limit {
		return nil
	}
	return d.g.meta
}
func (gossipDelegate) NotifyMsg([]byte)                           {}
func (gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (gossipDelegate) LocalState(join bool) []byte                { return nil }
func (gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// StartGossip listens on addr (UDP and TCP) with traffic encrypted by a key
// derived from the cluster secret, and keeps this node's health current.
func (n *Node) StartGossip(addr string, health func() Health) (*Gossip, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: bad port", addr)
	}
	g := &Gossip{node: n, health: health, done: make(chan struct{})}
	g.refreshMeta()
	c := memberlist.DefaultLANConfig()
	c.Name = n.cfg.NodeID
	c.BindAddr, c.BindPort = host, port
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if adv, _, err := net.SplitHostPort(n.Addr()); err == nil {
			c.AdvertiseAddr = adv
		}
	}
	if port > 0 {
		c.AdvertisePort = port
	}
	key := sha256.Sum256(append([]byte("tandem-gossip:"), n.cfg.Secret...))
	c.SecretKey = key[:]
	c.Delegate = gossipDelegate{g}
	c.Logger = log.New(slogWriter{n.log}, "", 0)
	// Detect a dead node within a couple of seconds on a LAN.
	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 300 * time.Millisecond
	c.SuspicionMult = 2
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	g.ml = ml
	n.gossip = g
	g.wg.Add(1)
	go g.loop()
	return g, nil
}

func (g *Gossip) refreshMeta() {
	b, _ := json.Marshal(g.health())
	g.mu.Lock()
	g.meta = b
	g.mu.Unlock()
}

// loop refreshes this node's health and finds peers through Raft's
// configuration: each peer tells its gossip address over the RPC channel.
func (g *Gossip) loop() {
	defer g.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		g.refreshMeta()
		g.ml.UpdateNode(time.Second)
		g.joinMissing()
		select {
		case <-g.done:
			return
		case <-t.C:
		}
	}
}

func (g *Gossip) joinMissing() {
	known := map[string]bool{}
	for _, m := range g.ml.Members() {
		if m.State == memberlist.StateAlive || m.State == memberlist.StateSuspect {
			known[m.Name] = true
		}
	}
	for _, p := range g.node.Peers() {
		if known[p.ID] {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := g.node.PeerStatus(ctx, p.Addr)
		cancel()
		if err != nil || st.GossipAddr == "" {
			continue
		}
		g.ml.Join([]string{st.GossipAddr})
	}
}

// Addr is the gossip address peers join.
func (g *Gossip) Addr() string {
	ln := g.ml.LocalNode()
	return net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
}

// Members lists what gossip knows of the nodes it has not declared dead
// (memberlist drops dead nodes from the list).
func (g *Gossip) Members() []GossipMember {
	var out []GossipMember
	for _, m := range g.ml.Members() {
		gm := GossipMember{ID: m.Name, Addr: m.Address(), State: stateName(m.State)}
		json.Unmarshal(m.Meta, &gm.Health)
		out = append(out, gm)
	}
	return out
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	default:
		return "left"
	}
}

// Close leaves the gossip pool.
func (g *Gossip) Close() error {
	select {
	case <-g.done:
		return nil
	default:
		close(g.done)
	}
	g.wg.Wait()
	func() {
		defer func() { recover() }() // Leave panics after a Shutdown
		g.ml.Leave(time.Second)
	}()
	return g.ml.Shutdown()
}

// Package cluster owns the Raft node: log and stable store (raft-boltdb),
// snapshots, the transport, bootstrap and leadership. It knows nothing about
// mail: it applies opaque commands to the raft.FSM it is given.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

var (
	// ErrNotLeader: this node cannot commit writes now; clients should retry
	// (SMTP 451 4.3.0, IMAP NO [UNAVAILABLE]).
	ErrNotLeader = errors.New("this node is not the leader")
	// ErrUnavailable: the write could not be committed (lost leadership,
	// shutting down, timed out); its outcome may be unknown to the caller.
	ErrUnavailable = errors.New("cluster unavailable")
)

// Config configures a Raft node.
type Config struct {
	NodeID string
	Dir    string // raft.db, snapshots/
	// BindAddr is the cluster address (HOST:PORT). Empty runs a single node
	// on an in-process transport: a cluster of one voter, same code path.
	BindAddr string
	Logger   *slog.Logger
	// ApplyTimeout bounds one write (default 10 s).
	ApplyTimeout time.Duration
	// SnapshotThreshold: log entries between snapshots (default 8192).
	SnapshotThreshold uint64
	// Advertise is the address peers dial (default: BindAddr's bound address).
	Advertise string
	// Secret authenticates cluster connections (required with BindAddr).
	Secret []byte
	// Join is a member's cluster address; a node with no Raft state and a
	// Join address waits to be added instead of bootstrapping a new cluster.
	Join string
	// NonVoter joins without a vote.
	NonVoter bool
}

// Node is a running Raft member.
type Node struct {
	cfg       Config
	raftMu    sync.RWMutex
	raft      *raft.Raft // replaced only by Promote
	rc        *raft.Config
	fsm       raft.FSM
	snaps     raft.SnapshotStore
	logStore  *raftboltdb.BoltStore
	transport raft.Transport
	closer    io.Closer
	mux       *Mux
	log       *slog.Logger
	events    *eventLog
	gossip    *Gossip
	drillStop func()
	vipHeld   func() bool
	codec     ResponseCodec

	vipReleased func(from string)

	// closed is closed by Close. raft does not answer futures still queued
	// when it shuts down, so Apply also waits on this.
	closed    chan struct{}
	closeOnce sync.Once
}

// Open starts Raft over fsm. A data folder with no Raft state bootstraps a
// new single-voter cluster.
func Open(cfg Config, fsm raft.FSM) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeID == "" {
		return nil, errors.New("cluster: empty node id")
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster: create %s: %w", cfg.Dir, err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	level := hclog.Warn
	if cfg.BindAddr == "" {
		// A cluster of one elects itself at every start; that is not news.
		level = hclog.Error
	}
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: level, Output: slogWriter{cfg.Logger}})
	// Group commit: concurrent Applies are batched into one log write and one
	// FSM transaction (DESIGN §1).
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	// The FSM is persistent and skips entries it already holds, so the
	// snapshot need not be restored into it at every start.
	rc.NoSnapshotRestoreOnStart = true
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	rc.SnapshotInterval = 2 * time.Minute
	if cfg.BindAddr == "" {
		// One voter: elections need not wait for anyone.
		rc.HeartbeatTimeout = 200 * time.Millisecond
		rc.ElectionTimeout = 200 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
	} else {
		// A LAN appliance pair: notice a dead leader within about a second
		// (failover target: median under 2 s including the VIP move). A
		// leader that loses quorum contact steps down after the lease, which
		// is also when it stops renewing the VIP.
		rc.HeartbeatTimeout = 500 * time.Millisecond
		rc.ElectionTimeout = 500 * time.Millisecond
		rc.LeaderLeaseTimeout = 300 * time.Millisecond
	}

	logStore, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, "snapshots"), 2, rc.Logger)
	if err != nil {
		logStore.Close()
		return nil, fmt.Errorf("cluster: open snapshots: %w", err)
	}
	n := &Node{cfg: cfg, logStore: logStore, log: cfg.Logger, closed: make(chan struct{})}
	var addr raft.ServerAddress
	if cfg.BindAddr == "" {
		var t *raft.InmemTransport
		addr, t = raft.NewInmemTransport(raft.ServerAddress("local:" + cfg.NodeID))
		n.transport, n.closer = t, t
	} else {
		mux, err := NewMux(cfg.BindAddr, cfg.Secret, cfg.Logger)
		if err != nil {
			logStore.Close()
			return nil, err
		}
		var adv net.Addr = mux.Addr()
		if cfg.Advertise != "" {
			a, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
			if err != nil {
				mux.Close()
				logStore.Close()
				return nil, fmt.Errorf("cluster: advertise address %q: %w", cfg.Advertise, err)
			}
			adv = a
		} else if tcp, ok := adv.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
			mux.Close()
			logStore.Close()
			return nil, fmt.Errorf("cluster: %s listens on all addresses; say which one peers dial with --cluster-advertise", cfg.BindAddr)
		}
		n.mux = mux
		stream := newStreamLayer(mux, adv)
		t := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 3,
			Timeout: 10 * time.Second, Logger: rc.Logger})
		addr = t.LocalAddr()
		n.transport = t
		n.closer = closers{t, mux}
		mux.Handle(ChanRPC, n.serveRPC)
		go mux.Serve()
	}

	has, err := raft.HasExistingState(logStore, logStore, snaps)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("cluster: inspect state: %w", err)
	}
	if !has && cfg.Join == "" {
		boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: addr}}}
		if err := raft.BootstrapCluster(rc, logStore, logStore, snaps, n.transport, boot); err != nil {
			n.closeStores()
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
		cfg.Logger.Info("bootstrapped a new cluster", "node", cfg.NodeID, "addr", addr)
	}
	r, err := raft.NewRaft(rc, fsm, logStore, logStore, snaps, n.transport)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	n.rc, n.fsm, n.snaps = rc, fsm, snaps
	n.watchLeadership()
	if has {
		go n.updateOwnAddress(addr)
	}
	return n, nil
}

// updateOwnAddress fixes this node's address in the Raft configuration when
// it changed since the last start (e.g. a single node that now listens on a
// cluster address): AddVoter with a known ID updates the address.
func (n *Node) updateOwnAddress(addr raft.ServerAddress) {
	f := n.r().GetConfiguration()
	if f.Error() != nil {
		return
	}
	for _, s := range f.Configuration().Servers {
		if s.ID != raft.ServerID(n.cfg.NodeID) || s.Address == addr {
			continue
		}
		for i := 0; i < 300; i++ {
			if n.r().State() == raft.Leader {
				if err := n.r().AddVoter(s.ID, addr, 0, 10*time.Second).Error(); err == nil {
					n.log.Info("updated own cluster address", "old", s.Address, "new", addr)
				}
				return
			}
			if n.r().State() == raft.Shutdown {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// slogWriter passes hashicorp/raft's log lines to our structured log.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	// hclog lines look like "2026-01-02T... [WARN]  raft: message: k=v".
	lvl := slog.LevelInfo
	switch {
	case strings.Contains(line, "[ERROR]"):
		lvl = slog.LevelError
	case strings.Contains(line, "[WARN]"):
		lvl = slog.LevelWarn
	}
	if i := strings.Index(line, "raft:"); i >= 0 {
		line = line[i:]
	}
	w.log.Log(context.Background(), lvl, line)
	return len(p), nil
}

// r is the current raft instance.
func (n *Node) r() *raft.Raft {
	n.raftMu.RLock()
	defer n.raftMu.RUnlock()
	return n.raft
}

// Mux is the node's cluster connection multiplexer (nil on an in-process
// single node); other parts register their channels on it.
func (n *Node) Mux() *Mux { return n.mux }

// Raft exposes the raft node to the parts of the system that need
// leadership events (VIP, client routing).
func (n *Node) Raft() *raft.Raft { return n.r() }

func (n *Node) closeStores() {
	if n.closer != nil {
		n.closer.Close()
	}
	n.logStore.Close()
}

// WaitLeader blocks until some node leads (on one node: this one).
func (n *Node) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := n.r().LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: no leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// IsLeader reports whether this node leads.
func (n *Node) IsLeader() bool { return n.r().State() == raft.Leader }

// Apply commits cmd through the log and returns the FSM's response once it
// is applied on this node.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, error) {
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < timeout {
			timeout = d
		}
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("apply: %w", context.DeadlineExceeded)
	}
	f := n.r().Apply(cmd, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	var err error
	select {
	case err = <-done:
	case <-n.closed:
		// The entry may or may not commit: the caller hears "unavailable",
		// as with any failure whose outcome is unknown, and retries.
		return nil, fmt.Errorf("%w: node shutting down", ErrUnavailable)
	}
	if err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return nil, ErrNotLeader
		default:
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	return f.Response(), nil
}

// Status is a summary for the status command and pages.
type Status struct {
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	LeaderID     string `json:"leader_id"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastLogIndex uint64 `json:"last_log_index"`
	Voters       int    `json:"voters"`
	GossipAddr   string `json:"gossip_addr,omitempty"`
	HoldsVIP     bool   `json:"holds_vip,omitempty"`
}

// Status reports Raft's view of this node.
func (n *Node) Status() Status {
	addr, id := n.r().LeaderWithID()
	st := Status{NodeID: n.cfg.NodeID, State: n.r().State().String(), Leader: string(addr), LeaderID: string(id),
		CommitIndex: n.r().CommitIndex(), AppliedIndex: n.r().AppliedIndex(), LastLogIndex: n.r().LastIndex()}
	if n.gossip != nil {
		st.GossipAddr = n.gossip.Addr()
	}
	if n.vipHeld != nil {
		st.HoldsVIP = n.vipHeld()
	}
	stats := n.r().Stats()
	fmt.Sscan(stats["term"], &st.Term)
	if f := n.r().GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				st.Voters++
			}
		}
	}
	return st
}

// Snapshot forces a snapshot now (tests, admin).
func (n *Node) Snapshot() error {
	return n.r().Snapshot().Error()
}

// Close shuts Raft down and closes the stores.
func (n *Node) Close() error {
	if n.gossip != nil {
		n.gossip.Close()
	}
	n.stopEvents()
	err := n.r().Shutdown().Error()
	n.closeOnce.Do(func() { close(n.closed) })
	n.closeStores()
	return err
}

// Peer is another member of the cluster.
type Peer struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	Voter bool   `json:"voter"`
}

// Peers lists the other members from the current Raft configuration.
func (n *Node) Peers() []Peer {
	f := n.r().GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []Peer
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.cfg.NodeID {
			continue
		}
		out = append(out, Peer{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out
}

// Quorum is the number of voters (this node included) that make a majority.
func (n *Node) Quorum() int {
	f := n.r().GetConfiguration()
	if f.Error() != nil {
		return 1
	}
	v := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			v++
		}
	}
	return v/2 + 1
}

// LeaderAddr is the current leader's cluster address ("" if none).
func (n *Node) LeaderAddr() string {
	addr, _ := n.r().LeaderWithID()
	return string(addr)
}

// Gossip is the node's memberlist, nil until StartGossip.
func (n *Node) Gossip() *Gossip { return n.gossip }

// OnVIPStatus registers how Status learns whether this node holds the VIP.
func (n *Node) OnVIPStatus(fn func() bool) { n.vipHeld = fn }

// LastLeaderContact is when this node last heard from a leader (zero on
// the leader itself).
func (n *Node) LastLeaderContact() time.Time { return n.r().LastContact() }

// LeaderLease is how long a leader keeps leading without quorum contact.
func (n *Node) LeaderLease() time.Duration { return n.rc.LeaderLeaseTimeout }

// NodeID is this node's ID.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// Addr is this node's cluster address.
func (n *Node) Addr() string { return string(n.transport.LocalAddr()) }

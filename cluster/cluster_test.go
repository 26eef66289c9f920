package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// sumFSM adds up uint64 commands: enough to see every node apply the same
// log.
type sumFSM struct {
	mu   sync.Mutex
	sum  uint64
	n    int
	last uint64 // like the storage FSM, skip entries already applied
}

func (f *sumFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if l.Index <= f.last {
		return f.sum
	}
	f.last = l.Index
	f.sum += binary.BigEndian.Uint64(l.Data)
	f.n++
	return f.sum
}

func (f *sumFSM) state() (uint64, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sum, f.n
}

func (f *sumFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &sumSnap{f.sum, f.n}, nil
}

func (f *sumFSM) Restore(rc io.ReadCloser) error {
	var b [16]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.mu.Lock()
	f.sum, f.n = binary.BigEndian.Uint64(b[:8]), int(binary.BigEndian.Uint64(b[8:]))
	f.mu.Unlock()
	return rc.Close()
}

type sumSnap struct {
	sum uint64
	n   int
}

func (s *sumSnap) Persist(sink raft.SnapshotSink) error {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], s.sum)
	binary.BigEndian.PutUint64(b[8:], uint64(s.n))
	sink.Write(b[:])
	return sink.Close()
}
func (s *sumSnap) Release() {}

func cmd(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func startNode(t *testing.T, id, join string, secret []byte) (*Node, *sumFSM) {
	t.Helper()
	fsm := &sumFSM{}
	n, err := Open(Config{NodeID: id, Dir: t.TempDir(), BindAddr: "127.0.0.1:0", Secret: secret, Join: join,
		Logger: slog.New(slog.DiscardHandler)}, fsm)
	if err != nil {
		t.Fatal(err)
	}
	return n, fsm
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestThreeNodesJoinReplicateFailover(t *testing.T) {
	ctx := context.Background()
	a, fa := startNode(t, "a", "", testSecret)
	waitFor(t, "a leads", 10*time.Second, a.IsLeader)
	addrA := string(a.transport.LocalAddr())
	b, fb := startNode(t, "b", addrA, testSecret)
	c, fc := startNode(t, "c", addrA, testSecret)
	for _, n := range []*Node{b, c} {
		jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := n.Join(jctx, addrA); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	// On a loaded machine leadership may move during the writes: retry on
	// whoever leads. A write whose outcome was unknown may land twice, so
	// compare the nodes with each other, not with a fixed sum.
	nodes := []*Node{a, b, c}
	for i := 1; i <= 10; i++ {
		deadline := time.Now().Add(20 * time.Second)
		for {
			var err error = ErrNotLeader
			for _, n := range nodes {
				if n.IsLeader() {
					_, err = n.Apply(ctx, cmd(uint64(i)))
					break
				}
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(t, "followers apply", 10*time.Second, func() bool {
		sa, _ := fa.state()
		sb, _ := fb.state()
		sc, _ := fc.state()
		return sa >= 55 && sa == sb && sb == sc
	})
	if st := a.Status(); st.Voters != 3 {
		t.Fatalf("voters %d", st.Voters)
	}
	// A follower refuses writes with ErrNotLeader.
	for _, n := range nodes {
		if !n.IsLeader() {
			if _, err := n.Apply(ctx, cmd(0)); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("follower apply: %v", err)
			}
			break
		}
	}
	// The leader dies; one of the others takes over and keeps the log.
	a.Close()
	waitFor(t, "new leader", 10*time.Second, func() bool { return b.IsLeader() || c.IsLeader() })
	leader, other, fo := b, c, fc
	if c.IsLeader() {
		leader, other, fo = c, b, fb
	}
	if _, err := leader.Apply(ctx, cmd(100)); err != nil {
		t.Fatal(err)
	}
	before, _ := fa.state()
	waitFor(t, "survivor applies", 10*time.Second, func() bool { s, _ := fo.state(); return s >= before+100 })
	leader.Close()
	other.Close()
}

func TestStrangerCannotJoin(t *testing.T) {
	a, _ := startNode(t, "a", "", testSecret)
	defer a.Close()
	waitFor(t, "a leads", 10*time.Second, a.IsLeader)
	x, _ := startNode(t, "x", string(a.transport.LocalAddr()), []byte("another-secret-of-32-bytes-long!"))
	defer x.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := x.Join(ctx, string(a.transport.LocalAddr())); err == nil {
		t.Fatal("a node with another secret joined")
	}
	// The refusal is the authentication, not a timeout.
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer dcancel()
	if c, err := x.mux.Dial(dctx, a.Addr(), ChanRPC); err == nil || !errors.Is(err, ErrAuth) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial with the wrong secret: %v", err)
	}
	if st := a.Status(); st.Voters != 1 {
		t.Fatalf("voters %d after stranger", st.Voters)
	}
}

// A pair without a witness: the survivor does not serve until promoted,
// and then does.
func TestPairPromote(t *testing.T) {
	ctx := context.Background()
	a, _ := startNode(t, "a", "", testSecret)
	waitFor(t, "a leads", 10*time.Second, a.IsLeader)
	b, fb := startNode(t, "b", a.Addr(), testSecret)
	defer b.Close()
	jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	if err := b.Join(jctx, a.Addr()); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := a.Apply(ctx, cmd(7)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b applies", 10*time.Second, func() bool { s, _ := fb.state(); return s == 7 })
	// Refused while the other member answers.
	if err := b.Promote(ctx, "test"); err == nil || !strings.Contains(err.Error(), "reachable") {
		t.Fatalf("promote with live peer: %v", err)
	}
	a.Close()
	time.Sleep(3 * time.Second)
	if b.IsLeader() {
		t.Fatal("lone survivor of a pair leads without promotion")
	}
	if _, err := b.Apply(ctx, cmd(1)); err == nil {
		t.Fatal("survivor accepted a write without quorum")
	}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := b.Promote(pctx, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b leads", 10*time.Second, b.IsLeader)
	if _, err := b.Apply(ctx, cmd(3)); err != nil {
		t.Fatal(err)
	}
	if s, _ := fb.state(); s != 10 {
		t.Fatalf("state after promote %d", s)
	}
	var kinds []string
	for _, e := range b.Events() {
		kinds = append(kinds, e.Kind)
	}
	if !strings.Contains(strings.Join(kinds, ","), "promote") {
		t.Fatalf("events %v", kinds)
	}
}

func TestGossipHealth(t *testing.T) {
	ctx := context.Background()
	a, _ := startNode(t, "a", "", testSecret)
	defer a.Close()
	waitFor(t, "a leads", 10*time.Second, a.IsLeader)
	var nodes []*Node
	for _, id := range []string{"b", "c"} {
		n, _ := startNode(t, id, a.Addr(), testSecret)
		defer n.Close()
		jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := n.Join(jctx, a.Addr()); err != nil {
			t.Fatal(err)
		}
		cancel()
		nodes = append(nodes, n)
	}
	for _, n := range append([]*Node{a}, nodes...) {
		n := n
		if _, err := n.StartGossip("127.0.0.1:0", func() Health {
			st := n.Status()
			return Health{Version: "test", Role: st.State, Applied: st.AppliedIndex, ClusterAddr: n.Addr()}
		}); err != nil {
			t.Fatal(err)
		}
	}
	alive := func(g *Gossip) int {
		k := 0
		for _, m := range g.Members() {
			if m.State == "alive" && m.Health.Version == "test" {
				k++
			}
		}
		return k
	}
	waitFor(t, "everyone sees three alive", 20*time.Second, func() bool {
		return alive(a.Gossip()) == 3 && alive(nodes[0].Gossip()) == 3 && alive(nodes[1].Gossip()) == 3
	})
	nodes[1].Gossip().ml.Shutdown() // c's gossip dies without leaving
	waitFor(t, "c seen failed", 15*time.Second, func() bool {
		for _, m := range a.Gossip().Members() {
			if m.ID == "c" && m.State == "alive" {
				return false
			}
		}
		return true
	})
}

package hardware

import (
	"slices"
	"sync"
	"time"
)

// FakeNet is a pretend network segment for tests without root. Leases made
// with FakeNet.Lease run the real lease state machine (waits, renewals,
// drops, announcements) over a pretend kernel that records what they did,
// expires an address whose lifetime has run out by the clock given to
// NewFakeNet, and records every moment two nodes held the address at once.
type FakeNet struct {
	now func() time.Time

	mu        sync.Mutex
	nodes     map[string]*fakeNode
	events    []FakeEvent
	conflicts []FakeConflict
	announced string
}

// FakeEvent is one thing a fake lease did to the pretend kernel.
type FakeEvent struct {
	At   time.Time
	Node string
	Op   string // "add", "remove", "announce", "crash"
}

// FakeConflict is a moment Node added the address while Others still held
// it: the split brain DESIGN §4 rules out.
type FakeConflict struct {
	At     time.Time
	Node   string
	Others []string
}

type fakeNode struct {
	expires  time.Time // the address is in place before this
	renewals int
	failAdd  error
}

// NewFakeNet makes a pretend segment whose kernel tells time by now
// (nil: time.Now). The leases' own timers (waits, renewals) run on real
// time; a test that moves now forward models a holder that stalls.
func NewFakeNet(now func() time.Time) *FakeNet {
	if now == nil {
		now = time.Now
	}
	return &FakeNet{now: now, nodes: map[string]*fakeNode{}}
}

// Lease makes node's lease, as New does on a real box: it first removes
// any address the node still holds from an earlier lease (a restart).
// Only cfg's Lifetime and Logger matter.
func (n *FakeNet) Lease(node string, cfg Config) (*VIPLease, error) {
	b := &fakeBackend{net: n, node: node}
	l, err := newLease(cfg, b)
	if err != nil {
		return nil, err
	}
	b.remove()
	return l, nil
}

// Crash stops l as a killed process would: it neither renews nor deletes
// the address, which stays until its lifetime runs out.
func (n *FakeNet) Crash(l *VIPLease) {
	l.halt()
	if b, ok := l.be.(*fakeBackend); ok {
		n.record(b.node, "crash")
	}
}

// FailAdds makes node's adds and renewals fail with err (nil: succeed).
func (n *FakeNet) FailAdds(node string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.node(node).failAdd = err
}

// Holders lists, sorted, the nodes whose address is in place now.
func (n *FakeNet) Holders() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.holdersLocked("", n.now())
}

// LastAnnounced is the node that announced the address last: the one
// whose MAC clients would send to.
func (n *FakeNet) LastAnnounced() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.announced
}

// Renewals counts node's successful renewals.
func (n *FakeNet) Renewals(node string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.node(node).renewals
}

// Events returns what happened so far, in order.
func (n *FakeNet) Events() []FakeEvent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.events)
}

// Conflicts returns every moment two nodes held the address at once; a
// correct cluster has none.
func (n *FakeNet) Conflicts() []FakeConflict {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.conflicts)
}

func (n *FakeNet) node(name string) *fakeNode {
	fn := n.nodes[name]
	if fn == nil {
		fn = &fakeNode{}
		n.nodes[name] = fn
	}
	return fn
}

func (n *FakeNet) holdersLocked(except string, now time.Time) []string {
	var out []string
	for name, fn := range n.nodes {
		if name != except && now.Before(fn.expires) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (n *FakeNet) record(node, op string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, FakeEvent{At: n.now(), Node: node, Op: op})
}

// fakeBackend is one node's pretend kernel.
type fakeBackend struct {
	net  *FakeNet
	node string
}

func (b *fakeBackend) add(lifetime time.Duration) error {
	n := b.net
	n.mu.Lock()
	defer n.mu.Unlock()
	fn := n.node(b.node)
	if fn.failAdd != nil {
		return fn.failAdd
	}
	now := n.now()
	if now.Before(fn.expires) {
		fn.renewals++
	} else {
		if others := n.holdersLocked(b.node, now); len(others) > 0 {
			n.conflicts = append(n.conflicts, FakeConflict{At: now, Node: b.node, Others: others})
		}
		n.events = append(n.events, FakeEvent{At: now, Node: b.node, Op: "add"})
	}
	fn.expires = now.Add(lifetime)
	return nil
}

func (b *fakeBackend) remove() error {
	n := b.net
	n.mu.Lock()
	defer n.mu.Unlock()
	fn := n.node(b.node)
	now := n.now()
	if now.Before(fn.expires) {
		n.events = append(n.events, FakeEvent{At: now, Node: b.node, Op: "remove"})
	}
	fn.expires = time.Time{}
	return nil
}

func (b *fakeBackend) openAnnouncer() (announcer, error) { return b, nil }

func (b *fakeBackend) announce() error {
	n := b.net
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, FakeEvent{At: n.now(), Node: b.node, Op: "announce"})
	n.announced = b.node
	return nil
}

func (b *fakeBackend) close() error { return nil }

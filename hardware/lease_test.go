package hardware

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// manualClock is a clock tests move by hand.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newManualClock() *manualClock { return &manualClock{t: time.Unix(1_700_000_000, 0)} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func fakeLease(t *testing.T, n *FakeNet, node string) *VIPLease {
	t.Helper()
	l, err := n.Lease(node, Config{Lifetime: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func count(n *FakeNet, node, op string) int {
	c := 0
	for _, e := range n.Events() {
		if e.Node == node && e.Op == op {
			c++
		}
	}
	return c
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLeaseHoldRenewAnnounceRelease(t *testing.T) {
	t.Parallel()
	n := NewFakeNet(nil)
	l := fakeLease(t, n, "a")
	if l.Held() {
		t.Fatal("held before Acquire")
	}
	if err := l.Acquire(context.Background(), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	if !l.Held() || !equal(n.Holders(), "a") {
		t.Fatalf("after Acquire: held %v, holders %v", l.Held(), n.Holders())
	}
	if err := l.Acquire(context.Background(), time.Time{}, nil); err != nil {
		t.Fatalf("Acquire while held: %v", err)
	}
	// Renewed every quarter lifetime: in place after three lifetimes.
	time.Sleep(3 * time.Second)
	if !l.Held() || !equal(n.Holders(), "a") {
		t.Fatalf("after 3 lifetimes: held %v, holders %v", l.Held(), n.Holders())
	}
	if r := n.Renewals("a"); r < 9 {
		t.Errorf("%d renewals in 3 s, want about 12", r)
	}
	// 11 in the first second, then at 1.5 s and 2.5 s.
	if c := count(n, "a", "announce"); c < 12 || c > 13 {
		t.Errorf("%d announcements in 3 s, want 13", c)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if l.Held() || len(n.Holders()) != 0 {
		t.Fatalf("after Release: held %v, holders %v", l.Held(), n.Holders())
	}
	if c := count(n, "a", "add"); c != 1 {
		t.Errorf("%d adds, want 1", c)
	}
	if c := count(n, "a", "remove"); c != 1 {
		t.Errorf("%d removes, want 1", c)
	}
}

func TestLeaseAnnouncesOnlyWhileHeld(t *testing.T) {
	t.Parallel()
	n := NewFakeNet(nil)
	l := fakeLease(t, n, "a")
	if err := l.Acquire(context.Background(), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "three announcements", func() bool { return count(n, "a", "announce") >= 3 })
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	after := count(n, "a", "announce")
	time.Sleep(300 * time.Millisecond)
	if c := count(n, "a", "announce"); c != after {
		t.Errorf("%d announcements after Release", c-after)
	}
	if n.LastAnnounced() != "a" {
		t.Errorf("last announced by %q", n.LastAnnounced())
	}
}

func TestAcquireWaitsForNotBefore(t *testing.T) {
	t.Parallel()
	n := NewFakeNet(nil)
	l := fakeLease(t, n, "a")
	start := time.Now()
	if err := l.Acquire(context.Background(), start.Add(300*time.Millisecond), nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("took the address after %v, before notBefore", d)
	}
	if e := n.Events(); len(e) == 0 || e[0].Op != "add" || e[0].At.Before(start.Add(300*time.Millisecond)) {
		t.Errorf("events %v", e)
	}
}

func TestAcquireEndsWithoutTaking(t *testing.T) {
	t.Parallel()
	later := func() time.Time { return time.Now().Add(10 * time.Second) }
	for _, c := range []struct {
		name   string
		leader bool
		stop   func(*VIPLease, context.CancelFunc)
		want   error
	}{
		{"context ends", true, func(_ *VIPLease, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"released", true, func(l *VIPLease, _ context.CancelFunc) { l.Release() }, ErrReleased},
		{"closed", true, func(l *VIPLease, _ context.CancelFunc) { l.Close() }, ErrClosed},
		{"not leader after the wait", false, nil, ErrNotLeader},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n := NewFakeNet(nil)
			l := fakeLease(t, n, "a")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			notBefore := later()
			if c.stop == nil {
				notBefore = time.Now().Add(50 * time.Millisecond)
			}
			errc := make(chan error, 1)
			go func() { errc <- l.Acquire(ctx, notBefore, func() bool { return c.leader }) }()
			if c.stop != nil {
				time.Sleep(50 * time.Millisecond)
				if err := l.Acquire(ctx, time.Time{}, nil); !errors.Is(err, ErrBusy) {
					t.Errorf("second Acquire while waiting: %v, want ErrBusy", err)
				}
				c.stop(l, cancel)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, c.want) {
					t.Errorf("Acquire: %v, want %v", err, c.want)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Acquire still waiting")
			}
			if l.Held() || len(n.Holders()) != 0 || count(n, "a", "add") != 0 {
				t.Errorf("address taken: held %v, holders %v, events %v", l.Held(), n.Holders(), n.Events())
			}
		})
	}
}

func TestLeaseDropsWhenLeadershipEnds(t *testing.T) {
	t.Parallel()
	n := NewFakeNet(nil)
	l := fakeLease(t, n, "a")
	var leader atomic.Bool
	leader.Store(true)
	if err := l.Acquire(context.Background(), time.Time{}, leader.Load); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	leader.Store(false)
	lost := time.Now()
	// Checked every quarter lifetime: gone within 250 ms.
	eventually(t, 400*time.Millisecond, "address dropped", func() bool { return len(n.Holders()) == 0 })
	if l.Held() {
		t.Error("Held after the drop")
	}
	t.Logf("dropped %v after leadership ended", time.Since(lost).Round(time.Millisecond))
	// It can be taken again.
	leader.Store(true)
	if err := l.Acquire(context.Background(), time.Time{}, leader.Load); err != nil || !l.Held() {
		t.Fatalf("Acquire again: %v, held %v", err, l.Held())
	}
}

// A renewal that comes later than the kernel's lifetime allows must not
// re-create the address: a new leader may have it by now.
func TestLateRenewalDropsInsteadOfReadding(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		// stall moves the lease's clock: before the renewal starts or
		// while its netlink call runs.
		before bool
	}{{"stalled before renewal", true}, {"stalled in renewal", false}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var skew atomic.Int64
			n := NewFakeNet(nil)
			b := &stallingBackend{fakeBackend: fakeBackend{net: n, node: "a"}}
			l, err := newLease(Config{Lifetime: time.Second, Logger: testLogger(t)}, b)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			l.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
			if err := l.Acquire(context.Background(), time.Time{}, nil); err != nil {
				t.Fatal(err)
			}
			if c.before {
				skew.Store(int64(time.Second))
			} else {
				b.onAdd = func() { skew.Store(int64(time.Second)) }
			}
			eventually(t, time.Second, "lease dropped", func() bool { return !l.Held() && len(n.Holders()) == 0 })
			adds := b.adds.Load()
			if c.before && adds != 1 {
				t.Errorf("%d adds, want only the first: the late renewal re-added", adds)
			}
			if count(n, "a", "remove") != 1 {
				t.Errorf("events %v, want one remove", n.Events())
			}
			if !c.before {
				return
			}
			// The process runs again and still thinks it leads: no
			// retaking for a lifetime, and then only if it still leads.
			skew.Store(0)
			start := time.Now()
			if err := l.Acquire(context.Background(), time.Time{}, func() bool { return false }); !errors.Is(err, ErrNotLeader) {
				t.Errorf("Acquire after the lapse: %v, want ErrNotLeader", err)
			}
			if d := time.Since(start); d < 800*time.Millisecond {
				t.Errorf("Acquire after the lapse decided after %v, want a lifetime's wait", d)
			}
			if b.adds.Load() != 1 {
				t.Errorf("%d adds", b.adds.Load())
			}
		})
	}
}

type stallingBackend struct {
	fakeBackend
	adds  atomic.Int32
	onAdd func()
}

func (b *stallingBackend) add(lifetime time.Duration) error {
	if b.adds.Add(1) > 1 && b.onAdd != nil {
		b.onAdd()
	}
	return b.fakeBackend.add(lifetime)
}

func TestFailedAddLeavesNothing(t *testing.T) {
	t.Parallel()
	n := NewFakeNet(nil)
	l := fakeLease(t, n, "a")
	boom := errors.New("netlink: no buffer space")
	n.FailAdds("a", boom)
	if err := l.Acquire(context.Background(), time.Time{}, nil); !errors.Is(err, boom) {
		t.Fatalf("Acquire: %v, want %v", err, boom)
	}
	if l.Held() || len(n.Holders()) != 0 {
		t.Fatal("held after a failed add")
	}
	n.FailAdds("a", nil)
	if err := l.Acquire(context.Background(), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	// Renewals that fail: the address runs out and the lease says so.
	n.FailAdds("a", boom)
	eventually(t, 2*time.Second, "lease ends when renewals keep failing", func() bool { return !l.Held() })
}

// The fake kernel keeps a crashed holder's address until its lifetime runs
// out, and reports a node that takes the address before then.
func TestFakeNetCrashAndConflict(t *testing.T) {
	t.Parallel()
	clock := newManualClock()
	n := NewFakeNet(clock.Now)
	a, b, c := fakeLease(t, n, "a"), fakeLease(t, n, "b"), fakeLease(t, n, "c")
	ctx := context.Background()
	if err := a.Acquire(ctx, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	n.Crash(a)
	if !equal(n.Holders(), "a") {
		t.Fatalf("crashed holder's address gone at once: holders %v", n.Holders())
	}
	if err := a.Acquire(ctx, time.Time{}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire after crash: %v", err)
	}
	// b does not wait: split brain, recorded.
	if err := b.Acquire(ctx, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	if cs := n.Conflicts(); len(cs) != 1 || cs[0].Node != "b" || !equal(cs[0].Others, "a") {
		t.Fatalf("conflicts %+v", cs)
	}
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if h := n.Holders(); len(h) != 0 {
		t.Fatalf("holders %v after the lifetime", h)
	}
	if err := c.Acquire(ctx, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	if cs := n.Conflicts(); len(cs) != 1 {
		t.Fatalf("conflicts %+v after a clean take-over", cs)
	}
	// A restarted node starts without the address.
	if _, err := n.Lease("c", Config{Lifetime: time.Second}); err != nil {
		t.Fatal(err)
	}
	if h := n.Holders(); len(h) != 0 {
		t.Errorf("holders %v after c restarted", h)
	}
}

func TestCloseStopsItsGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	n := NewFakeNet(nil)
	l, err := n.Lease("a", Config{Lifetime: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(context.Background(), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	if runtime.NumGoroutine() <= before {
		t.Fatal("no goroutine renewing")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Acquire(context.Background(), time.Time{}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
	eventually(t, time.Second, "goroutines back to the start", func() bool { return runtime.NumGoroutine() <= before })
	if len(n.Holders()) != 0 {
		t.Fatal("address kept after Close")
	}
}

func equal(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

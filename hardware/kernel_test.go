package hardware

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func secs(n int) time.Duration { return time.Duration(n) * time.Second }

// forever is how netlink reports an infinite lifetime.
const forever = 0xFFFFFFFF

func newKernelLease(t *testing.T, cfg Config) *VIPLease {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// Acquire puts both addresses in place with the lifetime and usable at
// once; renewals keep them; Release and losing leadership delete them.
func TestKernelAcquireRenewRelease(t *testing.T) {
	t.Parallel()
	n := newTestNet(t, "a")
	v4, v6 := vipIPs(t)
	l := newKernelLease(t, n.config(t, "a", 2))
	if n.has("a", v4) || n.has("a", v6) {
		t.Fatal("address in place before Acquire")
	}
	if err := l.Acquire(context.Background(), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []net.IP{v4, v6} {
		as := n.addrs("a", ip)
		if len(as) != 1 {
			t.Fatalf("%s: addresses %v", ip, as)
		}
		a := as[0]
		if a.ValidLft < 1 || a.ValidLft > 2 || a.PreferedLft < 1 || a.PreferedLft > 2 {
			t.Errorf("%s: valid_lft %d preferred_lft %d, want the 2 s lifetime", ip, a.ValidLft, a.PreferedLft)
		}
		if ones, _ := a.Mask.Size(); (ip.To4() != nil && ones != 24) || (ip.To4() == nil && ones != 64) {
			t.Errorf("%s: prefix /%d", ip, ones)
		}
		if ip.To4() == nil {
			if a.Flags&unix.IFA_F_TENTATIVE != 0 {
				t.Errorf("%s is tentative: duplicate address detection was not skipped", ip)
			}
			if a.Flags&unix.IFA_F_NODAD == 0 {
				t.Errorf("%s added without IFA_F_NODAD (flags %#x)", ip, a.Flags)
			}
		}
	}

	// Renewals: for 2.5 lifetimes the addresses never go and their
	// remaining lifetime never runs low.
	updates := subscribeAddrs(t, n.hosts["a"])
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for _, ip := range []net.IP{v4, v6} {
			as := n.addrs("a", ip)
			if len(as) != 1 || as[0].ValidLft < 1 || as[0].ValidLft == forever {
				t.Fatalf("%s while renewed: %+v", ip, as)
			}
		}
	}
	renewals := 0
	for len(updates) > 0 {
		u := <-updates
		if !u.NewAddr {
			t.Errorf("address deleted while renewed: %+v", u)
		}
		if u.LinkAddress.IP.Equal(v4) {
			renewals++
		}
	}
	t.Logf("%d renewals of %s in 5 s", renewals, v4)
	if !l.Held() {
		t.Fatal("not held")
	}

	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if n.has("a", v4) || n.has("a", v6) || l.Held() {
		t.Fatal("address still there right after Release")
	}

	// Losing leadership: gone within one renewal interval (500 ms).
	var leader atomic.Bool
	leader.Store(true)
	if err := l.Acquire(context.Background(), time.Time{}, leader.Load); err != nil {
		t.Fatal(err)
	}
	leader.Store(false)
	start := time.Now()
	for n.has("a", v4) || n.has("a", v6) {
		if time.Since(start) > 700*time.Millisecond {
			t.Fatal("address kept after leadership ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if own := net.ParseIP(n.hosts["a"].v4); !n.has("a", own) {
		t.Error("the host's own address went with the virtual one")
	}
}

// New removes the addresses left by an earlier run, whatever their prefix,
// lifetime or interface, and nothing else.
func TestKernelRemovesLeftovers(t *testing.T) {
	t.Parallel()
	n := newTestNet(t, "a")
	name := n.hosts["a"].name
	n.ip("-n", name, "addr", "add", "10.77.0.100/32", "dev", "eth0")
	n.ip("-n", name, "addr", "add", "10.77.0.100/8", "dev", "lo")
	n.ip("-n", name, "addr", "add", "fd77::100/64", "dev", "eth0", "nodad", "valid_lft", "100", "preferred_lft", "100")
	n.ip("-n", name, "addr", "add", "10.77.0.101/24", "dev", "eth0")
	v4, v6 := vipIPs(t)
	if !n.has("a", v4) || !n.has("a", v6) {
		t.Fatal("leftovers not set up")
	}
	newKernelLease(t, n.config(t, "a", 1))
	if as := append(n.addrs("a", v4), n.addrs("a", v6)...); len(as) != 0 {
		t.Fatalf("leftovers kept: %v", as)
	}
	for _, keep := range []string{"10.77.0.101", n.hosts["a"].v4, n.hosts["a"].v6} {
		if !n.has("a", net.ParseIP(keep)) {
			t.Errorf("%s removed too", keep)
		}
	}
}

func TestKernelConfigErrors(t *testing.T) {
	t.Parallel()
	n := newTestNet(t, "a")
	for _, c := range []struct {
		name string
		edit func(*Config)
	}{
		{"no such interface", func(c *Config) { c.Interface = "eth9" }},
		{"no such namespace", func(c *Config) { c.Netns = "tdhw-no-such-namespace" }},
		{"lifetime not whole seconds", func(c *Config) { c.Lifetime = 1500 * time.Millisecond }},
		{"no address", func(c *Config) { c.V4, c.V6 = nil, nil }},
	} {
		cfg := n.config(t, "a", 1)
		c.edit(&cfg)
		if l, err := New(cfg); err == nil {
			l.Close()
			t.Errorf("%s: no error", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

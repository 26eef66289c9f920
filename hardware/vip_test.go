package hardware

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/tandemmail/tandem/node/hatest"
	"github.com/vishvananda/netlink"
)

func TestParseVIP(t *testing.T) {
	for _, c := range []struct {
		v4, v6, iface string
		ok            bool
	}{
		{"10.0.0.100/24", "fd00::100/64", "eth0", true},
		{"10.0.0.100/24", "", "eth0", true},
		{"", "fd00::100/64", "eth0", true},
		{"", "", "eth0", false},
		{"10.0.0.100", "", "eth0", false},
		{"fd00::1/64", "", "eth0", false},
		{"", "10.0.0.1/24", "eth0", false},
		{"10.0.0.100/24", "", "", false},
	} {
		_, err := ParseVIP(c.v4, c.v6, c.iface)
		if (err == nil) != c.ok {
			t.Errorf("ParseVIP(%q, %q, %q): %v", c.v4, c.v6, c.iface, err)
		}
	}
}

func vipAddrs(t *testing.T, l *Lease) []netlink.Addr {
	addrs, err := l.h.AddrList(l.link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Addr
	for _, a := range addrs {
		if a.IP.Equal(l.cfg.V4.IP) || a.IP.Equal(l.cfg.V6.IP) {
			out = append(out, a)
		}
	}
	return out
}

// The VIP moves between two namespaces with the kernel enforcing the lease
// and the client's neighbour table following the announcements.
func TestLeaseInNamespaces(t *testing.T) {
	n := hatest.New(t, "a", "b", "c")
	cfg, err := ParseVIP("10.77.0.100/24", "fd77::100/64", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Lifetime = 2 * time.Second
	ca, cb := cfg, cfg
	ca.Netns, cb.Netns = n.Hosts["a"].Name, n.Hosts["b"].Name
	// A leftover VIP (as a crashed run leaves it) is removed by New.
	exec.Command("ip", "-n", ca.Netns, "addr", "add", "10.77.0.100/24", "dev", "eth0").Run()
	la, err := New(ca)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	if n.HasAddr("a", "10.77.0.100") {
		t.Fatal("leftover VIP not removed")
	}
	lb, err := New(cb)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	leader := true
	ctx := context.Background()
	if err := la.Acquire(ctx, time.Time{}, func() bool { return leader }); err != nil {
		t.Fatal(err)
	}
	addrs := vipAddrs(t, la)
	if len(addrs) != 2 {
		t.Fatalf("VIP addresses on a: %+v", addrs)
	}
	for _, a := range addrs {
		if a.ValidLft <= 0 || a.ValidLft > 2 {
			t.Errorf("%s valid_lft %d, want the 2 s lease", a.IP, a.ValidLft)
		}
		if a.IP.To4() == nil && a.Flags&0x40 != 0 { // IFA_F_TENTATIVE
			t.Errorf("IPv6 VIP is tentative (DAD not skipped)")
		}
	}
	// Renewals keep it past several lifetimes.
	time.Sleep(5 * time.Second)
	if !n.HasAddr("a", "10.77.0.100") || !n.HasAddr("a", "fd77::100") {
		t.Fatal("VIP expired while renewed")
	}
	// The client learns a's MAC for the VIP.
	if out, err := n.Command("c", "ping", "-c1", "-W1", "10.77.0.100").CombinedOutput(); err != nil {
		t.Fatalf("ping VIP: %v\n%s", err, out)
	}
	if got := n.Neighbour("c", "10.77.0.100"); got != n.MAC("a") {
		t.Fatalf("c's neighbour entry %q, a is %q", got, n.MAC("a"))
	}
	exec.Command("ip", "netns", "exec", n.Hosts["c"].Name, "ping", "-6", "-c1", "-W1", "fd77::100").Run()
	// Leadership lost: the VIP goes at once.
	leader = false
	deadline := time.Now().Add(time.Second)
	for n.HasAddr("a", "10.77.0.100") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n.HasAddr("a", "10.77.0.100") || la.Held() {
		t.Fatal("VIP kept after losing leadership")
	}
	// b takes it and announces: c's entry moves to b's MAC without c asking.
	if err := lb.Acquire(ctx, time.Now().Add(100*time.Millisecond), func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(2 * time.Second)
	for n.Neighbour("c", "10.77.0.100") != n.MAC("b") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := n.Neighbour("c", "10.77.0.100"); got != n.MAC("b") {
		t.Errorf("after the move c's neighbour entry is %q, b is %q (gratuitous ARP not taken)", got, n.MAC("b"))
	}
	for n.Neighbour("c", "fd77::100") != n.MAC("b") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := n.Neighbour("c", "fd77::100"); got != "" && got != n.MAC("b") {
		t.Errorf("after the move c's IPv6 neighbour entry is %q, b is %q", got, n.MAC("b"))
	}
	// A hung holder: renewals stop without a delete; the kernel expires it.
	lb.mu.Lock()
	cancel := lb.cancel
	lb.mu.Unlock()
	cancel()
	lb.wg.Wait()
	time.Sleep(3500 * time.Millisecond)
	if n.HasAddr("b", "10.77.0.100") || n.HasAddr("b", "fd77::100") {
		t.Fatal("kernel did not expire the VIP of a hung holder")
	}
	if err := lb.Release(); err != nil {
		t.Fatal(err)
	}
}

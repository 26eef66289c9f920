package hardware

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseAddrChange(t *testing.T) {
	ok := AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.10/24", "2001:db8::10/64"}, Gateway4: "192.0.2.1", Gateway6: "fe80::1"}
	if _, err := ParseAddrChange(ok); err != nil {
		t.Fatalf("valid change refused: %v", err)
	}
	cases := []struct {
		name string
		c    AddrChange
		want string
	}{
		{"no interface", AddrChange{Addrs: []string{"192.0.2.10/24"}}, "name the interface"},
		{"bad interface", AddrChange{Interface: "eth0;rm", Addrs: []string{"192.0.2.10/24"}}, ""},
		{"slash interface", AddrChange{Interface: "a/b", Addrs: []string{"192.0.2.10/24"}}, "not an interface name"},
		{"no addrs", AddrChange{Interface: "eth0"}, "no addresses"},
		{"no prefix", AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.10"}}, "CIDR"},
		{"garbage", AddrChange{Interface: "eth0", Addrs: []string{"; reboot"}}, "CIDR"},
		{"loopback", AddrChange{Interface: "eth0", Addrs: []string{"127.0.0.2/8"}}, "loopback"},
		{"loopback6", AddrChange{Interface: "eth0", Addrs: []string{"::1/128"}}, "loopback"},
		{"multicast", AddrChange{Interface: "eth0", Addrs: []string{"224.0.0.5/24"}}, "multicast"},
		{"multicast6", AddrChange{Interface: "eth0", Addrs: []string{"ff02::1/64"}}, "multicast"},
		{"unspecified", AddrChange{Interface: "eth0", Addrs: []string{"0.0.0.0/0"}}, "unspecified"},
		{"link-local", AddrChange{Interface: "eth0", Addrs: []string{"fe80::5/64"}}, "link-local"},
		{"network addr", AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.0/24"}}, "network or broadcast"},
		{"broadcast", AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.255/24"}}, "network or broadcast"},
		{"short prefix", AddrChange{Interface: "eth0", Addrs: []string{"10.1.2.3/4"}}, "out of range"},
		{"twice", AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.10/24", "192.0.2.10/25"}}, "twice"},
		{"gw outside", AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.10/24"}, Gateway4: "198.51.100.1"}, "not inside"},
		{"gw self", AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.10/24"}, Gateway4: "192.0.2.10"}, "own new"},
		{"gw family", AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.10/24"}, Gateway4: "2001:db8::1"}, "family"},
		{"gw6 family", AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.10/24"}, Gateway6: "192.0.2.1"}, "family"},
		{"gw garbage", AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.10/24"}, Gateway4: "-c 5"}, "not an IP"},
		{"gw multicast", AddrChange{Interface: "eth0", Addrs: []string{"2001:db8::10/64"}, Gateway6: "ff02::2"}, "unicast"},
		{"rollback short", AddrChange{Interface: "eth0", Addrs: []string{"192.0.2.10/24"}, Rollback: time.Second}, "rollback"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAddrChange(tc.c)
			if err == nil {
				t.Fatalf("%+v accepted", tc.c)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// addrNetns makes a namespace with a veth pair (eth0 and its peer), which
// the test deletes: nothing outside it changes.
func addrNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("namespace tests need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("namespace tests need iproute2's ip:", err)
	}
	name := fmt.Sprintf("tdaddr%d-%04x", os.Getpid(), rand.Uint32()&0xffff)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns unavailable: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	for _, args := range [][]string{
		{"link", "add", "eth0", "type", "veth", "peer", "name", "peer0"},
		{"link", "set", "lo", "up"},
		{"link", "set", "eth0", "up"},
		{"link", "set", "peer0", "up"},
		{"addr", "add", "10.88.0.2/24", "dev", "eth0"},
		{"addr", "add", "fd88::2/64", "dev", "eth0", "nodad"},
		{"route", "add", "default", "via", "10.88.0.1", "dev", "eth0"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	return name
}

func eth0(t *testing.T, m *AddrManager) Interface {
	t.Helper()
	ifs, err := m.Interfaces(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Name == "eth0" {
			return i
		}
	}
	t.Fatalf("no eth0 in %+v", ifs)
	return Interface{}
}

func TestAddrApplyConfirmRollback(t *testing.T) {
	ns := addrNetns(t)
	m, err := NewAddrManager(AddrManagerConfig{Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	before := eth0(t, m)
	if got := before.SortedCIDRs(); !slices.Equal(got, []string{"10.88.0.2/24", "fd88::2/64"}) || before.Gateway4 != "10.88.0.1" {
		t.Fatalf("start state %v gw %q", got, before.Gateway4)
	}

	// A nonexistent interface is refused and nothing changes.
	if _, err := m.Apply(ctx, AddrChange{Interface: "nosuch0", Addrs: []string{"10.9.0.2/24"}}); err == nil {
		t.Fatal("apply on a missing interface accepted")
	}
	if _, err := m.Apply(ctx, AddrChange{Interface: "lo", Addrs: []string{"10.9.0.2/24"}}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("apply on lo: %v", err)
	}

	// Apply and confirm: the new set stays.
	p, err := m.Apply(ctx, AddrChange{Interface: "eth0", Addrs: []string{"10.99.0.5/24", "fd99::5/64"},
		Gateway4: "10.99.0.1", Rollback: MinRollback})
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(p.Deadline) > MinRollback || p.ID == "" {
		t.Fatalf("pending %+v", p)
	}
	after := eth0(t, m)
	if got := after.SortedCIDRs(); !slices.Equal(got, []string{"10.99.0.5/24", "fd99::5/64"}) || after.Gateway4 != "10.99.0.1" {
		t.Fatalf("after apply %v gw %q", got, after.Gateway4)
	}
	if _, err := m.Apply(ctx, AddrChange{Interface: "eth0", Addrs: []string{"10.99.0.6/24"}}); !errors.Is(err, ErrChangePending) {
		t.Fatalf("second apply while pending: %v", err)
	}
	if err := m.Confirm("wrong"); !errors.Is(err, ErrNoPendingChange) {
		t.Fatalf("confirm wrong id: %v", err)
	}
	if err := m.Confirm(p.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.Confirm(p.ID); !errors.Is(err, ErrNoPendingChange) {
		t.Fatalf("second confirm: %v", err)
	}

	// Apply and do not confirm: the confirmed set comes back. The timer is
	// shortened through the pending change to keep the test quick.
	p2, err := m.Apply(ctx, AddrChange{Interface: "eth0", Addrs: []string{"192.168.50.9/24"}, Gateway4: "192.168.50.1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := eth0(t, m).SortedCIDRs(); !slices.Equal(got, []string{"192.168.50.9/24"}) {
		t.Fatalf("after second apply %v", got)
	}
	m.mu.Lock()
	m.pending.timer.Reset(200 * time.Millisecond)
	m.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := m.Pending(); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("change not rolled back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	rolled := eth0(t, m)
	if got := rolled.SortedCIDRs(); !slices.Equal(got, []string{"10.99.0.5/24", "fd99::5/64"}) || rolled.Gateway4 != "10.99.0.1" {
		t.Fatalf("after rollback %v gw %q", got, rolled.Gateway4)
	}
	if err := m.Confirm(p2.ID); !errors.Is(err, ErrNoPendingChange) {
		t.Fatalf("confirm after rollback: %v", err)
	}

	// RollbackNow and Close both undo a pending change.
	p3, err := m.Apply(ctx, AddrChange{Interface: "eth0", Addrs: []string{"10.99.0.7/24"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RollbackNow(p3.ID); err != nil {
		t.Fatal(err)
	}
	if got := eth0(t, m).SortedCIDRs(); !slices.Equal(got, []string{"10.99.0.5/24", "fd99::5/64"}) {
		t.Fatalf("after undo %v", got)
	}
	if _, err := m.Apply(ctx, AddrChange{Interface: "eth0", Addrs: []string{"10.99.0.8/24"}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2, err := NewAddrManager(AddrManagerConfig{Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if got := eth0(t, m2).SortedCIDRs(); !slices.Equal(got, []string{"10.99.0.5/24", "fd99::5/64"}) {
		t.Fatalf("after close %v", got)
	}
}

// FuzzParseAddrChange: admin input never panics, and an accepted change
// only holds addresses the kernel can take.
func FuzzParseAddrChange(f *testing.F) {
	f.Add("eth0", "192.0.2.10/24", "192.0.2.1", "fe80::1")
	f.Add("eth0.100", "2001:db8::1/64", "", "")
	f.Add("-x", "1.2.3.4", "$(id)", "::")
	f.Fuzz(func(t *testing.T, iface, addr, gw4, gw6 string) {
		ps, err := ParseAddrChange(AddrChange{Interface: iface, Addrs: []string{addr}, Gateway4: gw4, Gateway6: gw6})
		if err != nil {
			return
		}
		for _, p := range ps {
			if p.Addr().IsLoopback() || p.Addr().IsMulticast() || p.Addr().IsUnspecified() {
				t.Fatalf("accepted %s", p)
			}
		}
		if strings.HasPrefix(iface, "-") {
			t.Fatalf("accepted interface %q", iface)
		}
	})
}

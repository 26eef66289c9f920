package hardware

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseVIP(t *testing.T) {
	for _, c := range []struct {
		v4, v6, iface string
		want4, want6  string // IPNet.String(); "" = nil
		err           string // substring of the error; "" = no error
	}{
		{v4: "10.0.0.100/24", v6: "fd00::100/64", iface: "eth0", want4: "10.0.0.100/24", want6: "fd00::100/64"},
		{v4: "10.0.0.100/24", iface: "eth0", want4: "10.0.0.100/24"},
		{v6: "fd00::100/64", iface: "bond0.42", want6: "fd00::100/64"},
		{v4: "192.0.2.7/32", iface: "eth0", want4: "192.0.2.7/32"},
		{v4: "192.0.2.0/31", iface: "eth0", want4: "192.0.2.0/31"},
		{v6: "2001:db8::/128", iface: "eth0", want6: "2001:db8::/128"},
		{iface: "eth0", err: "no virtual address"},
		{v4: "10.0.0.100/24", err: "--vip-iface"},
		{v4: "10.0.0.100/24", iface: "a-very-long-interface", err: "15 characters"},
		{v4: "10.0.0.100/24", iface: "eth0/1", err: "not an interface name"},
		{v4: "10.0.0.100", iface: "eth0", err: "give the prefix length"},
		{v4: "10.0.0.100/33", iface: "eth0", err: "with its prefix length"},
		{v4: "ten/24", iface: "eth0", err: "with its prefix length"},
		{v4: "fd00::1/64", iface: "eth0", err: "--vip6"},
		{v6: "10.0.0.1/24", iface: "eth0", err: "--vip)"},
		{v6: "::ffff:10.0.0.1/120", iface: "eth0", err: "not an IPv6 address"},
		{v4: "10.0.0.0/24", iface: "eth0", err: "network or broadcast"},
		{v4: "10.0.0.255/24", iface: "eth0", err: "network or broadcast"},
		{v4: "127.0.0.5/8", iface: "eth0", err: "not a unicast"},
		{v4: "224.0.0.5/24", iface: "eth0", err: "not a unicast"},
		{v4: "0.0.0.0/0", iface: "eth0", err: "not a unicast"},
		{v6: "fe80::1/64", iface: "eth0", err: "not a unicast"},
		{v6: "ff02::1/64", iface: "eth0", err: "not a unicast"},
		{v6: "fe80::1%eth0/64", iface: "eth0", err: "with its prefix length"},
		{v6: "fd00::/64", iface: "eth0", err: "subnet-router anycast"},
	} {
		cfg, err := ParseVIP(c.v4, c.v6, c.iface)
		name := c.v4 + " " + c.v6 + " " + c.iface
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one with %q", name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := ipnetString(cfg.V4); got != c.want4 {
			t.Errorf("%s: V4 %q, want %q", name, got, c.want4)
		}
		if got := ipnetString(cfg.V6); got != c.want6 {
			t.Errorf("%s: V6 %q, want %q", name, got, c.want6)
		}
		if cfg.V4 != nil && len(cfg.V4.IP) != net.IPv4len {
			t.Errorf("%s: V4 IP has %d bytes, want 4 (netlink reads the family from it)", name, len(cfg.V4.IP))
		}
		if cfg.Interface != c.iface {
			t.Errorf("%s: interface %q", name, cfg.Interface)
		}
	}
}

func ipnetString(n *net.IPNet) string {
	if n == nil {
		return ""
	}
	return n.String()
}

func TestLifetime(t *testing.T) {
	for _, c := range []struct {
		in, want time.Duration
		ok       bool
	}{
		{0, DefaultLifetime, true},
		{time.Second, time.Second, true},
		{5 * time.Second, 5 * time.Second, true},
		{500 * time.Millisecond, 0, false},
		{1500 * time.Millisecond, 0, false},
		{-time.Second, 0, false},
	} {
		got, err := Config{Lifetime: c.in}.lifetime()
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("lifetime %v: %v, %v", c.in, got, err)
		}
		if _, err := NewFakeNet(nil).Lease("a", Config{Lifetime: c.in}); (err == nil) != c.ok {
			t.Errorf("FakeNet.Lease with lifetime %v: %v", c.in, err)
		}
	}
}

// FuzzParseVIP: whatever the flags say, ParseVIP returns an error or a
// config whose addresses round-trip and are of the right family.
func FuzzParseVIP(f *testing.F) {
	f.Add("10.0.0.100/24", "fd00::100/64", "eth0")
	f.Add("10.0.0.0/24", "", "eth0")
	f.Add("", "::ffff:1.2.3.4/128", "x")
	f.Fuzz(func(t *testing.T, v4, v6, iface string) {
		cfg, err := ParseVIP(v4, v6, iface)
		if err != nil {
			return
		}
		if cfg.V4 == nil && cfg.V6 == nil {
			t.Fatal("no address and no error")
		}
		if cfg.V4 != nil && (cfg.V4.IP.To4() == nil || len(cfg.V4.IP) != 4) {
			t.Fatalf("V4 %v is not IPv4", cfg.V4)
		}
		if cfg.V6 != nil && (cfg.V6.IP.To4() != nil || len(cfg.V6.IP) != 16) {
			t.Fatalf("V6 %v is not IPv6", cfg.V6)
		}
		again, err := ParseVIP(ipnetString(cfg.V4), ipnetString(cfg.V6), cfg.Interface)
		if err != nil {
			t.Fatalf("%v does not parse again: %v", cfg, err)
		}
		if again.String() != cfg.String() {
			t.Fatalf("%v parses again as %v", cfg, again)
		}
	})
}

package hardware

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The virtual addresses of the namespace tests.
const (
	testVIP4 = "10.77.0.100/24"
	testVIP6 = "fd77::100/64"
)

// testNet is a small Ethernet segment built from network namespaces that
// the test creates and deletes: a switch namespace with a bridge, and one
// namespace per host with eth0 (a veth) on the bridge, 10.77.0.N/24 and
// fd77::N/64. Nothing is added outside these namespaces and all traffic
// stays in them.
type testNet struct {
	t      *testing.T
	prefix string
	sw     string
	hosts  map[string]*testHost
	names  []string // namespaces to delete
}

type testHost struct {
	name   string // namespace
	ns     netns.NsHandle
	nl     *netlink.Handle
	link   netlink.Link // eth0
	mac    net.HardwareAddr
	v4, v6 string
}

// newTestNet builds the segment, or skips the test when this process is
// not root or cannot make namespaces.
func newTestNet(t *testing.T, hosts ...string) *testNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("namespace tests need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("namespace tests need iproute2's ip:", err)
	}
	removeStaleTestNamespaces()
	n := &testNet{t: t, prefix: fmt.Sprintf("tdhw%d-%04x", os.Getpid(), rand.Uint32()&0xffff), hosts: map[string]*testHost{}}
	n.sw = n.prefix + "-sw"
	if out, err := exec.Command("ip", "netns", "add", n.sw).CombinedOutput(); err != nil {
		t.Skipf("ip netns unavailable: %v: %s", err, out)
	}
	n.names = append(n.names, n.sw)
	t.Cleanup(n.destroy)
	n.ip("-n", n.sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	n.ip("-n", n.sw, "link", "set", "br0", "up")
	for i, name := range hosts {
		h := &testHost{name: n.prefix + "-" + name, v4: fmt.Sprintf("10.77.0.%d", i+1), v6: fmt.Sprintf("fd77::%d", i+1)}
		port := fmt.Sprintf("p%d", i)
		n.ip("netns", "add", h.name)
		n.names = append(n.names, h.name)
		n.ip("-n", n.sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.name)
		n.ip("-n", n.sw, "link", "set", port, "master", "br0")
		n.ip("-n", n.sw, "link", "set", port, "up")
		n.ip("-n", h.name, "link", "set", "lo", "up")
		n.ip("-n", h.name, "addr", "add", h.v4+"/24", "dev", "eth0")
		n.ip("-n", h.name, "addr", "add", h.v6+"/64", "dev", "eth0", "nodad")
		n.ip("-n", h.name, "link", "set", "eth0", "up")
		var err error
		if h.ns, err = netns.GetFromName(h.name); err != nil {
			t.Fatal(err)
		}
		if h.nl, err = netlink.NewHandleAt(h.ns); err != nil {
			t.Fatal(err)
		}
		if h.link, err = h.nl.LinkByName("eth0"); err != nil {
			t.Fatal(err)
		}
		h.mac = h.link.Attrs().HardwareAddr
		n.hosts[name] = h
	}
	return n
}

func (n *testNet) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (n *testNet) destroy() {
	for _, h := range n.hosts {
		h.nl.Close()
		h.ns.Close()
	}
	for _, name := range n.names {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			n.t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	}
}

// removeStaleTestNamespaces deletes namespaces of this test whose process
// is gone (a run killed before its cleanup).
func removeStaleTestNamespaces() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "tdhw") {
			continue
		}
		pid, _, ok := strings.Cut(strings.TrimPrefix(f[0], "tdhw"), "-")
		if _, err := strconv.Atoi(pid); !ok || err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) {
			exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
}

// config is the lease configuration for host.
func (n *testNet) config(t *testing.T, host string, lifetimeSecs int) Config {
	t.Helper()
	cfg, err := ParseVIP(testVIP4, testVIP6, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Lifetime = secs(lifetimeSecs)
	cfg.Netns = n.hosts[host].name
	cfg.Logger = testLogger(t).With("host", host)
	return cfg
}

// addrs lists host's addresses equal to ip (either family), on any link.
func (n *testNet) addrs(host string, ip net.IP) []netlink.Addr {
	n.t.Helper()
	all, err := n.hosts[host].nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		n.t.Fatal(err)
	}
	var out []netlink.Addr
	for _, a := range all {
		if a.IP.Equal(ip) {
			out = append(out, a)
		}
	}
	return out
}

func (n *testNet) has(host string, ip net.IP) bool { return len(n.addrs(host, ip)) > 0 }

// neighbour is the MAC in host's neighbour table for ip ("" if none).
func (n *testNet) neighbour(host string, ip net.IP) string {
	n.t.Helper()
	h := n.hosts[host]
	family := netlink.FAMILY_V6
	if ip.To4() != nil {
		family = netlink.FAMILY_V4
	}
	ns, err := h.nl.NeighList(h.link.Attrs().Index, family)
	if err != nil {
		n.t.Fatal(err)
	}
	for _, e := range ns {
		if e.IP.Equal(ip) && len(e.HardwareAddr) > 0 {
			return e.HardwareAddr.String()
		}
	}
	return ""
}

// poke sends one UDP datagram from host to ip (discard port), which makes
// host resolve ip's MAC.
func (n *testNet) poke(host string, ip net.IP) {
	n.t.Helper()
	err := inNetns(n.hosts[host].ns, func() error {
		c, err := net.Dial("udp", net.JoinHostPort(ip.String(), "9"))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	})
	if err != nil {
		n.t.Fatalf("send from %s to %s: %v", host, ip, err)
	}
}

func vipIPs(t *testing.T) (net.IP, net.IP) {
	cfg, err := ParseVIP(testVIP4, testVIP6, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	return cfg.V4.IP, cfg.V6.IP
}

func macEqual(a, b net.HardwareAddr) bool { return bytes.Equal(a, b) }

// Package hatest builds a small network inside this machine for the
// failover drills: a bridge, network namespaces for the nodes and a client,
// veth pairs, IPv4 and IPv6 addresses. Traffic stays inside the namespaces
// the test creates. It needs root and iproute2.
package hatest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Net is a test network: hosts joined by one bridge.
type Net struct {
	t      testing.TB
	prefix string
	Bridge string
	Hosts  map[string]*Host
}

// Host is one namespace on the bridge.
type Host struct {
	Name   string // namespace name
	Iface  string // interface inside the namespace (eth0)
	V4, V6 string // addresses without prefix length
	hostIf string // veth end on the bridge
}

// Available reports whether this process can build namespaces.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("needs iproute2's ip")
	}
	return nil
}

func (n *Net) ip(args ...string) {
	n.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// New builds the network with the named hosts; host i gets 10.77.0.(i+1)
// and fd77::(i+1). Everything is removed when the test ends.
func New(t testing.TB, hosts ...string) *Net {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip("network namespaces:", err)
	}
	prefix := fmt.Sprintf("t%d", os.Getpid()%100000)
	n := &Net{t: t, prefix: prefix, Bridge: prefix + "br", Hosts: map[string]*Host{}}
	t.Cleanup(n.destroy)
	n.ip("link", "add", n.Bridge, "type", "bridge")
	n.ip("link", "set", n.Bridge, "up")
	for i, h := range hosts {
		ns := prefix + h
		host := &Host{Name: ns, Iface: "eth0", V4: fmt.Sprintf("10.77.0.%d", i+1), V6: fmt.Sprintf("fd77::%d", i+1),
			hostIf: fmt.Sprintf("%sv%d", prefix, i)}
		n.ip("netns", "add", ns)
		n.ip("link", "add", host.hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns)
		n.ip("link", "set", host.hostIf, "master", n.Bridge)
		n.ip("link", "set", host.hostIf, "up")
		n.ip("-n", ns, "link", "set", "lo", "up")
		n.ip("-n", ns, "addr", "add", host.V4+"/24", "dev", "eth0")
		n.ip("-n", ns, "addr", "add", host.V6+"/64", "dev", "eth0", "nodad")
		n.ip("-n", ns, "link", "set", "eth0", "up")
		n.Hosts[h] = host
	}
	return n
}

func (n *Net) destroy() {
	for _, h := range n.Hosts {
		exec.Command("ip", "netns", "del", h.Name).Run()
		exec.Command("ip", "link", "del", h.hostIf).Run()
	}
	exec.Command("ip", "link", "del", n.Bridge).Run()
}

// Command runs a program inside a host's namespace.
func (n *Net) Command(host string, name string, args ...string) *exec.Cmd {
	h := n.Hosts[host]
	return exec.Command("ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// LinkDown cuts a host off the network (its interface goes down).
func (n *Net) LinkDown(host string) { n.ip("link", "set", n.Hosts[host].hostIf, "down") }

// LinkUp reconnects a host.
func (n *Net) LinkUp(host string) { n.ip("link", "set", n.Hosts[host].hostIf, "up") }

// Dial opens a TCP connection from inside a host's namespace: the socket is
// made on a thread switched into the namespace and keeps it afterwards.
func (n *Net) Dial(ctx context.Context, host, addr string) (net.Conn, error) {
	h := n.Hosts[host]
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// The thread's namespace is changed: never return it to the pool.
		orig, err := netns.Get()
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(h.Name)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			ch <- result{nil, err}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("dial %s from %s: timed out", addr, host)
	}
}

// Neighbour returns the MAC address the host's neighbour table holds for
// ip ("" if none): which box a client would send the VIP's packets to.
func (n *Net) Neighbour(host, ip string) string {
	out, err := exec.Command("ip", "-n", n.Hosts[host].Name, "neigh", "show", ip).Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// MAC is the address of a host's eth0.
func (n *Net) MAC(host string) string {
	out, err := exec.Command("ip", "-n", n.Hosts[host].Name, "-o", "link", "show", "eth0").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "link/ether" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// HasAddr reports whether the host's eth0 carries ip right now.
func (n *Net) HasAddr(host, ip string) bool {
	out, _ := exec.Command("ip", "-n", n.Hosts[host].Name, "-o", "addr", "show", "dev", "eth0").Output()
	return strings.Contains(string(out), " "+ip+"/")
}

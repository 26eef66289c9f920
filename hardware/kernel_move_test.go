package hardware

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// announcement is a gratuitous ARP or unsolicited NA seen on the wire.
type announcement struct {
	at     time.Time
	family string // "arp" or "na"
	from   net.HardwareAddr
	target netip.Addr
	// For NA: the flags and the hop limit as sent.
	override, solicited bool
	hopLimit            int
	dst                 netip.Addr
	tlla                net.HardwareAddr
}

func (a announcement) String() string {
	s := fmt.Sprintf("%s %s from %s at %s", a.family, a.target, a.from, a.at.Format("15:04:05.000"))
	if a.family == "na" {
		s += fmt.Sprintf(" (override %v, solicited %v, hop limit %d, to %s, target MAC %s)", a.override, a.solicited, a.hopLimit, a.dst, a.tlla)
	}
	return s
}

// capture records the announcements a host's eth0 receives, from a packet
// socket opened in its namespace.
type capture struct {
	mu   sync.Mutex
	seen []announcement
	conn *packet.Conn
	done chan struct{}
}

func (n *testNet) capture(t *testing.T, host string) *capture {
	h := n.hosts[host]
	c := &capture{done: make(chan struct{})}
	err := inNetns(h.ns, func() error {
		ifi := &net.Interface{Index: h.link.Attrs().Index, Name: "eth0", HardwareAddr: h.mac}
		var err error
		c.conn, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	go c.read()
	t.Cleanup(c.stop)
	return c
}

func (c *capture) read() {
	defer close(c.done)
	buf := make([]byte, 2048)
	for {
		nb, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if a, ok := parseAnnouncement(buf[:nb]); ok {
			a.at = time.Now()
			c.mu.Lock()
			c.seen = append(c.seen, a)
			c.mu.Unlock()
		}
	}
}

func (c *capture) stop() {
	c.conn.Close()
	<-c.done
}

func (c *capture) from(mac net.HardwareAddr, family string, since time.Time) []announcement {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []announcement
	for _, a := range c.seen {
		if macEqual(a.from, mac) && a.family == family && !a.at.Before(since) {
			out = append(out, a)
		}
	}
	return out
}

// parseAnnouncement recognises a gratuitous ARP (sender IP = target IP) or
// an unsolicited neighbour advertisement in an Ethernet frame.
func parseAnnouncement(b []byte) (announcement, bool) {
	var f ethernet.Frame
	if f.UnmarshalBinary(b) != nil {
		return announcement{}, false
	}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		var p arp.Packet
		if p.UnmarshalBinary(f.Payload) != nil || p.SenderIP != p.TargetIP {
			return announcement{}, false
		}
		return announcement{family: "arp", from: p.SenderHardwareAddr, target: p.TargetIP}, true
	case ethernet.EtherTypeIPv6:
		ip := f.Payload
		if len(ip) < 40 || ip[6] != 58 { // ICMPv6 without extension headers
			return announcement{}, false
		}
		m, err := ndp.ParseMessage(ip[40:])
		if err != nil {
			return announcement{}, false
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok {
			return announcement{}, false
		}
		dst, _ := netip.AddrFromSlice(ip[24:40])
		a := announcement{family: "na", from: f.Source, target: na.TargetAddress, override: na.Override,
			solicited: na.Solicited, hopLimit: int(ip[7]), dst: dst}
		for _, o := range na.Options {
			if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target {
				a.tlla = l.Addr
			}
		}
		return a, true
	}
	return announcement{}, false
}

// The address moves from a to b; client c, which talked to a, sends to b
// at once, without asking: b's gratuitous ARP and unsolicited NA updated
// its neighbour table.
func TestKernelMoveUpdatesClients(t *testing.T) {
	t.Parallel()
	n := newTestNet(t, "a", "b", "c")
	v4, v6 := vipIPs(t)
	la := newKernelLease(t, n.config(t, "a", 1))
	lb := newKernelLease(t, n.config(t, "b", 1))
	ctx := context.Background()
	if err := la.Acquire(ctx, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	a, b := n.hosts["a"].mac, n.hosts["b"].mac
	// c talks to the address and learns a's MAC.
	for _, ip := range []net.IP{v4, v6} {
		deadline := time.Now().Add(3 * time.Second)
		for n.neighbour("c", ip) != a.String() {
			if time.Now().After(deadline) {
				t.Fatalf("c never resolved %s to a's MAC %s: has %q", ip, a, n.neighbour("c", ip))
			}
			n.poke("c", ip)
			time.Sleep(50 * time.Millisecond)
		}
	}
	cap := n.capture(t, "c")
	if err := la.Release(); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	if err := lb.Acquire(ctx, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []net.IP{v4, v6} {
		for n.neighbour("c", ip) != b.String() {
			if time.Since(released) > time.Second {
				t.Fatalf("c still sends %s to %q, b is %s: announcements not taken", ip, n.neighbour("c", ip), b)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("c sends %s to b %v after a released it", ip, time.Since(released).Round(time.Millisecond))
	}

	// On the wire: RFC 5227 announcements and RFC 4861 §7.2.6 unsolicited
	// advertisements from b, densely at first; nothing from a after it
	// released the address.
	time.Sleep(350 * time.Millisecond)
	garps := cap.from(b, "arp", released)
	nas := cap.from(b, "na", released)
	if len(garps) < 3 || len(nas) < 3 {
		t.Fatalf("in 350 ms after the move c saw %d gratuitous ARPs and %d advertisements from b, want 3 or more each", len(garps), len(nas))
	}
	for _, g := range garps {
		if g.target != netip.MustParseAddr("10.77.0.100") {
			t.Errorf("gratuitous ARP for %s", g.target)
		}
	}
	for _, na := range nas {
		if na.target != netip.MustParseAddr("fd77::100") || !na.override || na.solicited || na.hopLimit != 255 ||
			na.dst != netip.IPv6LinkLocalAllNodes() || !macEqual(na.tlla, b) {
			t.Errorf("advertisement %v: want target fd77::100, Override, not Solicited, hop limit 255, to ff02::1, TLLA %s", na, b)
		}
	}
	if late := append(cap.from(a, "arp", released), cap.from(a, "na", released)...); len(late) > 0 {
		t.Errorf("a announced after releasing: %v", late)
	}
}

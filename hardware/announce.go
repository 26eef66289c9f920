package hardware

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// wireAnnouncer sends gratuitous ARP and unsolicited neighbour
// advertisements for the addresses. Its sockets are opened once per hold,
// inside the lease's namespace, and only send.
type wireAnnouncer struct {
	arpConn  *packet.Conn // nil without IPv4
	arpFrame []byte
	ndpConn  *ipv6.PacketConn // nil without IPv6
	ndpCM    *ipv6.ControlMessage
	na       []byte
}

// openAnnouncer opens what it can: an announcer for one family is better
// than none. It returns an error for what failed.
func (k *kernel) openAnnouncer() (announcer, error) {
	// The interface as the lease's namespace sees it, from netlink: the
	// net package's interface lookups go through a process-wide cache of
	// names that would mix namespaces up.
	link, err := k.h.LinkByName(k.cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", k.cfg.Interface, err)
	}
	attrs := link.Attrs()
	if len(attrs.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address to announce", attrs.Name)
	}
	ifi := &net.Interface{Index: attrs.Index, Name: attrs.Name, MTU: attrs.MTU, HardwareAddr: attrs.HardwareAddr}
	a := &wireAnnouncer{}
	var errs []error
	err = inNetns(k.ns, func() error {
		if k.cfg.V4 != nil {
			errs = append(errs, a.openARP(ifi, k.cfg.V4.IP))
		}
		if k.cfg.V6 != nil {
			errs = append(errs, a.openNDP(ifi, k.cfg.V6.IP))
		}
		return nil
	})
	errs = append(errs, err)
	if a.arpConn == nil && a.ndpConn == nil {
		return nil, errors.Join(errs...)
	}
	return a, errors.Join(errs...)
}

// openARP prepares an ARP Announcement (RFC 5227 §2.3): a broadcast ARP
// request whose sender and target protocol addresses are both the address
// and whose sender hardware address is this interface's. Receivers update
// an entry they hold for the address (RFC 826 "merge"; Linux does so even
// within its locktime for such gratuitous ARP) without creating new ones.
func (a *wireAnnouncer) openARP(ifi *net.Interface, ip net.IP) error {
	addr, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		return fmt.Errorf("gratuitous ARP: %s is not IPv4", ip)
	}
	p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, addr, make(net.HardwareAddr, 6), addr)
	if err != nil {
		return fmt.Errorf("gratuitous ARP: %w", err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return fmt.Errorf("gratuitous ARP: %w", err)
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}
	if a.arpFrame, err = f.MarshalBinary(); err != nil {
		return fmt.Errorf("gratuitous ARP: %w", err)
	}
	// Send only: a filter that drops everything keeps the socket from
	// queueing every ARP frame on the segment.
	drop, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		return fmt.Errorf("gratuitous ARP: %w", err)
	}
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: drop})
	if err != nil {
		return fmt.Errorf("gratuitous ARP: packet socket on %s: %w", ifi.Name, err)
	}
	a.arpConn = c
	return nil
}

// openNDP prepares an unsolicited Neighbor Advertisement (RFC 4861
// §7.2.6): to all-nodes, Solicited clear, Override set so receivers replace
// the link-layer address they cached, with the Target Link-Layer Address
// option. It is sent from the address itself (which is why the address
// must not be tentative: IFA_F_NODAD) with hop limit 255 (§7.1.2).
//
// ndp builds the message; the socket is ours because ndp names the
// interface in a zone, which the net package resolves in whatever
// namespace its cache was filled from. Ours names it by index.
func (a *wireAnnouncer) openNDP(ifi *net.Interface, ip net.IP) error {
	addr, ok := netip.AddrFromSlice(ip.To16())
	if !ok {
		return fmt.Errorf("neighbour advertisement: %s is not IPv6", ip)
	}
	na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: addr,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}}}
	msg, err := ndp.MarshalMessage(na)
	if err != nil {
		return fmt.Errorf("neighbour advertisement: %w", err)
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", addr.String())
	if err != nil {
		return fmt.Errorf("neighbour advertisement: ICMPv6 socket on %s: %w", addr, err)
	}
	pc := c.IPv6PacketConn()
	var none ipv6.ICMPFilter
	none.SetAll(true) // send only
	for _, err := range []error{
		pc.SetMulticastHopLimit(ndp.HopLimit),
		pc.SetHopLimit(ndp.HopLimit),
		pc.SetChecksum(true, 2), // the kernel fills in the ICMPv6 checksum
		pc.SetMulticastLoopback(false),
		pc.SetICMPFilter(&none),
	} {
		if err != nil {
			c.Close()
			return fmt.Errorf("neighbour advertisement: %w", err)
		}
	}
	a.ndpConn, a.na = pc, msg
	a.ndpCM = &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: addr.AsSlice(), IfIndex: ifi.Index}
	return nil
}

func (a *wireAnnouncer) announce() error {
	var errs []error
	if a.arpConn != nil {
		if _, err := a.arpConn.WriteTo(a.arpFrame, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			errs = append(errs, fmt.Errorf("gratuitous ARP: %w", err))
		}
	}
	if a.ndpConn != nil {
		dst := &net.IPAddr{IP: netip.IPv6LinkLocalAllNodes().AsSlice()}
		if _, err := a.ndpConn.WriteTo(a.na, a.ndpCM, dst); err != nil {
			errs = append(errs, fmt.Errorf("neighbour advertisement: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (a *wireAnnouncer) close() error {
	var errs []error
	if a.arpConn != nil {
		errs = append(errs, a.arpConn.Close())
	}
	if a.ndpConn != nil {
		errs = append(errs, a.ndpConn.Close())
	}
	return errors.Join(errs...)
}

// Package hardware owns the box's network interfaces: the virtual IP lease
// (DESIGN §4) that follows the Raft leader, announced with gratuitous ARP
// and unsolicited neighbour advertisements. netlink is hidden behind the VIP
// interface so tests without root use a fake.
package hardware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VIP is a virtual address that at most one node holds.
type VIP interface {
	// Acquire waits until notBefore (when any earlier holder's lease has
	// surely run out), adds the addresses, announces them, and renews them
	// for as long as stillLeader reports true; then it deletes them.
	Acquire(ctx context.Context, notBefore time.Time, stillLeader func() bool) error
	// Release deletes the addresses at once and stops renewing.
	Release() error
	Held() bool
	Close() error
}

// Config describes the VIP.
type Config struct {
	Interface string
	V4, V6    *net.IPNet
	// Lifetime is the kernel-enforced valid lifetime of the addresses: if
	// this process dies or hangs, the kernel removes them after it.
	Lifetime time.Duration
	Logger   *slog.Logger
	// Netns names a network namespace to work in (tests); "" = this one.
	Netns string
}

// ParseVIP reads the --vip, --vip6 and --vip-iface flags.
func ParseVIP(v4, v6, iface string) (Config, error) {
	var c Config
	if v4 == "" && v6 == "" {
		return c, errors.New("no virtual address: give --vip and/or --vip6")
	}
	if iface == "" {
		return c, errors.New("--vip-iface: name the interface that carries the virtual address")
	}
	c.Interface = iface
	if v4 != "" {
		ip, n, err := net.ParseCIDR(v4)
		if err != nil || ip.To4() == nil {
			return c, fmt.Errorf("--vip %q: want an IPv4 address with its prefix, e.g. 10.0.0.100/24", v4)
		}
		n.IP = ip.To4()
		c.V4 = n
	}
	if v6 != "" {
		ip, n, err := net.ParseCIDR(v6)
		if err != nil || ip.To4() != nil {
			return c, fmt.Errorf("--vip6 %q: want an IPv6 address with its prefix, e.g. fd00::100/64", v6)
		}
		n.IP = ip
		c.V6 = n
	}
	return c, nil
}

// Lease is the real VIP, with netlink.
type Lease struct {
	cfg  Config
	log  *slog.Logger
	h    *netlink.Handle
	ns   netns.NsHandle
	link netlink.Link

	mu     sync.Mutex
	held   bool
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New opens the interface and removes a VIP left behind by an earlier run
// (DESIGN §4: leftovers removed on start).
func New(cfg Config) (*Lease, error) {
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = 2 * time.Second
	}
	if cfg.Lifetime < time.Second {
		cfg.Lifetime = time.Second // the kernel counts whole seconds
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Lease{cfg: cfg, log: cfg.Logger, ns: -1}
	var err error
	if cfg.Netns != "" {
		l.ns, err = netns.GetFromName(cfg.Netns)
		if err != nil {
			return nil, fmt.Errorf("vip: namespace %s: %w", cfg.Netns, err)
		}
		l.h, err = netlink.NewHandleAt(l.ns)
	} else {
		l.h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("vip: netlink: %w", err)
	}
	l.link, err = l.h.LinkByName(cfg.Interface)
	if err != nil {
		l.h.Close()
		return nil, fmt.Errorf("vip: interface %s: %w", cfg.Interface, err)
	}
	if err := l.remove(); err != nil {
		l.h.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lease) addrs() []*netlink.Addr {
	secs := int(l.cfg.Lifetime / time.Second)
	var out []*netlink.Addr
	if l.cfg.V4 != nil {
		out = append(out, &netlink.Addr{IPNet: l.cfg.V4, ValidLft: secs, PreferedLft: secs})
	}
	if l.cfg.V6 != nil {
		// No duplicate address detection: it would hold the address
		// tentative for 1.5 s (DESIGN §4); the lease already excludes a
		// second holder.
		out = append(out, &netlink.Addr{IPNet: l.cfg.V6, ValidLft: secs, PreferedLft: secs, Flags: unix.IFA_F_NODAD})
	}
	return out
}

// add (re)installs the addresses with a fresh lifetime.
func (l *Lease) add() error {
	for _, a := range l.addrs() {
		if err := l.h.AddrReplace(l.link, a); err != nil {
			return fmt.Errorf("vip: add %s on %s: %w", a.IPNet, l.cfg.Interface, err)
		}
	}
	return nil
}

// remove deletes the addresses if present.
func (l *Lease) remove() error {
	var errs []error
	for _, a := range l.addrs() {
		if err := l.h.AddrDel(l.link, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("vip: delete %s: %w", a.IPNet, err))
		}
	}
	return errors.Join(errs...)
}

// Acquire implements VIP.
func (l *Lease) Acquire(ctx context.Context, notBefore time.Time, stillLeader func() bool) error {
	l.mu.Lock()
	if l.held {
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	if d := time.Until(notBefore); d > 0 {
		l.log.Info("waiting for the previous VIP holder's lease to run out", "wait", d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	if !stillLeader() {
		return errors.New("vip: no longer leader")
	}
	if err := l.add(); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.Background())
	l.mu.Lock()
	l.held, l.cancel = true, cancel
	l.mu.Unlock()
	l.log.Info("took the virtual IP", "v4", l.cfg.V4, "v6", l.cfg.V6, "iface", l.cfg.Interface)
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		l.announce(rctx)
	}()
	go func() {
		defer l.wg.Done()
		l.renew(rctx, stillLeader)
	}()
	return nil
}

// renew refreshes the lifetime while this node leads; the moment it does
// not, the VIP goes.
func (l *Lease) renew(ctx context.Context, stillLeader func() bool) {
	t := time.NewTicker(l.cfg.Lifetime / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !stillLeader() {
			l.log.Warn("lost leadership: dropping the virtual IP")
			l.drop()
			return
		}
		if err := l.add(); err != nil {
			l.log.Error("renew virtual IP", "err", err)
		}
	}
}

func (l *Lease) drop() {
	l.mu.Lock()
	l.held = false
	l.mu.Unlock()
	if err := l.remove(); err != nil {
		l.log.Error("drop virtual IP", "err", err)
	}
}

// Release implements VIP.
func (l *Lease) Release() error {
	l.mu.Lock()
	cancel := l.cancel
	l.cancel = nil
	l.held = false
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	l.wg.Wait()
	return l.remove()
}

// Held implements VIP.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held
}

// Close releases the VIP and the netlink handle.
func (l *Lease) Close() error {
	err := l.Release()
	l.h.Close()
	if l.ns >= 0 {
		l.ns.Close()
	}
	return err
}

// announce tells the segment the VIP's new MAC: gratuitous ARP for IPv4,
// unsolicited neighbour advertisements with the override flag for IPv6
// (RFC 4861 §7.2.6). Repeated over a few seconds with growing gaps: a
// client whose address resolution was under way during the move, or that
// missed a packet, is caught by a later one.
func (l *Lease) announce(ctx context.Context) {
	for _, gap := range []time.Duration{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 500, 1000, 2000} {
		if err := l.inNetns(l.announceOnce); err != nil {
			l.log.Warn("announce virtual IP", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap * time.Millisecond):
		}
	}
}

func (l *Lease) announceOnce() error {
	ifi, err := net.InterfaceByName(l.cfg.Interface)
	if err != nil {
		return err
	}
	var errs []error
	if l.cfg.V4 != nil {
		errs = append(errs, garp(ifi, l.cfg.V4.IP))
	}
	if l.cfg.V6 != nil {
		errs = append(errs, unsolicitedNA(ifi, l.cfg.V6.IP))
	}
	return errors.Join(errs...)
}

func garp(ifi *net.Interface, ip net.IP) error {
	c, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("gratuitous ARP: %w", err)
	}
	defer c.Close()
	addr, _ := netip.AddrFromSlice(ip.To4())
	// A gratuitous ARP request: sender and target are both the VIP.
	p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, addr, ethernet.Broadcast, addr)
	if err != nil {
		return err
	}
	return c.WriteTo(p, ethernet.Broadcast)
}

func unsolicitedNA(ifi *net.Interface, ip net.IP) error {
	addr, _ := netip.AddrFromSlice(ip.To16())
	c, _, err := ndp.Listen(ifi, ndp.Addr(addr.String()))
	if err != nil {
		return fmt.Errorf("neighbour advertisement: %w", err)
	}
	defer c.Close()
	m := &ndp.NeighborAdvertisement{Override: true, TargetAddress: addr,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}}}
	return c.WriteTo(m, nil, netip.IPv6LinkLocalAllNodes())
}

// inNetns runs fn on a thread inside the lease's namespace (sockets stay in
// the namespace they were made in).
func (l *Lease) inNetns(fn func() error) error {
	if l.ns < 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(l.ns); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

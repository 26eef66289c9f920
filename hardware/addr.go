package hardware

// Interface addresses with confirm-or-roll-back (SPEC M1, issue 7: the
// setup wizard's first step). An admin who types a wrong address over the
// network cuts off the very connection that would correct it, so a change
// is provisional: unless Confirm is called before the deadline (default
// 120 s, the same idea as a router's "commit confirmed"), the previous
// addresses and default routes are put back.
//
// The manager touches only permanent, global-scope addresses and the
// default routes of the one interface named in a change. Addresses with a
// finite lifetime (the VIP lease of DESIGN §4, SLAAC and DHCP addresses)
// and link-local addresses are left alone.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ifaceName is stricter than the kernel (IFNAMSIZ-1 bytes, no '/' or
// space): names an admin types for Ethernet, bond and VLAN interfaces.
var ifaceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$`)

// DefaultRollback is how long an applied change waits for confirmation.
const DefaultRollback = 120 * time.Second

// Bounds of a change's rollback timer.
const (
	MinRollback = 10 * time.Second
	MaxRollback = 30 * time.Minute
)

// ErrNoPendingChange: Confirm named a change that is not pending (already
// confirmed, rolled back, or never made).
var ErrNoPendingChange = errors.New("no such pending address change")

// ErrChangePending: another change waits for confirmation; confirm it or
// let it roll back first.
var ErrChangePending = errors.New("another address change is waiting for confirmation")

// Interface is one network interface as the admin sees it.
type Interface struct {
	Name  string   `json:"name"`
	Index int      `json:"index"`
	MAC   string   `json:"mac,omitempty"`
	MTU   int      `json:"mtu"`
	Up    bool     `json:"up"`
	Flags []string `json:"flags,omitempty"`
	// Addrs are every address (CIDR form) with how it got there.
	Addrs    []InterfaceAddr `json:"addrs"`
	Gateway4 string          `json:"gateway4,omitempty"`
	Gateway6 string          `json:"gateway6,omitempty"`
}

// InterfaceAddr is one address of an interface.
type InterfaceAddr struct {
	CIDR string `json:"cidr"`
	// Scope is "global", "link" or "host".
	Scope string `json:"scope"`
	// Managed: a permanent global address, which Apply may replace.
	Managed bool `json:"managed"`
}

// AddrChange asks for a new address set on one interface.
type AddrChange struct {
	Interface string `json:"interface"`
	// Addrs is the complete new set of permanent global addresses, IPv4
	// and IPv6 in CIDR form ("192.0.2.10/24", "2001:db8::10/64"); the
	// interface's other permanent global addresses are removed.
	Addrs []string `json:"addrs"`
	// Gateway4 and Gateway6 replace the default route of their family
	// ("" leaves it as it is).
	Gateway4 string `json:"gateway4,omitempty"`
	Gateway6 string `json:"gateway6,omitempty"`
	// Rollback is the time to confirm (0: DefaultRollback).
	Rollback time.Duration `json:"-"`
}

// PendingChange is an applied change waiting for confirmation.
type PendingChange struct {
	ID        string    `json:"id"`
	Interface string    `json:"interface"`
	Deadline  time.Time `json:"deadline"`
}

// AddrManagerConfig configures an AddrManager.
type AddrManagerConfig struct {
	// Netns: work inside this network namespace (a name from
	// `ip netns add` or a path); "" is this process's namespace.
	Netns  string
	Logger *slog.Logger
}

// AddrManager lists and changes interface addresses.
type AddrManager struct {
	log *slog.Logger
	ns  netns.NsHandle
	h   *netlink.Handle

	mu      sync.Mutex
	pending *pending
	closed  bool
}

type pending struct {
	PendingChange
	link  netlink.Link
	old   snapshot
	new   snapshot
	timer *time.Timer
}

// snapshot is the part of an interface's configuration a change touches.
type snapshot struct {
	addrs  []netip.Prefix
	routes []netlink.Route // default routes via this link
}

// NewAddrManager opens netlink (in cfg.Netns if set).
func NewAddrManager(cfg AddrManagerConfig) (*AddrManager, error) {
	m := &AddrManager{log: cfg.Logger, ns: netns.None()}
	if m.log == nil {
		m.log = slog.Default()
	}
	var err error
	if cfg.Netns != "" {
		if filepath.IsAbs(cfg.Netns) {
			m.ns, err = netns.GetFromPath(cfg.Netns)
		} else {
			m.ns, err = netns.GetFromName(cfg.Netns)
		}
		if err != nil {
			return nil, fmt.Errorf("network namespace %s: %w", cfg.Netns, err)
		}
		m.h, err = netlink.NewHandleAt(m.ns)
	} else {
		m.h, err = netlink.NewHandle()
	}
	if err != nil {
		if m.ns.IsOpen() {
			m.ns.Close()
		}
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return m, nil
}

// Close rolls back a change still waiting for confirmation (a process that
// stops cannot confirm it later) and closes netlink.
func (m *AddrManager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var err error
	if p := m.pending; p != nil {
		p.timer.Stop()
		m.pending = nil
		err = m.restore(p)
	}
	m.h.Close()
	if m.ns.IsOpen() {
		m.ns.Close()
	}
	return err
}

// Interfaces lists the interfaces with their addresses and default gateways.
func (m *AddrManager) Interfaces(ctx context.Context) ([]Interface, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("address manager closed")
	}
	links, err := m.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := make([]Interface, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		ifc := Interface{Name: a.Name, Index: a.Index, MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, Addrs: []InterfaceAddr{}}
		if len(a.HardwareAddr) > 0 {
			ifc.MAC = a.HardwareAddr.String()
		}
		for _, f := range []struct {
			bit  net.Flags
			name string
		}{{net.FlagLoopback, "loopback"}, {net.FlagBroadcast, "broadcast"}, {net.FlagMulticast, "multicast"}, {net.FlagPointToPoint, "pointtopoint"}} {
			if a.Flags&f.bit != 0 {
				ifc.Flags = append(ifc.Flags, f.name)
			}
		}
		addrs, err := m.h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			ifc.Addrs = append(ifc.Addrs, InterfaceAddr{CIDR: ad.IPNet.String(), Scope: scopeName(ad.Scope), Managed: managed(ad)})
		}
		routes, err := m.defaultRoutes(l)
		if err != nil {
			return nil, err
		}
		for _, r := range routes {
			if r.Gw == nil {
				continue
			}
			if r.Gw.To4() != nil {
				ifc.Gateway4 = r.Gw.String()
			} else {
				ifc.Gateway6 = r.Gw.String()
			}
		}
		out = append(out, ifc)
	}
	return out, nil
}

func scopeName(s int) string {
	switch netlink.Scope(s) {
	case netlink.SCOPE_UNIVERSE:
		return "global"
	case netlink.SCOPE_LINK:
		return "link"
	case netlink.SCOPE_HOST:
		return "host"
	}
	return fmt.Sprint(s)
}

// managed: a permanent (no lifetime: the kernel reports 0xffffffff),
// global-scope address. The VIP lease's addresses have a lifetime.
func managed(a netlink.Addr) bool {
	const forever = 0xffffffff
	permanent := a.ValidLft == 0 || a.ValidLft == forever
	return permanent && netlink.Scope(a.Scope) == netlink.SCOPE_UNIVERSE && a.Flags&unix.IFA_F_TEMPORARY == 0
}

// Pending is the change waiting for confirmation, if any.
func (m *AddrManager) Pending() (PendingChange, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		return PendingChange{}, false
	}
	return m.pending.PendingChange, true
}

// ParseAddrChange checks a change without touching the system: CIDR forms,
// no loopback, multicast, unspecified or link-local addresses, gateways that
// are unicast and (IPv4) inside one of the new subnets.
func ParseAddrChange(c AddrChange) ([]netip.Prefix, error) {
	if c.Interface == "" {
		return nil, errors.New("name the interface to configure, such as eth0")
	}
	if !ifaceName.MatchString(c.Interface) {
		return nil, fmt.Errorf("interface %q: not an interface name (1-15 letters, digits, '.', '_' or '-')", c.Interface)
	}
	if len(c.Addrs) == 0 {
		return nil, errors.New("no addresses: give at least one address in CIDR form, such as 192.0.2.10/24")
	}
	if len(c.Addrs) > 32 {
		return nil, fmt.Errorf("%d addresses: at most 32", len(c.Addrs))
	}
	if c.Rollback != 0 && (c.Rollback < MinRollback || c.Rollback > MaxRollback) {
		return nil, fmt.Errorf("rollback time %s: must be between %s and %s", c.Rollback, MinRollback, MaxRollback)
	}
	var out []netip.Prefix
	for _, s := range c.Addrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("address %q: not an address in CIDR form (such as 192.0.2.10/24 or 2001:db8::10/64)", s)
		}
		ip := p.Addr()
		if ip.Zone() != "" {
			return nil, fmt.Errorf("address %q: no zone allowed", s)
		}
		switch {
		case ip.IsLoopback():
			return nil, fmt.Errorf("address %s: a loopback address cannot be set on an interface here", s)
		case ip.IsMulticast():
			return nil, fmt.Errorf("address %s: a multicast address is not an interface address", s)
		case ip.IsUnspecified():
			return nil, fmt.Errorf("address %s: the unspecified address is not an interface address", s)
		case ip.IsLinkLocalUnicast():
			return nil, fmt.Errorf("address %s: link-local addresses are set by the kernel", s)
		}
		if ip.Is4In6() {
			return nil, fmt.Errorf("address %s: write IPv4 addresses in dotted form", s)
		}
		if ip.Is4() && (p.Bits() < 8 || p.Bits() > 32) || ip.Is6() && (p.Bits() < 16 || p.Bits() > 128) {
			return nil, fmt.Errorf("address %s: prefix length /%d out of range", s, p.Bits())
		}
		if ip.Is4() && p.Bits() < 31 {
			// RFC 919/922: the all-zeros host and the broadcast address of
			// a subnet are not host addresses (except on /31, RFC 3021).
			pm := p.Masked().Addr()
			if ip == pm || ip == lastAddr(p) {
				return nil, fmt.Errorf("address %s: the network or broadcast address of its subnet", s)
			}
		}
		if slices.ContainsFunc(out, func(q netip.Prefix) bool { return q.Addr() == ip }) {
			return nil, fmt.Errorf("address %s given twice", s)
		}
		out = append(out, p)
	}
	for _, g := range []struct {
		s  string
		v4 bool
	}{{c.Gateway4, true}, {c.Gateway6, false}} {
		if g.s == "" {
			continue
		}
		ip, err := netip.ParseAddr(g.s)
		if err != nil {
			return nil, fmt.Errorf("gateway %q: not an IP address: %v", g.s, err)
		}
		if ip.Is4() != g.v4 || ip.Is4In6() {
			return nil, fmt.Errorf("gateway %s: wrong address family (gateway4 is IPv4, gateway6 IPv6)", g.s)
		}
		if ip.IsLoopback() || ip.IsMulticast() || ip.IsUnspecified() {
			return nil, fmt.Errorf("gateway %s: not a unicast router address", g.s)
		}
		if !g.v4 {
			continue // RFC 4861 §4.2: IPv6 routers are usually reached by their link-local address
		}
		if !slices.ContainsFunc(out, func(p netip.Prefix) bool { return p.Addr().Is4() && p.Masked().Contains(ip) }) {
			return nil, fmt.Errorf("gateway %s: not inside any of the new IPv4 subnets, so it could not be reached", g.s)
		}
		if slices.ContainsFunc(out, func(p netip.Prefix) bool { return p.Addr() == ip }) {
			return nil, fmt.Errorf("gateway %s: is one of the box's own new addresses", g.s)
		}
	}
	return out, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Apply puts the new address set and gateways in place and starts the
// rollback timer. Only one change can wait for confirmation at a time.
func (m *AddrManager) Apply(ctx context.Context, c AddrChange) (PendingChange, error) {
	want, err := ParseAddrChange(c)
	if err != nil {
		return PendingChange{}, err
	}
	wait := c.Rollback
	if wait == 0 {
		wait = DefaultRollback
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return PendingChange{}, errors.New("address manager closed")
	}
	if m.pending != nil {
		return PendingChange{}, fmt.Errorf("%w (change %s on %s, until %s)", ErrChangePending,
			m.pending.ID, m.pending.Interface, m.pending.Deadline.UTC().Format(time.RFC3339))
	}
	link, err := m.h.LinkByName(c.Interface)
	if err != nil {
		return PendingChange{}, fmt.Errorf("interface %s: %w", c.Interface, err)
	}
	if link.Attrs().Flags&net.FlagLoopback != 0 {
		return PendingChange{}, fmt.Errorf("interface %s: the loopback interface is not configured here", c.Interface)
	}
	old, err := m.snapshot(link)
	if err != nil {
		return PendingChange{}, err
	}
	next := snapshot{addrs: want}
	var gws []net.IP
	for _, g := range []string{c.Gateway4, c.Gateway6} {
		if g != "" {
			gws = append(gws, net.ParseIP(g))
		}
	}
	for _, r := range old.routes {
		// A family without a new gateway keeps its route.
		if !slices.ContainsFunc(gws, func(g net.IP) bool { return (g.To4() != nil) == (routeFamily(r) == netlink.FAMILY_V4) }) {
			next.routes = append(next.routes, r)
		}
	}
	for _, g := range gws {
		next.routes = append(next.routes, defaultRoute(link, g))
	}
	id := make([]byte, 8)
	rand.Read(id)
	p := &pending{PendingChange: PendingChange{ID: hex.EncodeToString(id), Interface: c.Interface,
		Deadline: time.Now().Add(wait)}, link: link, old: old, new: next}
	if err := m.install(link, old, next); err != nil {
		// Half a change is worse than none: put the old one back now.
		if rerr := m.install(link, next, old); rerr != nil {
			m.log.Error("restore interface after a failed change", "interface", c.Interface, "err", rerr)
		}
		return PendingChange{}, fmt.Errorf("apply addresses on %s: %w", c.Interface, err)
	}
	p.timer = time.AfterFunc(wait, func() { m.expire(p) })
	m.pending = p
	m.log.Warn("interface addresses changed; rolled back unless confirmed",
		"interface", c.Interface, "change", p.ID, "addrs", c.Addrs, "deadline", p.Deadline)
	return p.PendingChange, nil
}

// Confirm keeps a pending change.
func (m *AddrManager) Confirm(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil || m.pending.ID != id {
		return fmt.Errorf("change %q: %w", id, ErrNoPendingChange)
	}
	m.pending.timer.Stop()
	m.log.Info("interface address change confirmed", "interface", m.pending.Interface, "change", id)
	m.pending = nil
	return nil
}

// RollbackNow undoes a pending change at once (the wizard's "undo").
func (m *AddrManager) RollbackNow(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pending
	if p == nil || p.ID != id {
		return fmt.Errorf("change %q: %w", id, ErrNoPendingChange)
	}
	p.timer.Stop()
	m.pending = nil
	return m.restore(p)
}

func (m *AddrManager) expire(p *pending) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending != p || m.closed {
		return // confirmed or rolled back meanwhile
	}
	m.pending = nil
	if err := m.restore(p); err != nil {
		m.log.Error("roll back unconfirmed interface change", "interface", p.Interface, "change", p.ID, "err", err)
		return
	}
	m.log.Warn("interface address change not confirmed in time: rolled back", "interface", p.Interface, "change", p.ID)
}

func (m *AddrManager) restore(p *pending) error {
	if err := m.install(p.link, p.new, p.old); err != nil {
		return fmt.Errorf("roll back addresses on %s: %w", p.Interface, err)
	}
	return nil
}

func (m *AddrManager) snapshot(link netlink.Link) (snapshot, error) {
	var s snapshot
	addrs, err := m.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return s, fmt.Errorf("addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		if !managed(a) {
			continue
		}
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		s.addrs = append(s.addrs, netip.PrefixFrom(ip.Unmap(), ones))
	}
	if s.routes, err = m.defaultRoutes(link); err != nil {
		return s, err
	}
	return s, nil
}

func (m *AddrManager) defaultRoutes(link netlink.Link) ([]netlink.Route, error) {
	var out []netlink.Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := m.h.RouteListFiltered(fam, &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("routes of %s: %w", link.Attrs().Name, err)
		}
		for _, r := range rs {
			if isDefault(r) && r.Gw != nil {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

func routeFamily(r netlink.Route) int {
	if r.Gw != nil && r.Gw.To4() != nil {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func defaultRoute(link netlink.Link, gw net.IP) netlink.Route {
	return netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw, Table: unix.RT_TABLE_MAIN}
}

// install turns configuration from into to: it drops the default routes
// and addresses that go, then (re-)adds every address of to and its routes.
// All of to's addresses are added again because deleting an IPv4 primary
// address takes its secondaries in the same subnet with it, unless
// net.ipv4.conf.IFACE.promote_secondaries is set (a VIP lease renews its
// address within a quarter lifetime).
func (m *AddrManager) install(link netlink.Link, from, to snapshot) error {
	var errs []error
	for _, r := range from.routes {
		if !slices.ContainsFunc(to.routes, func(t netlink.Route) bool { return t.Gw.Equal(r.Gw) }) {
			if err := m.h.RouteDel(&r); err != nil && !gone(err) && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("delete default route via %s: %w", r.Gw, err))
			}
		}
	}
	for _, p := range from.addrs {
		if slices.Contains(to.addrs, p) {
			continue
		}
		if err := m.h.AddrDel(link, &netlink.Addr{IPNet: prefixToIPNet(p)}); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", p, err))
		}
	}
	for _, p := range to.addrs {
		a := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			// Skip duplicate address detection: a tentative address cannot
			// be used for the seconds DAD takes (RFC 4862 §5.4).
			a.Flags = unix.IFA_F_NODAD
		}
		if err := m.h.AddrReplace(link, a); err != nil {
			errs = append(errs, fmt.Errorf("add %s: %w", p, err))
		}
	}
	for _, r := range to.routes {
		if err := m.h.RouteReplace(&r); err != nil {
			errs = append(errs, fmt.Errorf("default route via %s: %w", r.Gw, err))
		}
	}
	return errors.Join(errs...)
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

// SortedCIDRs is a helper for tests and pages: the managed addresses of an
// interface, sorted.
func (i Interface) SortedCIDRs() []string {
	var out []string
	for _, a := range i.Addrs {
		if a.Managed {
			out = append(out, a.CIDR)
		}
	}
	sort.Strings(out)
	return out
}
